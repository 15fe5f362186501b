"""Tiny ONNX benchmarks for the evidence tests: a padded CNN with a sat and an unsat property, and a trap.

The padded CNN (Conv 1->4, k4, s2, p1 on 1x10x10 -> ReLU -> Flatten -> Linear 100->3) has a
``sat`` instance (a PGD counterexample is stored as its export evidence) and an ``unsat`` one
(interval arithmetic certifies it; the certificate is stored). The trap network has a
counterexample that an untargeted PGD (adcert-eval's PGD-40, one restart) walks away from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from adcert_plugin.io import sha256_file
from vnncomp.export.evidence import add_attack, new_record, write_record
from vnncomp.export.instances import write_instances_csv
from vnncomp.export.vnnlib import property_from_sample, render_v1


def _export(net: nn.Module, x: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        net, (x,), str(path), input_names=["input"], output_names=["output"], opset_version=13, dynamo=False
    )


def _write_property(root: Path, name: str, x: torch.Tensor, label: int, eps: float, classes: int) -> str:
    prop = property_from_sample(x[0].numpy(), label, eps, [0.0], [1.0], classes, comment=f"{name}, eps {eps}")
    rel = f"vnnlib/{name}.vnnlib"
    (root / "vnnlib").mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(render_v1(prop))
    return rel


def ibp_margin(net: nn.Sequential, x: torch.Tensor, label: int, eps: float) -> float:
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    with torch.no_grad():
        for layer in net:
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                mid, rad = layer((hi + lo) / 2), (hi - lo) / 2
                rad = (
                    nn.functional.conv2d(rad, layer.weight.abs(), None, layer.stride, layer.padding)
                    if isinstance(layer, nn.Conv2d)
                    else nn.functional.linear(rad, layer.weight.abs())
                )
                lo, hi = mid - rad, mid + rad
            else:
                lo, hi = layer(lo), layer(hi)
    others = [j for j in range(hi.shape[1]) if j != label]
    return float(lo[0, label] - hi[0, others].max())


def _pgd_counterexample(net, x, label, eps, steps=200):
    d = torch.zeros_like(x, requires_grad=True)
    others = [j for j in range(3) if j != label]
    for _ in range(steps):
        y = net((x + d).clamp(0, 1))
        loss = y[0, others].max() - y[0, label]
        if loss > 0.05:
            return (x + d).clamp(0, 1).detach()
        (g,) = torch.autograd.grad(loss, d)
        with torch.no_grad():
            d += eps / 20 * g.sign()
            d.clamp_(-eps, eps)
    return None


def padded_cnn_benchmark(root: Path) -> dict:
    """Write the padded-CNN benchmark with export-style evidence; return facts about it."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 4, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(100, 3)).eval()
    x = torch.rand(1, 1, 10, 10)
    with torch.no_grad():
        label = int(net(x).argmax())
    eps_unsat = max(e for e in (0.001, 0.002, 0.005, 0.01, 0.02, 0.03) if ibp_margin(net, x, label, e) > 0)
    eps_sat, point = next(
        (e, p) for e in (0.05, 0.1, 0.2, 0.3, 0.5) if (p := _pgd_counterexample(net, x, label, e)) is not None
    )
    onnx = root / "onnx/tiny.onnx"
    _export(net, x, onnx)
    rows = []
    for kind, eps in (("sat", eps_sat), ("unsat", eps_unsat)):
        rows.append(("onnx/tiny.onnx", _write_property(root, kind, x, label, eps, 3), 30))
    write_instances_csv(root / "instances.csv", rows)
    digest = sha256_file(onnx)
    sat = new_record("sat", digest)
    add_attack(root, sat, "export", "test PGD", point.numpy(), onnx, root / "vnnlib/sat.vnnlib")
    sat["bound"] = {"method": "IBP", "min_margin_lower": ibp_margin(net, x, label, eps_sat), "certified": False}
    write_record(root, sat)
    unsat = new_record("unsat", digest)
    unsat["bound"] = {"method": "IBP", "min_margin_lower": ibp_margin(net, x, label, eps_unsat), "certified": True}
    write_record(root, unsat)
    return {
        "net": net,
        "x": x,
        "label": label,
        "point": point,
        "eps_sat": eps_sat,
        "eps_unsat": eps_unsat,
        "sat_margin": sat["attacks"][0]["margin"],
    }


def trap_benchmark(root: Path) -> dict:
    """A network whose only counterexample lies towards the class an untargeted attack ignores.

    On 1x10x10 inputs in [0, 1] (box: the whole cube, centre 0.5), with m = 2·mean(x) − 1:
    z0 = 0, z1 = 0.4·m − 0.5 (never above z0), z2 = −6 − 7·m (above z0 only near m = −1).
    At the centre z1 is the runner-up by far, so cross-entropy and margin-loss PGD follow it
    towards m = +1, where z2 is lowest; descending the z2 disjunct finds the corner m = −1.
    A padded 3x3 identity convolution in front keeps the CNN operators in the graph.
    """
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    linear = nn.Linear(100, 3)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = 1.0
        linear.weight.zero_()
        linear.bias.copy_(torch.tensor([0.0, -0.9, 1.0]))
        linear.weight[1] = 0.4 * 0.02
        linear.weight[2] = -7 * 0.02
    net = nn.Sequential(conv, nn.Flatten(), linear).eval()
    x = torch.full((1, 1, 10, 10), 0.5)
    onnx = root / "onnx/trap.onnx"
    _export(net, x, onnx)
    write_instances_csv(root / "instances.csv", [("onnx/trap.onnx", _write_property(root, "trap", x, 0, 0.5, 3), 30)])
    return {"net": net, "x": x, "label": 0, "eps": 0.5}


def corner_value(net: nn.Module) -> float:
    """z2 − z0 at the corner x = 0: > 0, so the trap property is falsifiable."""
    with torch.no_grad():
        z = net(torch.zeros(1, 1, 10, 10))[0]
    return float(z[2] - z[0])


__all__ = ["corner_value", "ibp_margin", "np", "padded_cnn_benchmark", "trap_benchmark"]

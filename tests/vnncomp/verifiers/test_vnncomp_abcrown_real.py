"""The real alpha-beta-CROWN, in both modes, on a tiny padded CNN with known answers, and csv mode on
an instance that needs branch and bound.

Runs only when adcert finds abCROWN with no flag (``make abcrown``'s .venv-abcrown, or
ADCERT_ABCROWN and ADCERT_ABCROWN_PYTHON); skipped otherwise. The CNN is Conv(1->4, 4x4, stride 2,
padding 1) -> ReLU -> Flatten -> Linear on 1x10x10 inputs: one property that interval arithmetic
proves here (unsat), one with a counterexample PGD finds here (sat). The MLP (100-40-40-3, seed 0)
at eps 0.04 holds, but neither CROWN nor alpha-CROWN proves it: abCROWN goes to branch and bound.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adcert_plugin.errors import VerifierError
from vnncomp.export.abcrown import write_abcrown_configs
from vnncomp.export.instances import read_instances, write_instances_csv
from vnncomp.export.onnx_export import export_onnx
from vnncomp.export.vnnlib import property_from_sample, render_v1
from vnncomp.results import check_counterexample
from vnncomp.verifiers import find_abcrown, find_abcrown_python, verify_benchmark


def _abcrown_found() -> bool:
    try:
        find_abcrown(), find_abcrown_python()
    except VerifierError:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not _abcrown_found(),
    reason="alpha-beta-CROWN absent: `make abcrown` (or set ADCERT_ABCROWN and ADCERT_ABCROWN_PYTHON) to run it",
)


def _ibp_margin(net: nn.Sequential, x: torch.Tensor, label: int, eps: float) -> float:
    low, high = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    for layer in net:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            centre, radius = layer((low + high) / 2), (high - low) / 2
            radius = (
                F.conv2d(radius, layer.weight.abs(), None, layer.stride, layer.padding)
                if isinstance(layer, nn.Conv2d)
                else F.linear(radius, layer.weight.abs())
            )
            low, high = centre - radius, centre + radius
        else:
            low, high = layer(low), layer(high)
    others = [j for j in range(3) if j != label]
    return float(low[0, label] - high[0, others].max())


def _pgd_breaks(net: nn.Sequential, x: torch.Tensor, label: int, eps: float) -> bool:
    delta = torch.zeros_like(x, requires_grad=True)
    others = [j for j in range(3) if j != label]
    for _ in range(200):
        y = net((x + delta).clamp(0, 1))
        loss = y[0, others].max() - y[0, label]
        if loss > 0:
            return True
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta += eps / 20 * grad.sign()
            delta.clamp_(-eps, eps)
    return False


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("abcrown_real")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 4, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(100, 3)).eval()
    x = torch.rand(1, 1, 10, 10)
    with torch.no_grad():
        label = int(net(x).argmax())
        eps_unsat = max(e for e in (0.001, 0.002, 0.005, 0.01, 0.02) if _ibp_margin(net, x, label, e) > 0)
    eps_sat = min(e for e in (0.02, 0.05, 0.1, 0.2, 0.3, 0.5) if _pgd_breaks(net, x, label, e))
    export_onnx(net, (1, 10, 10), root / "onnx" / "tiny.onnx")
    (root / "vnnlib").mkdir()
    rows = []
    for kind, eps in (("sat", eps_sat), ("unsat", eps_unsat)):
        prop = property_from_sample(x[0].numpy(), label, eps, (0.0,), (1.0,), 3, comment=f"expected {kind}")
        (root / "vnnlib" / f"{kind}.vnnlib").write_text(render_v1(prop))
        rows.append(("onnx/tiny.onnx", f"vnnlib/{kind}.vnnlib", 30))
    write_instances_csv(root / "instances.csv", rows)
    write_abcrown_configs(root, 30.0)
    return root


@pytest.mark.parametrize("mode", ["single", "csv"])
def test_real_abcrown_gives_the_known_answers(tiny_bench, mode, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    complete_verifier = find_abcrown()
    before = set(os.listdir(complete_verifier))
    results, table = verify_benchmark(tiny_bench, "abcrown", mode=mode, device="cpu", force=True)
    answers = {r.instance: r.result for r in results}
    assert answers == {"sat": "sat", "unsat": "unsat"}, [(r.instance, r.result, r.note) for r in results]
    if mode == "single":  # single mode hands back the counterexample; it must hold on the network
        sat = next(r for r in results if r.instance == "sat")
        inst = {i.name: i for i in read_instances(tiny_bench)}["sat"]
        assert check_counterexample(inst.onnx, inst.vnnlib, sat.counterexample, sat.output).valid
        assert np.asarray(sat.counterexample).shape == (100,)
    # byproducts stay in the results folder: nothing in the cwd, no test_cex.txt in abCROWN's checkout
    assert os.listdir(tmp_path) == []
    assert set(os.listdir(complete_verifier)) - before <= {"__pycache__"}
    assert table == tiny_bench / "results" / "abcrown.csv"


@pytest.fixture(scope="module")
def bab_bench(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("abcrown_bab")
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(100, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 3)
    ).eval()
    x = torch.rand(1, 1, 10, 10)
    with torch.no_grad():
        label = int(net(x).argmax())
    export_onnx(net, (1, 10, 10), root / "onnx" / "mlp.onnx")
    (root / "vnnlib").mkdir()
    rows = []
    for name, eps in (("easy", 0.01), ("bab", 0.04), ("broken", 0.07)):
        prop = property_from_sample(x[0].numpy(), label, eps, (0.0,), (1.0,), 3, comment=name)
        (root / "vnnlib" / f"{name}.vnnlib").write_text(render_v1(prop))
        rows.append(("onnx/mlp.onnx", f"vnnlib/{name}.vnnlib", 300))
    write_instances_csv(root / "instances.csv", rows)
    write_abcrown_configs(root, 300.0)  # the YAML's bab.timeout; adcert's --timeout must win over it
    return root


def test_real_abcrown_csv_mode_answers_every_instance_through_branch_and_bound(bab_bench):
    results, _ = verify_benchmark(bab_bench, "abcrown", mode="csv", device="cpu", timeout=120, force=True)
    answers = {r.instance: r for r in results}
    assert {n: r.result for n, r in answers.items()} == {"easy": "unsat", "bab": "unsat", "broken": "sat"}, [
        (r.instance, r.result, r.note) for r in results
    ]
    assert answers["bab"].note.startswith("safe;")  # proved by BaB, not by the incomplete bounds
    folder = bab_bench / "results" / "abcrown"
    assert b"torch" in (folder / "csv-0.pkl").read_bytes()  # the pickle holds tensors, and was read
    # the sat came with the counterexample abCROWN saved for its row, valid on the network
    sat = answers["broken"]
    inst = {i.name: i for i in read_instances(bab_bench)}["broken"]
    assert "confirmed alone" not in sat.note
    assert check_counterexample(inst.onnx, inst.vnnlib, sat.counterexample, sat.output).valid
    assert "Overriding timeout: 120" in (folder / "csv-0.log").read_text()  # the timeout adcert records


def test_real_abcrown_csv_mode_keeps_to_the_timeout_it_is_given(bab_bench):
    results, _ = verify_benchmark(
        bab_bench, "abcrown", mode="csv", device="cpu", timeout=1, instances=["bab"], force=True
    )
    (result,) = results
    assert result.result in ("timeout", "unsat"), result.note  # abCROWN stops BaB at 1 s (or proves it first)
    assert "Overriding timeout: 1" in (bab_bench / "results" / "abcrown" / "csv-0.log").read_text()

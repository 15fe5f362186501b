"""End to end on real MNIST: train a tiny MLP, export a benchmark, decide it with Marabou.

Every sample that IBP certifies must come back ``unsat`` and every sample that PGD breaks
must come back ``sat`` with a counterexample that passes the VNN-COMP check.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adcert_plugin.bounds import InputBox
from adcert_plugin.models import create_model
from adcert_plugin.training import arch_record, save_checkpoint
from vnncomp.export.benchmark import export_benchmark
from vnncomp.export.instances import read_instances
from vnncomp.results import check_counterexample, cross_check, read_results_table
from vnncomp.verifiers import verify_benchmark
from conftest import REPO

EPS = 0.015
N = 8


def _mnist_dir() -> Path | None:
    for candidate in (os.environ.get("ADCERT_DATA"), REPO.parent / "shared" / "data", "/work/shared/data"):
        if candidate and (Path(candidate) / "MNIST" / "raw").is_dir():
            return Path(candidate)
    return None


def _train(images: torch.Tensor, labels: torch.Tensor) -> nn.Sequential:
    """784-32-10 MLP, 300 Adam steps on 2000 images (MNIST mean 0 / std 1: no normalisation)."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    subset = torch.randperm(len(labels), generator=generator)[:2000]
    x, y = images[subset], labels[subset]
    model = create_model("mlp", (1, 28, 28), 10, hidden=(32,))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        batch = torch.randint(0, len(y), (128,), generator=generator)
        loss = F.cross_entropy(model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _ibp_margin(model: nn.Sequential, box: InputBox, y: torch.Tensor) -> torch.Tensor:
    """Lower bound of min_j (z_y − z_j) by interval arithmetic (our own, independent of adcert_plugin.bounds)."""
    low, high = box.lower_norm, box.upper_norm
    for layer in model:
        if isinstance(layer, nn.Flatten):
            low, high = layer(low), layer(high)
        elif isinstance(layer, nn.Linear):
            centre, radius = layer((low + high) / 2), ((high - low) / 2) @ layer.weight.abs().t()
            low, high = centre - radius, centre + radius
        elif isinstance(layer, nn.ReLU):
            low, high = low.relu(), high.relu()
    true_low = low.gather(1, y[:, None])
    others_high = high.scatter(1, y[:, None], float("-inf"))
    return (true_low - others_high).min(1).values


def _pgd_broken(model: nn.Sequential, box: InputBox, y: torch.Tensor, steps: int = 50) -> torch.Tensor:
    """Simple margin-loss PGD with a random start; True where a misclassified point was found."""
    generator = torch.Generator().manual_seed(1)
    step = (box.upper_norm - box.lower_norm) / 8
    x = box.lower_norm + torch.rand(box.x_norm.shape, generator=generator) * (box.upper_norm - box.lower_norm)
    broken = torch.zeros(len(y), dtype=torch.bool)
    for _ in range(steps):
        x = x.detach().requires_grad_(True)
        logits = model(x)
        broken |= logits.argmax(1) != y
        other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
        (grad,) = torch.autograd.grad((other - logits.gather(1, y[:, None]).squeeze(1)).sum(), x)
        x = torch.maximum(torch.minimum(x + step * grad.sign(), box.upper_norm), box.lower_norm)
    with torch.no_grad():
        return broken | (model(x).argmax(1) != y)


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    return _mnist_run(tmp_path_factory)


def _mnist_run(tmp_path_factory) -> dict:
    data_dir = _mnist_dir()
    if data_dir is None:
        pytest.skip("real MNIST not found (set ADCERT_DATA)")
    pytest.importorskip("maraboupy")
    from adcert_plugin.data import load_split

    root = tmp_path_factory.mktemp("e2e")
    model = _train(*load_split("mnist", "train", data_dir))
    checkpoint = save_checkpoint(root / "model.pt", model, arch_record("mlp", (1, 28, 28), 10, {"hidden": [32]}),
                                 "mnist", config={"attack": {"eps": EPS}})
    images, labels = load_split("mnist", "test", data_dir)
    for seed in range(10):
        bench = root / f"bench{seed}"
        info = export_benchmark(checkpoint, bench, data_dir=data_dir, n=N, seed=seed, timeout=30.0)
        index = torch.tensor([e["index"] for e in info.instances])
        box = InputBox.from_pixels(images[index], EPS, (0.0,), (1.0,))
        with torch.no_grad():
            certified = (_ibp_margin(model, box, labels[index]) > 1e-4).tolist()
        broken = _pgd_broken(model, box, labels[index]).tolist()
        if any(certified) and any(broken):
            break
    else:
        pytest.fail("no seed gave both IBP-certified and PGD-broken samples; retune EPS")
    results, table = verify_benchmark(bench, "marabou")
    return {"bench": bench, "info": info, "certified": certified, "broken": broken, "results": results,
            "table": table, "data_dir": data_dir, "seed": seed}


def test_marabou_agrees_with_ibp_and_pgd(mnist_run):
    words = {r.instance: r.result for r in mnist_run["results"]}
    entries = mnist_run["info"].instances
    assert len(words) == N
    for entry, certified, broken in zip(entries, mnist_run["certified"], mnist_run["broken"]):
        assert not (certified and broken), f"IBP certificate broken by PGD on sample {entry['index']}: unsound"
        if certified:
            assert words[entry["instance"]] == "unsat", entry
        if broken or entry["pgd_robust"] is False:
            assert words[entry["instance"]] == "sat", entry
    assert set(words.values()) <= {"unsat", "sat"}


def test_sat_counterexamples_pass_the_check(mnist_run):
    instances = {i.name: i for i in read_instances(mnist_run["bench"])}
    sats = [r for r in mnist_run["results"] if r.result == "sat"]
    assert sats
    for r in sats:
        inst = instances[r.instance]
        outcome = check_counterexample(inst.onnx, inst.vnnlib, r.counterexample, r.output)
        assert outcome.valid, outcome.reason
        moved = r.counterexample.copy()
        moved[0] += 0.1
        assert not check_counterexample(inst.onnx, inst.vnnlib, moved).valid


def test_results_table_and_cross_check(mnist_run):
    table = read_results_table(mnist_run["table"])
    assert [(r.instance, r.result) for r in table] == [(r.instance, r.result) for r in mnist_run["results"]]
    entries = mnist_run["info"].instances
    rows = [{"index": e["index"], "label": e["label"], "prediction": e["label"], "pgd_robust": not broken,
             "certified_by": "IBP" if certified else None, "status": "x"}
            for e, certified, broken in zip(entries, mnist_run["certified"], mnist_run["broken"])]
    check = cross_check(rows, table, {e["instance"]: e["index"] for e in entries},
                        {e["instance"]: e["label"] for e in entries})
    unsat = sum(r.result == "unsat" for r in table)
    assert check.contradictions == [] and check.certified_merged == unsat >= check.certified_incomplete


def test_generate_properties_script_reproduces_the_files(mnist_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(mnist_run["bench"], copy, ignore=shutil.ignore_patterns("results"))
    for folder in ("vnnlib", "2.0/vnnlib"):
        shutil.rmtree(copy / folder)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(copy / "generate_properties.py"), str(mnist_run["seed"]),
                           "--data-dir", str(mnist_run["data_dir"])], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    for folder in ("vnnlib", "2.0/vnnlib"):
        original = {p.name: p.read_text() for p in (mnist_run["bench"] / folder).iterdir()}
        assert {p.name: p.read_text() for p in (copy / folder).iterdir()} == original
    assert (copy / "instances.csv").read_text() == (mnist_run["bench"] / "instances.csv").read_text()
    assert json.loads((copy / "metadata.json").read_text())["instances"] == \
        json.loads((mnist_run["bench"] / "metadata.json").read_text())["instances"]
    assert np.isclose(mnist_run["info"].clean_accuracy, 0.9, atol=0.08)

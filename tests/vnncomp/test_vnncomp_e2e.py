"""End to end on real MNIST with a padded CNN: train, export, decide with NeuralSAT (and Marabou when installed).

The network is small-cnn at width 4 (Conv 4x4 stride 2 padding 1, twice, then Gemm, Gemm): the
padded convolutions on which Marabou 2.0.0 answers ``unsat`` to falsifiable properties. Two
benchmarks of two instances come from it: one at a tiny eps, where our own interval arithmetic
certifies every sample (expected ``unsat``), one at a large eps, where our own PGD breaks every
sample (a known counterexample: expected ``sat``). The test fails if any verifier calls a property
with a known counterexample ``unsat``; NeuralSAT must decide all four, with valid counterexamples.

NeuralSAT comes from ``make neuralsat`` (``make test`` builds it). Without it the test is skipped,
except in CI (``CI=true``), where its absence fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, shared_data_dir
from torch import nn

from adcert_plugin.bounds import InputBox
from adcert_plugin.errors import VerifierError
from adcert_plugin.models import create_model
from adcert_plugin.training import arch_record, save_checkpoint
from vnncomp.export.benchmark import export_benchmark
from vnncomp.export.instances import read_instances
from vnncomp.results import check_counterexample, cross_check, read_results_table
from vnncomp.verifiers import find_neuralsat, verify_benchmark

ARCH = {"width": 4, "linear_size": 16}
EPS = {"unsat": 0.002, "sat": 0.1}
N = 2
TIMEOUT = 30.0


def neuralsat_or_skip() -> str:
    """NeuralSAT's interpreter; skip when it is absent, but fail in CI, where `make test` builds it."""
    try:
        return find_neuralsat()[0]
    except VerifierError as err:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but NeuralSAT is missing ({err}); `make test` builds it with `make neuralsat`")
        pytest.skip(f"NeuralSAT is not installed ({err}); `make neuralsat` builds it")


def _train(images: torch.Tensor, labels: torch.Tensor) -> nn.Sequential:
    """small-cnn (width 4), 300 Adam steps on 2000 images (MNIST mean 0 / std 1: no normalisation)."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    subset = torch.randperm(len(labels), generator=generator)[:2000]
    x, y = images[subset], labels[subset]
    model = create_model("small-cnn", (1, 28, 28), 10, **ARCH)
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
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            centre, radius = layer((low + high) / 2), (high - low) / 2
            if isinstance(layer, nn.Conv2d):
                radius = F.conv2d(radius, layer.weight.abs(), None, layer.stride, layer.padding)
            else:
                radius = radius @ layer.weight.abs().t()
            low, high = centre - radius, centre + radius
        else:  # ReLU and Flatten are monotone
            low, high = layer(low), layer(high)
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


def _export(checkpoint: Path, root: Path, kind: str, model, images, labels, data_dir) -> dict:
    """A benchmark whose every sample is IBP-certified (unsat) or PGD-broken (sat), trying seeds."""
    eps = EPS[kind]
    for seed in range(10):
        bench = root / f"{kind}{seed}"
        info = export_benchmark(checkpoint, bench, data_dir=data_dir, eps=eps, n=N, seed=seed, timeout=TIMEOUT)
        index = torch.tensor([e["index"] for e in info.instances])
        box = InputBox.from_pixels(images[index], eps, (0.0,), (1.0,))
        with torch.no_grad():
            certified = (_ibp_margin(model, box, labels[index]) > 1e-4).tolist()
        broken = _pgd_broken(model, box, labels[index]).tolist()
        if all(certified if kind == "unsat" else broken):
            return {"bench": bench, "info": info, "certified": certified, "broken": broken, "seed": seed}
    pytest.fail(f"no seed gave {N} {'IBP-certified' if kind == 'unsat' else 'PGD-broken'} samples at eps {eps}")


@pytest.fixture(scope="module")
def padded_cnn(tmp_path_factory) -> dict:
    data_dir = shared_data_dir()
    if data_dir is None:
        pytest.skip("real MNIST not found (set ADCERT_DATA)")
    neuralsat_or_skip()
    from adcert_plugin.data import load_split

    root = tmp_path_factory.mktemp("e2e")
    model = _train(*load_split("mnist", "train", data_dir))
    checkpoint = save_checkpoint(
        root / "model.pt",
        model,
        arch_record("small-cnn", (1, 28, 28), 10, ARCH),
        "mnist",
        config={"attack": {"eps": EPS["sat"]}},
    )
    images, labels = load_split("mnist", "test", data_dir)
    benches = {kind: _export(checkpoint, root, kind, model, images, labels, data_dir) for kind in EPS}
    return {"benches": benches, "data_dir": data_dir, "answers": {}}


def _answers(run: dict, verifier: str) -> dict:
    """verify_benchmark on both benchmarks, once per verifier: kind -> (results, table, seconds)."""
    if verifier not in run["answers"]:
        out, before = {}, set(os.listdir())
        for kind, b in run["benches"].items():
            start = time.monotonic()
            results, table = verify_benchmark(b["bench"], verifier, jobs=2)
            out[kind] = (results, table, time.monotonic() - start)
        run["answers"][verifier] = out
        run.setdefault("left_in_cwd", {})[verifier] = sorted(set(os.listdir()) - before)
    return run["answers"][verifier]


def test_the_network_has_padded_convolutions(padded_cnn):
    import onnx

    bench = padded_cnn["benches"]["sat"]["bench"]
    graph = onnx.load(str(next((bench / "onnx").glob("*.onnx")))).graph
    pads = [list(a.ints) for node in graph.node if node.op_type == "Conv" for a in node.attribute if a.name == "pads"]
    assert pads == [[1, 1, 1, 1], [1, 1, 1, 1]]


@pytest.mark.parametrize("verifier", ["neuralsat", "marabou"])
def test_no_verifier_calls_a_known_counterexample_unsat(padded_cnn, verifier):
    if verifier == "marabou":
        pytest.importorskip("maraboupy")
    for kind, b in padded_cnn["benches"].items():
        results, _, _ = _answers(padded_cnn, verifier)[kind]
        words = {r.instance: r.result for r in results}
        for entry, broken in zip(b["info"].instances, b["broken"]):
            known = broken or entry["pgd_robust"] is False
            assert not (known and words[entry["instance"]] == "unsat"), (
                f"{verifier} says unsat on {entry['instance']} (test index {entry['index']}), which PGD breaks"
            )


def test_neuralsat_decides_both_kinds_with_valid_counterexamples(padded_cnn):
    answers = _answers(padded_cnn, "neuralsat")
    for kind, b in padded_cnn["benches"].items():
        results, _, seconds = answers[kind]
        assert [r.result for r in results] == [kind] * N, [(r.instance, r.result, r.note) for r in results]
        instances = {i.name: i for i in read_instances(b["bench"])}
        for r in results:
            if r.result == "sat":
                inst = instances[r.instance]
                outcome = check_counterexample(inst.onnx, inst.vnnlib, r.counterexample, r.output)
                assert outcome.valid, outcome.reason
        print(f"neuralsat on {N} {kind} instances (jobs 2): {seconds:.1f} s wall")


def test_neuralsat_leaves_nothing_in_the_cwd_and_resumes(padded_cnn):
    bench = padded_cnn["benches"]["unsat"]["bench"]
    _answers(padded_cnn, "neuralsat")
    assert padded_cnn["left_in_cwd"]["neuralsat"] == [] and (bench / "results" / "neuralsat" / "cache").is_dir()
    start = time.monotonic()
    again, _ = verify_benchmark(bench, "neuralsat")
    assert all("reused" in r.note for r in again) and time.monotonic() - start < 10
    meta = json.loads((bench / "results" / "neuralsat" / f"{again[0].instance}.json").read_text())
    assert meta["verifier"] == "neuralsat" and meta["timeout"] == TIMEOUT


def test_results_table_and_cross_check(padded_cnn):
    for kind, b in padded_cnn["benches"].items():
        results, table_path, _ = _answers(padded_cnn, "neuralsat")[kind]
        table = read_results_table(table_path)
        assert [(r.instance, r.result) for r in table] == [(r.instance, r.result) for r in results]
        entries = b["info"].instances
        rows = [
            {
                "index": e["index"],
                "label": e["label"],
                "prediction": e["label"],
                "pgd_robust": not broken,
                "certified_by": "IBP" if certified else None,
                "status": "x",
            }
            for e, certified, broken in zip(entries, b["certified"], b["broken"])
        ]
        check = cross_check(
            rows, table, {e["instance"]: e["index"] for e in entries}, {e["instance"]: e["label"] for e in entries}
        )
        unsat = sum(r.result == "unsat" for r in table)
        assert check.contradictions == [] and check.certified_merged == unsat >= check.certified_incomplete


def test_generate_properties_script_reproduces_the_files(padded_cnn, tmp_path):
    b = padded_cnn["benches"]["sat"]
    copy = tmp_path / "copy"
    shutil.copytree(b["bench"], copy, ignore=shutil.ignore_patterns("results"))
    for folder in ("vnnlib", "2.0/vnnlib"):
        shutil.rmtree(copy / folder)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            str(copy / "generate_properties.py"),
            str(b["seed"]),
            "--data-dir",
            str(padded_cnn["data_dir"]),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for folder in ("vnnlib", "2.0/vnnlib"):
        original = {p.name: p.read_text() for p in (b["bench"] / folder).iterdir() if p.suffix == ".vnnlib"}
        assert {p.name: p.read_text() for p in (copy / folder).iterdir()} == original
    assert (copy / "instances.csv").read_text() == (b["bench"] / "instances.csv").read_text()
    assert (
        json.loads((copy / "metadata.json").read_text())["instances"]
        == json.loads((b["bench"] / "metadata.json").read_text())["instances"]
    )
    assert np.isclose(b["info"].clean_accuracy, 0.93, atol=0.06)

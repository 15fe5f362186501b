"""vnncomp.verifiers.complete: a CompleteRequest becomes a benchmark, verify_benchmark's results become answers.

The last test runs the real NeuralSAT on two tiny properties (about 15 s) and is skipped when
its environment (ADCERT_NEURALSAT_PYTHON or .venv-neuralsat) is absent.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_net

from adcert_plugin.evaluation import complete as C
from adcert_plugin.evaluation.verifiers import ANSWERS, CompleteRequest, create_verifier
from vnncomp.export.instances import read_instances, read_metadata
from vnncomp.export.onnx_run import run_onnx
from vnncomp.results import VerifierResult
from vnncomp.verifiers import complete as VC, neuralsat as NS


def _request(tmp_path, indices=(3, 8), seed=0, sha="abc", eps=0.02, **kw) -> CompleteRequest:
    torch.manual_seed(seed)
    model = tiny_net("cnn", seed=1)
    x = torch.rand(len(indices), 1, 8, 8)
    with torch.no_grad():
        y = model((x - 0.1307) / 0.3081).argmax(1)
    return CompleteRequest(
        model, x, y, tuple(indices), eps, (0.1307,), (0.3081,), 4, 20.0, 2, tmp_path / "work", sha, "mnist_tiny", **kw
    )


def test_prepare_benchmark_writes_onnx_once_and_accumulates_properties(tmp_path):
    bench, names = VC.prepare_benchmark(_request(tmp_path))
    assert sorted(names.values()) == [3, 8] and all(n.startswith("mnist_tiny_idx") for n in names)
    onnx = bench / "onnx" / "mnist_tiny.onnx"
    stamp = onnx.stat().st_mtime_ns
    request = _request(tmp_path, indices=(12,), seed=1)
    _, more = VC.prepare_benchmark(request)
    assert onnx.stat().st_mtime_ns == stamp  # the network is exported once
    instances = read_instances(bench)
    assert [i.name for i in instances] == sorted({**names, **more}, key=lambda n: {**names, **more}[n])
    meta = read_metadata(bench)
    assert [e["index"] for e in meta["instances"]] == [3, 8, 12]
    assert meta["checkpoint_sha256"] == "abc" and len(meta["onnx_sha256"]) == 64
    x_norm = ((request.x - 0.1307) / 0.3081).numpy()
    with torch.no_grad():
        expected = request.model(torch.from_numpy(x_norm)).numpy()
    assert np.allclose(run_onnx(onnx, x_norm[:1]), expected[:1], atol=1e-5)
    VC.prepare_benchmark(_request(tmp_path, sha="another network"))
    assert [e["index"] for e in read_metadata(bench)["instances"]] == [3, 8]  # the old network's files are gone


def test_the_eval_benchmark_is_a_full_benchmark_with_abcrown_configs(tmp_path):
    import yaml

    from vnncomp.verifiers.abcrown import abcrown_config

    bench, _ = VC.prepare_benchmark(_request(tmp_path))
    for device in ("cpu", "gpu"):  # adcert-verify --verifier abcrown reads these
        config = yaml.safe_load(abcrown_config(bench, device).read_text())
        assert config["general"]["root_path"] == str(bench.resolve()) and config["bab"]["timeout"] == 20.0


def test_the_results_table_keeps_every_chunk(tmp_path, monkeypatch):
    from vnncomp.results import read_results_table
    from vnncomp.verifiers import verify as V

    def fake_run(bench_dir, **kw):
        return [VerifierResult(n, "neuralsat", "timeout", 1.0) for n in kw["instances"]]

    monkeypatch.setattr(V, "run_neuralsat", fake_run)
    VC.neuralsat().verify(_request(tmp_path, indices=(3, 8)))
    VC.neuralsat().verify(_request(tmp_path, indices=(12,), seed=1))
    table = tmp_path / "work" / "results" / "neuralsat.csv"
    rows = read_results_table(table)
    assert len(rows) == 3 and [r.instance for r in rows] == [i.name for i in read_instances(tmp_path / "work")]
    VC.neuralsat().verify(_request(tmp_path, indices=(3, 8), sha="another network"))  # a new network: a new table
    assert len(read_results_table(table)) == 2


def test_verify_maps_results_to_answers_and_passes_options(tmp_path, monkeypatch):
    calls = {}

    def fake_verify(bench, name, **kw):
        calls.update(kw, name=name, bench=bench)
        first, second = kw["instances"]
        return [
            VerifierResult(first, name, "unsat", 2.0),
            VerifierResult(second, name, "timeout", float("nan"), note="killed"),
        ], bench / "t.csv"

    monkeypatch.setattr("vnncomp.verifiers.verify_benchmark", fake_verify)
    request = _request(
        tmp_path,
        options={
            "abcrown": "/ab",
            "abcrown_python": "/py",
            "abcrown_mode": "csv",
            "neuralsat_python": "/ns",
            "device": "gpu",
        },
    )
    answers = VC.abcrown().verify(request)
    assert calls["jobs"] == 2 and calls["timeout"] == 20.0 and calls["name"] == "abcrown"
    assert (calls["abcrown_path"], calls["abcrown_python"], calls["mode"], calls["device"]) == (
        "/ab",
        "/py",
        "csv",
        "gpu",
    )
    assert {a.index: a.result for a in answers} == {3: "unsat", 8: "timeout"}
    attack = yaml.safe_load((calls["bench"] / "abcrown_cpu.yaml").read_text())["attack"]
    assert attack == {"pgd_order": "middle", "pgd_restarts": 30}  # the default: plain PGD
    VC.abcrown().verify(dataclasses.replace(request, options={**request.options, "abcrown_attack": "diversed"}))
    attack = yaml.safe_load((calls["bench"] / "abcrown_cpu.yaml").read_text())["attack"]
    assert attack["attack_mode"] == "diversed_PGD" and attack["pgd_restarts"] == 100
    calls.clear()
    VC.neuralsat().verify(request)
    assert calls["python"] == "/ns" and calls["name"] == "neuralsat" and "abcrown_path" not in calls
    checked = C._checked(answers, request)
    assert checked[8]["seconds"] == 0.0 and checked[8]["note"] == "killed"  # NaN time: not measured
    assert calls["raise_on_contradiction"] is False  # contradictions come back as answers, reported by the eval


def test_an_unsat_the_evidence_rejects_comes_back_as_a_contradiction(tmp_path, monkeypatch):
    def fake_verify(bench, name, **kw):
        note = "rejected unsat: counterexample in hand (verify-time, margin -0.1)"
        return [VerifierResult(n, name, "error", 3.0, note=note) for n in kw["instances"]], bench / "t.csv"

    monkeypatch.setattr("vnncomp.verifiers.verify_benchmark", fake_verify)
    answers = VC.neuralsat().verify(_request(tmp_path))
    assert {a.result for a in answers} == {"error"}
    assert answers[0].contradiction == "neuralsat says unsat, counterexample in hand (verify-time, margin -0.1)"


def test_check_fails_early_without_the_verifier(monkeypatch, tmp_path):
    from adcert_plugin.errors import VerifierError

    monkeypatch.setenv("ADCERT_NEURALSAT_PYTHON", str(tmp_path / "nowhere" / "python"))
    with pytest.raises(VerifierError, match="does not exist"):
        create_verifier("neuralsat").check({})
    monkeypatch.delenv("ADCERT_ABCROWN", raising=False)
    monkeypatch.setattr("vnncomp.verifiers.abcrown.DEFAULT_CHECKOUT", tmp_path / "no-venv" / "src" / "abcrown")
    with pytest.raises(VerifierError, match="make abcrown"):
        create_verifier("abcrown").check({})


def _neuralsat_python() -> str | None:
    for candidate in (os.environ.get(NS.ENV_PYTHON), NS.PROJECT_VENV_PYTHON):
        if candidate and Path(candidate).exists():
            return str(candidate)
    return None


@pytest.mark.skipif(
    _neuralsat_python() is None, reason="NeuralSAT's env absent (ADCERT_NEURALSAT_PYTHON, .venv-neuralsat)"
)
def test_real_neuralsat_answers_two_tiny_samples(tmp_path):
    request = _request(tmp_path, eps=0.05, options={"neuralsat_python": _neuralsat_python()})
    answers = create_verifier("neuralsat").verify(request)
    checked = C._checked(answers, request)
    assert set(checked) == {3, 8}
    for answer in checked.values():
        assert answer["result"] in ANSWERS and answer["result"] != "error", answer
        if answer["result"] == "sat":
            assert answer["cex_margin"] <= C.MARGIN_SLACK  # its counterexample re-checked on the PyTorch model

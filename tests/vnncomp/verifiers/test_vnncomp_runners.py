"""Verifier runners with stand-in verifier programs: command lines, result files, wall limits."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from adcert_plugin.errors import VerifierError
from adcert_plugin.models import create_model
from vnncomp.export.instances import write_instances_csv
from vnncomp.export.onnx_export import export_onnx, run_onnx
from vnncomp.export.vnnlib import property_from_sample, render_v1
from vnncomp.results import read_result_file
from vnncomp.verifiers import find_abcrown, run_abcrown, run_marabou, run_neuralsat, runners, verify_benchmark

# A stand-in for abcrown.py: records its arguments, writes the word given by the vnnlib name.
FAKE_ABCROWN = textwrap.dedent("""
    import argparse, pathlib, sys, time
    p = argparse.ArgumentParser()
    for flag in ("--config", "--onnx_path", "--vnnlib_path", "--results_file", "--timeout"):
        p.add_argument(flag)
    p.add_argument("--save_adv_example", action="store_true")
    a = p.parse_args()
    assert a.save_adv_example and pathlib.Path(a.config).is_file() and pathlib.Path(a.onnx_path).is_file()
    pathlib.Path(a.results_file + ".args").write_text(" ".join(sys.argv[1:]))
    if "sleep" in a.vnnlib_path:
        time.sleep(30)
    pathlib.Path(a.results_file).write_text("unsat")
""")

# A stand-in for NeuralSAT's main.py: writes its real result format with a counterexample.
FAKE_NEURALSAT = textwrap.dedent("""
    import argparse
    p = argparse.ArgumentParser()
    for flag in ("--net", "--spec", "--timeout", "--device", "--result_file", "--verbosity"):
        p.add_argument(flag)
    p.add_argument("--export_cex", action="store_true")
    p.add_argument("--export_runtime", action="store_true")
    a = p.parse_args()
    assert a.export_cex and a.export_runtime
    with open(a.result_file, "w") as f:
        print("sat,0.1234", file=f)
        print("((X_0 0.5)\\n (X_1 0.25)\\n (X_2 0.75)\\n (X_3 1.0)\\n (Y_0 1.0)\\n (Y_1 2.0)\\n (Y_2 3.0))", file=f)
""")


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    """A two-instance benchmark on a 2x2 MLP: one robust (tiny eps), one trivially sat (wrong label)."""
    root = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    model = create_model("mlp", (1, 2, 2), 3, hidden=(8,)).eval()
    export_onnx(model, (1, 2, 2), root / "onnx" / "net.onnx")
    x0 = np.array([[[0.2, 0.4], [0.6, 0.8]]], dtype=np.float32)
    pred = int(run_onnx(root / "onnx" / "net.onnx", x0[None]).argmax())
    (root / "vnnlib").mkdir()
    rows = []
    for name, label, eps in (("robust", pred, 0.001), ("wrong_label", (pred + 1) % 3, 0.01)):
        (root / "vnnlib" / f"{name}.vnnlib").write_text(render_v1(property_from_sample(x0, label, eps, (0.0,),
                                                                                           (1.0,), 3)))
        rows.append(("onnx/net.onnx", f"vnnlib/{name}.vnnlib", 20))
    write_instances_csv(root / "instances.csv", rows)
    (root / "abcrown_cpu.yaml").write_text("general: {device: cpu}\n")
    return root


def test_marabou_runner(bench):
    pytest.importorskip("maraboupy")
    results = run_marabou(bench, timeout=10)
    assert [(r.instance, r.result) for r in results] == [("robust", "unsat"), ("wrong_label", "sat")]
    assert results[1].counterexample.shape == (4,) and results[1].output.shape == (3,)
    assert read_result_file(bench / "results" / "marabou" / "wrong_label.txt", "marabou").result == "sat"
    assert (bench / "results" / "marabou" / "robust.log").is_file()
    checked, table = verify_benchmark(bench, "marabou", timeout=10, instances=["wrong_label"])
    assert [r.result for r in checked] == ["sat"] and table.name == "marabou.csv"


def test_abcrown_runner_with_stand_in(tmp_path, bench):
    checkout = tmp_path / "alpha-beta-CROWN"
    (checkout / "complete_verifier").mkdir(parents=True)
    (checkout / "complete_verifier" / "abcrown.py").write_text(FAKE_ABCROWN)
    assert find_abcrown(checkout) == checkout / "complete_verifier"
    results = run_abcrown(checkout, bench, timeout=7, device="cpu")
    assert [r.result for r in results] == ["unsat", "unsat"]
    args = (bench / "results" / "abcrown" / "robust.txt.args").read_text().split()
    assert args[args.index("--timeout") + 1] == "7.0"
    assert args[args.index("--vnnlib_path") + 1] == str(bench / "vnnlib" / "robust.vnnlib")


def test_runner_kills_at_wall_limit(tmp_path, bench, monkeypatch):
    checkout = tmp_path / "abc"
    (checkout / "complete_verifier").mkdir(parents=True)
    (checkout / "complete_verifier" / "abcrown.py").write_text(FAKE_ABCROWN)
    sleepy = tmp_path / "sleepy"
    (sleepy / "onnx").mkdir(parents=True)
    (sleepy / "vnnlib").mkdir()
    (sleepy / "onnx" / "net.onnx").write_bytes((bench / "onnx" / "net.onnx").read_bytes())
    (sleepy / "vnnlib" / "sleep.vnnlib").write_text((bench / "vnnlib" / "robust.vnnlib").read_text())
    write_instances_csv(sleepy / "instances.csv", [("onnx/net.onnx", "vnnlib/sleep.vnnlib", 1)])
    (sleepy / "abcrown_cpu.yaml").write_text("general: {device: cpu}\n")
    monkeypatch.setitem(runners.STARTUP_GRACE, "abcrown", 0.5)
    (result,) = run_abcrown(checkout, sleepy, device="cpu")
    assert result.result == "timeout" and result.seconds < 10
    assert read_result_file(sleepy / "results" / "abcrown" / "sleep.txt", "abcrown").result == "timeout"


def test_neuralsat_runner_with_stand_in(tmp_path, bench, monkeypatch):
    (tmp_path / "main.py").write_text(FAKE_NEURALSAT)
    monkeypatch.setattr(runners, "find_neuralsat", lambda python=None: tmp_path)
    results = run_neuralsat(bench, timeout=5, instances=["robust"])
    assert len(results) == 1 and results[0].result == "sat"
    # wall time (start-up included) like every verifier; its own 0.1234 s is kept in the note
    assert 0 < results[0].seconds < 5 and results[0].seconds != 0.1234 and "reports 0.12 s" in results[0].note
    assert results[0].counterexample.tolist() == [0.5, 0.25, 0.75, 1.0]


def test_neuralsat_is_found_in_another_interpreters_environment(tmp_path, monkeypatch):
    """NeuralSAT usually lives in its own venv: --python points at that interpreter."""
    import sys

    src = tmp_path / "site" / "src"
    (src / "verifier").mkdir(parents=True)
    for name in ("__init__.py", "main.py", "verifier/verifier.py"):
        (src / name).write_text("")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    assert runners.find_neuralsat(python=sys.executable) == src
    monkeypatch.delenv("PYTHONPATH")
    with pytest.raises(VerifierError, match="--python"):
        runners.find_neuralsat(python=sys.executable)


def test_missing_verifiers_raise(tmp_path, bench):
    with pytest.raises(VerifierError, match="alpha-beta-CROWN"):
        run_abcrown(tmp_path / "nothing", bench)
    with pytest.raises(VerifierError, match="unknown instances"):
        run_marabou(bench, instances=["nope"])
    with pytest.raises(VerifierError, match="unknown verifier"):
        verify_benchmark(bench, "eran")

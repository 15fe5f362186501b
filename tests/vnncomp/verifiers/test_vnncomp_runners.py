"""Verifier runners with stand-in verifier programs: command lines, result files, wall limits, resume, jobs."""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from adcert_plugin.errors import InstanceError, VerifierError
from adcert_plugin.models import create_model
from vnncomp.cli import verify_cmd
from vnncomp.export.instances import write_instances_csv
from vnncomp.export.onnx_export import export_onnx, run_onnx
from vnncomp.export.vnnlib import property_from_sample, render_v1
from vnncomp.results import read_result_file
from vnncomp.verifiers import (
    abcrown,
    common,
    find_abcrown,
    find_abcrown_python,
    neuralsat,
    run_abcrown,
    run_marabou,
    run_neuralsat,
    verify_benchmark,
)

# A stand-in for abcrown.py: single mode writes the word (and the counterexample: the box's centre,
# which breaks the wrong-label property); csv mode writes abCROWN's pickle, torch tensors in bab_ret
# included, and saves each sat row's counterexample through the --adv_saver it is given, as abCROWN
# does (Customized("file.py", "fn") loaded from the file, the fake's own `arguments` module holding
# the row). FAKE_ABCROWN_NO_CEX: csv mode saves none.
FAKE_ABCROWN = textwrap.dedent("""
    import argparse, importlib.util, os, pathlib, pickle, sys, time
    import numpy as np, torch
    from vnncomp.export.vnnlib_reader import parse_v1
    from vnncomp.export.onnx_run import run_onnx
    import arguments
    p = argparse.ArgumentParser()
    for flag in ("--config", "--onnx_path", "--vnnlib_path", "--results_file", "--timeout", "--cex_path",
                 "--csv_name", "--override_timeout", "--adv_saver"):
        p.add_argument(flag)
    p.add_argument("--save_adv_example", action="store_true")
    a = p.parse_args()
    assert pathlib.Path(a.config).is_file() and pathlib.Path(a.cex_path).parent == pathlib.Path.cwd()
    pathlib.Path(a.results_file + ".args").write_text(" ".join(sys.argv[1:]))

    def cex(onnx, vnnlib):
        spec = parse_v1(pathlib.Path(vnnlib).read_text())
        x = ((spec.lower + spec.upper) / 2).astype(np.float32)
        y = run_onnx(onnx, x.reshape(1, 1, 2, 2)).ravel()
        pairs = [f"(X_{i} {float(v)!r})" for i, v in enumerate(x)] + [f"(Y_{j} {float(v)!r})" for j, v in enumerate(y)]
        return "(" + "\\n".join(pairs) + ")"

    def customized(def_file, name):
        spec = importlib.util.spec_from_file_location("customized", def_file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return getattr(module, name)

    if a.csv_name:
        saver = customized(*eval(a.adv_saver[len("Customized"):]))
        rows = [line.split(",") for line in pathlib.Path(a.csv_name).read_text().splitlines()]
        status = ["unsafe-pgd" if "wrong" in r[1] else "safe" for r in rows]
        for k, (r, s) in enumerate(zip(rows, status)):
            arguments.Globals["example_idx"] = k
            if s == "unsafe-pgd" and "FAKE_ABCROWN_NO_CEX" not in os.environ:
                arguments.Globals["cex_text"] = cex(r[0], r[1])
                saver(None, None, a.cex_path)
        pickle.dump({"summary": {}, "results": [[s, 0.5] for s in status],
                     "bab_ret": [[0, torch.tensor(-0.25), 17, torch.ones(2)]]}, open(a.results_file, "wb"))
        sys.exit(0)
    assert a.save_adv_example and pathlib.Path(a.onnx_path).is_file()
    if "sleep" in a.vnnlib_path:
        time.sleep(30)
    word = "sat\\n" + cex(a.onnx_path, a.vnnlib_path) if "wrong" in a.vnnlib_path else "unsat"
    pathlib.Path(a.results_file).write_text(word)
""")
# abCROWN's `arguments` and `attack.attack_utils`, as far as abcrown_hooks.py uses them
FAKE_ARGUMENTS = "Globals = {}\n"
FAKE_ATTACK_UTILS = textwrap.dedent("""
    import pathlib, arguments
    def default_adv_saver(adv_input, adv_output, res_path):
        pathlib.Path(res_path).write_text(arguments.Globals["cex_text"])
""")

# A stand-in for NeuralSAT's main.py: its real result format; leaves a byproduct in its cwd and cache.
FAKE_NEURALSAT = textwrap.dedent("""
    import argparse, os, pathlib, signal, sys, time
    p = argparse.ArgumentParser()
    for flag in ("--net", "--spec", "--timeout", "--device", "--result_file", "--verbosity"):
        p.add_argument(flag)
    p.add_argument("--export_cex", action="store_true")
    p.add_argument("--export_runtime", action="store_true")
    a = p.parse_args()
    assert a.export_cex and a.export_runtime
    pathlib.Path("byproduct.txt").write_text("x")
    pathlib.Path(os.environ["XDG_CACHE_HOME"]).mkdir(parents=True, exist_ok=True)
    with open(a.result_file + ".calls", "a") as f:
        print(time.time(), file=f)
    if "FAKE_NS_SLEEP" in os.environ:
        time.sleep(float(os.environ["FAKE_NS_SLEEP"]))
    with open(a.result_file + ".calls", "a") as f:
        print(time.time(), file=f)
    if "FAKE_NS_FAIL" in os.environ:
        sys.exit("RuntimeError: out of cheese")
    if "FAKE_NS_KILLED" in os.environ:  # as the kernel's OOM killer ends a verifier
        os.kill(os.getpid(), signal.SIGKILL)
    with open(a.result_file, "w") as f:
        if "FAKE_NS_UNSAT" in os.environ:
            sys.exit(print("unsat,0.1", file=f))
        print("sat,0.1234", file=f)
        print("((X_0 0.5)\\n (X_1 0.25)\\n (X_2 0.75)\\n (X_3 1.0)\\n (Y_0 1.0)\\n (Y_1 2.0)\\n (Y_2 3.0))", file=f)
""")


@pytest.fixture(scope="module")
def bench_template(tmp_path_factory) -> Path:
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
        (root / "vnnlib" / f"{name}.vnnlib").write_text(
            render_v1(property_from_sample(x0, label, eps, (0.0,), (1.0,), 3))
        )
        rows.append(("onnx/net.onnx", f"vnnlib/{name}.vnnlib", 20))
    write_instances_csv(root / "instances.csv", rows)
    (root / "abcrown_cpu.yaml").write_text("general: {device: cpu}\n")
    return root


@pytest.fixture
def bench(tmp_path, bench_template) -> Path:
    """A fresh copy per test: results of one test must not be reused by the next."""
    return Path(shutil.copytree(bench_template, tmp_path / "bench"))


@pytest.fixture(params=["forked", "fresh"])
def abcrown_checkout(request, tmp_path, monkeypatch) -> Path:
    """The stand-in, single mode's instances forked from a warm server (as abCROWN runs) or fresh."""
    monkeypatch.setattr(abcrown.ABCrownRunner, "preload", ("argparse",))
    monkeypatch.setenv("ADCERT_VERIFIER_FORK", "1" if request.param == "forked" else "0")
    checkout = tmp_path / "alpha-beta-CROWN"
    (checkout / "complete_verifier").mkdir(parents=True)
    (checkout / "complete_verifier" / "abcrown.py").write_text(FAKE_ABCROWN)
    (checkout / "complete_verifier" / "arguments.py").write_text(FAKE_ARGUMENTS)
    (checkout / "complete_verifier" / "attack").mkdir()
    (checkout / "complete_verifier" / "attack" / "__init__.py").write_text("")
    (checkout / "complete_verifier" / "attack" / "attack_utils.py").write_text(FAKE_ATTACK_UTILS)
    return checkout


@pytest.fixture(params=["forked", "fresh"])
def fake_neuralsat(request, tmp_path, monkeypatch) -> Path:
    """The stand-in, each instance a fork of a warm server (as NeuralSAT runs) or a fresh process."""
    folder = tmp_path / "fake_neuralsat"
    folder.mkdir()
    (folder / "main.py").write_text(FAKE_NEURALSAT)
    monkeypatch.setattr(neuralsat, "find_neuralsat", lambda python=None: (sys.executable, folder))
    monkeypatch.setattr(neuralsat.NeuralSATRunner, "preload", ("argparse",))
    monkeypatch.setenv("ADCERT_VERIFIER_FORK", "1" if request.param == "forked" else "0")
    return folder


def _calls(bench: Path, name: str) -> int:
    path = bench / "results" / "neuralsat" / f"{name}.txt.calls"
    return len(path.read_text().split()) // 2 if path.is_file() else 0


def test_marabou_runner(bench, tmp_path, monkeypatch):
    pytest.importorskip("maraboupy")
    monkeypatch.chdir(tmp_path)
    results = run_marabou(bench, timeout=10)
    assert [(r.instance, r.result) for r in results] == [("robust", "unsat"), ("wrong_label", "sat")]
    assert results[1].counterexample.shape == (4,) and results[1].output.shape == (3,)
    assert read_result_file(bench / "results" / "marabou" / "wrong_label.txt", "marabou").result == "sat"
    assert (bench / "results" / "marabou" / "robust.log").is_file()
    checked, table = verify_benchmark(bench, "marabou", timeout=10, instances=["wrong_label"])
    assert [r.result for r in checked] == ["sat"] and table.name == "marabou.csv"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench"]  # nothing in the cwd


def test_abcrown_single_mode_runs_under_its_own_interpreter(bench, abcrown_checkout, tmp_path, monkeypatch):
    assert find_abcrown(abcrown_checkout) == abcrown_checkout / "complete_verifier"
    monkeypatch.chdir(tmp_path)
    results = run_abcrown(abcrown_checkout, bench, timeout=7, device="cpu", python=sys.executable)
    assert [r.result for r in results] == ["unsat", "sat"]
    assert all(("forked warm" in r.note) == (os.environ["ADCERT_VERIFIER_FORK"] == "1") for r in results)
    args = (bench / "results" / "abcrown" / "robust.txt.args").read_text().split()
    assert args[args.index("--timeout") + 1] == "7.0"
    assert args[args.index("--vnnlib_path") + 1] == str(bench / "vnnlib" / "robust.vnnlib")
    assert args[args.index("--cex_path") + 1] == str(bench / "results" / "abcrown" / "robust.cex.txt")


def test_abcrown_csv_mode_reads_the_pickle(bench, abcrown_checkout, monkeypatch):
    monkeypatch.setenv("ADCERT_ABCROWN", str(abcrown_checkout))
    monkeypatch.setenv("ADCERT_ABCROWN_PYTHON", sys.executable)
    results, _ = verify_benchmark(bench, "abcrown", mode="csv", timeout=5)
    assert [(r.instance, r.result) for r in results] == [("robust", "unsat"), ("wrong_label", "sat")]
    # the pickle holds torch tensors (bab_ret) and is read; the sat comes with the point abCROWN saved
    # for its row, re-checked on the network (validate_counterexamples) like single mode's
    assert "csv mode" in results[1].note and results[1].counterexample.shape == (4,)
    assert "confirmed alone" not in results[1].note
    assert read_result_file(bench / "results" / "abcrown" / "wrong_label.txt", "abcrown").result == "sat"
    (csv,) = (bench / "results" / "abcrown").glob("csv-*.csv")
    csv_rows = csv.read_text().splitlines()
    assert csv_rows[0] == f"{bench / 'onnx' / 'net.onnx'},{bench / 'vnnlib' / 'robust.vnnlib'},5"
    # abCROWN is told the timeout adcert records (the YAML's bab.timeout would win otherwise)
    args = csv.with_suffix(".pkl.args").read_text().split()
    assert args[args.index("--override_timeout") + 1] == "5"
    meta = json.loads((bench / "results" / "abcrown" / "robust.json").read_text())
    assert meta["timeout"] == 5 and meta["mode"] == "csv"
    again, _ = verify_benchmark(bench, "abcrown", mode="csv", timeout=5)
    assert all("reused" in r.note for r in again)
    single, _ = verify_benchmark(bench, "abcrown", mode="single", timeout=5, instances=["robust"])
    assert not any("reused" in r.note for r in single)
    forced, _ = verify_benchmark(bench, "abcrown", mode="csv", timeout=5, force=True)
    assert [r.result for r in forced] == ["unsat", "sat"]
    # each call has files of its own: two calls into one folder never read each other's pickle or points
    assert len(list((bench / "results" / "abcrown").glob("csv-*.csv"))) == 2


def test_abcrown_csv_sat_without_a_counterexample_is_confirmed_alone(bench, abcrown_checkout, monkeypatch):
    monkeypatch.setenv("FAKE_ABCROWN_NO_CEX", "1")
    results, _ = verify_benchmark(
        bench, "abcrown", mode="csv", timeout=5, abcrown_path=abcrown_checkout, abcrown_python=sys.executable
    )
    sat = results[1]
    assert sat.result == "sat" and "confirmed alone" in sat.note and sat.counterexample.shape == (4,)
    assert (bench / "results" / "abcrown" / "wrong_label.txt.args").is_file()  # the single-mode run


def test_abcrown_csv_timeouts_go_one_process_per_timeout(bench, abcrown_checkout, monkeypatch):
    write_instances_csv(
        bench / "instances.csv",
        [("onnx/net.onnx", "vnnlib/robust.vnnlib", 3), ("onnx/net.onnx", "vnnlib/wrong_label.vnnlib", 4)],
    )
    results, _ = verify_benchmark(
        bench, "abcrown", mode="csv", abcrown_path=abcrown_checkout, abcrown_python=sys.executable
    )
    assert [r.result for r in results] == ["unsat", "sat"]
    folder = bench / "results" / "abcrown"
    given = sorted(
        a.split()[a.split().index("--override_timeout") + 1]
        for a in (p.read_text() for p in folder.glob("csv-*.pkl.args"))
    )
    assert given == ["3", "4"]


def test_abcrown_needs_its_interpreter(bench, abcrown_checkout, monkeypatch, tmp_path):
    monkeypatch.delenv("ADCERT_ABCROWN_PYTHON", raising=False)
    monkeypatch.setattr(abcrown, "DEFAULT_PYTHON", tmp_path / "no-venv" / "bin" / "python")
    with pytest.raises(VerifierError, match="--abcrown-python.*ADCERT_ABCROWN_PYTHON"):
        run_abcrown(abcrown_checkout, bench)
    with pytest.raises(VerifierError, match="does not exist"):
        find_abcrown_python("/nonexistent/python")


def test_runner_kills_at_wall_limit(tmp_path, bench, abcrown_checkout, monkeypatch):
    (bench / "vnnlib" / "sleep.vnnlib").write_text((bench / "vnnlib" / "robust.vnnlib").read_text())
    write_instances_csv(bench / "instances.csv", [("onnx/net.onnx", "vnnlib/sleep.vnnlib", 1)])
    monkeypatch.setitem(common.STARTUP_GRACE, "abcrown", 0.5)
    (result,) = run_abcrown(abcrown_checkout, bench, device="cpu", python=sys.executable)
    assert result.result == "timeout" and result.seconds < 10
    assert read_result_file(bench / "results" / "abcrown" / "sleep.txt", "abcrown").result == "timeout"


def test_neuralsat_runner_and_its_byproducts(bench, fake_neuralsat, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = run_neuralsat(bench, timeout=5, instances=["robust"])
    assert len(results) == 1 and results[0].result == "sat"
    # wall time (start-up included) like every verifier; its own 0.1234 s is kept in the note
    assert 0 < results[0].seconds < 5 and results[0].seconds != 0.1234 and "reports 0.12 s" in results[0].note
    forked = os.environ["ADCERT_VERIFIER_FORK"] == "1"
    assert ("forked warm" in results[0].note) == forked
    assert results[0].counterexample.tolist() == [0.5, 0.25, 0.75, 1.0]
    folder = bench / "results" / "neuralsat"
    assert (folder / "byproduct.txt").is_file() and (folder / "cache").is_dir()
    assert not (tmp_path / "byproduct.txt").exists()


def test_resume_reuses_answers_for_the_same_network_verifier_and_timeout(bench, fake_neuralsat):
    run_neuralsat(bench, timeout=5)
    meta = json.loads((bench / "results" / "neuralsat" / "robust.json").read_text())
    assert meta["verifier"] == "neuralsat" and meta["timeout"] == 5 and len(meta["onnx_sha256"]) == 64
    again = run_neuralsat(bench, timeout=5)
    assert all("reused" in r.note for r in again) and _calls(bench, "robust") == 1
    assert again[0].counterexample.tolist() == [0.5, 0.25, 0.75, 1.0]
    run_neuralsat(bench, timeout=6)  # another timeout: another question
    assert _calls(bench, "robust") == 2
    run_neuralsat(bench, timeout=6, force=True)
    assert _calls(bench, "robust") == 3
    onnx = bench / "onnx" / "net.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\n")  # another network (same name)
    run_neuralsat(bench, timeout=6)
    assert _calls(bench, "robust") == 4


def test_jobs_run_instances_at_once(bench, fake_neuralsat, monkeypatch):
    monkeypatch.setenv("FAKE_NS_SLEEP", "1.5")
    run_neuralsat(bench, timeout=5, jobs=2)
    spans = [
        [float(t) for t in (bench / "results" / "neuralsat" / f"{n}.txt.calls").read_text().split()]
        for n in ("robust", "wrong_label")
    ]
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1], f"not overlapping: {spans}"
    with pytest.raises(VerifierError, match="jobs"):
        run_neuralsat(bench, jobs=0)


def test_a_verifier_killed_before_its_limit_is_an_error_that_names_the_signal(bench, fake_neuralsat, monkeypatch):
    monkeypatch.setenv("FAKE_NS_KILLED", "1")
    results = run_neuralsat(bench, timeout=30)
    assert [r.result for r in results] == ["error", "error"]  # never a timeout: it did not run out of time
    assert all(r.note.startswith("killed by SIGKILL (out of memory?") for r in results), results[0].note
    assert common.exit_reason(3) == "exit status 3" and common.exit_reason(-15) == "killed by SIGTERM"


def test_an_errored_instance_exits_4_with_its_reason(bench, fake_neuralsat, monkeypatch):
    monkeypatch.setenv("FAKE_NS_FAIL", "1")
    assert InstanceError.exit_code not in (0, 1, 3)
    done = CliRunner().invoke(verify_cmd, [str(bench), "--timeout", "5"])
    assert done.exit_code == InstanceError.exit_code, done.output
    assert "error robust: exit status 1" in done.output and "out of cheese" in done.output
    assert "failed on every instance" in done.output and "Traceback" not in done.output
    monkeypatch.delenv("FAKE_NS_FAIL")  # errors are not reused: the next run tries again
    monkeypatch.setenv("FAKE_NS_UNSAT", "1")
    # robust only: an unsat on wrong_label (a known counterexample) is a contradiction (exit 3) since e13
    done = CliRunner().invoke(verify_cmd, [str(bench), "--timeout", "5", "--instance", "robust"])
    assert done.exit_code == 0 and "unsat 1" in done.output, done.output
    monkeypatch.delenv("FAKE_NS_UNSAT")  # a sat whose counterexample fails the check is an error too
    done = CliRunner().invoke(verify_cmd, [str(bench), "--timeout", "5", "--force", "--instance", "robust"])
    assert done.exit_code == InstanceError.exit_code and "rejected sat" in done.output, done.output


def test_neuralsat_lookup_order(tmp_path, monkeypatch):
    """--python, then ADCERT_NEURALSAT_PYTHON, then .venv-neuralsat, then this interpreter."""
    src = tmp_path / "site" / "src"
    (src / "verifier").mkdir(parents=True)
    for name in ("__init__.py", "main.py", "verifier/verifier.py"):
        (src / name).write_text("")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    assert neuralsat.find_neuralsat(python=sys.executable) == (sys.executable, src)
    monkeypatch.setenv("ADCERT_NEURALSAT_PYTHON", sys.executable)
    assert neuralsat.find_neuralsat() == (sys.executable, src)
    monkeypatch.setenv("ADCERT_NEURALSAT_PYTHON", str(tmp_path / "nope" / "python"))
    with pytest.raises(VerifierError, match="ADCERT_NEURALSAT_PYTHON.*make neuralsat"):
        neuralsat.find_neuralsat()
    monkeypatch.delenv("ADCERT_NEURALSAT_PYTHON")
    monkeypatch.delenv("PYTHONPATH")
    with pytest.raises(VerifierError, match="--python"):
        neuralsat.find_neuralsat(python=sys.executable)
    monkeypatch.setattr(neuralsat, "PROJECT_VENV_PYTHON", tmp_path / "no-venv" / "bin" / "python")
    with pytest.raises(VerifierError, match="make neuralsat.*ADCERT_NEURALSAT_PYTHON"):
        neuralsat.find_neuralsat()


def test_missing_verifiers_raise(tmp_path, bench, monkeypatch):
    monkeypatch.delenv("ADCERT_ABCROWN", raising=False)
    monkeypatch.setattr(abcrown, "DEFAULT_CHECKOUT", tmp_path / "no-venv" / "src" / "alpha-beta-CROWN")
    with pytest.raises(VerifierError, match="alpha-beta-CROWN"):
        run_abcrown(tmp_path / "nothing", bench, python=sys.executable)
    with pytest.raises(VerifierError, match="make abcrown.*ADCERT_ABCROWN"):
        run_abcrown(None, bench, python=sys.executable)
    with pytest.raises(VerifierError, match="unknown instances"):
        common.plan(bench, "neuralsat", None, ["nope"])
    with pytest.raises(VerifierError, match="unknown verifier"):
        verify_benchmark(bench, "eran")


def test_a_run_that_fell_back_to_a_fresh_process_is_not_called_forked(bench, fake_neuralsat, monkeypatch):
    monkeypatch.setenv("ADCERT_VERIFIER_FORK", "1")
    monkeypatch.setattr(neuralsat.NeuralSATRunner, "preload", ("no_such_module_here",))
    (result,) = run_neuralsat(bench, timeout=5, instances=["robust"])
    assert result.result == "sat" and "forked warm" not in result.note


def _sleepers(bench: Path, n: int, timeout: float) -> None:
    for k in range(n):
        (bench / "vnnlib" / f"sleep{k}.vnnlib").write_text((bench / "vnnlib" / "robust.vnnlib").read_text())
    write_instances_csv(
        bench / "instances.csv", [("onnx/net.onnx", f"vnnlib/sleep{k}.vnnlib", timeout) for k in range(n)]
    )


def test_a_forked_run_is_killed_soon_after_its_timeout(bench, abcrown_checkout):
    if os.environ["ADCERT_VERIFIER_FORK"] != "1":
        pytest.skip("a fresh process gets its imports' grace on top (STARTUP_GRACE)")
    _sleepers(bench, 1, 1)
    (result,) = run_abcrown(abcrown_checkout, bench, device="cpu", python=sys.executable)
    assert result.result == "timeout" and "forked warm" in result.note
    assert result.seconds < 1 + common.FORKED_GRACE + 2  # not the 90 s a fresh abCROWN gets


def test_verify_prints_progress_as_it_goes(bench, abcrown_checkout):
    out = CliRunner().invoke(
        verify_cmd,
        [
            str(bench),
            "--verifier",
            "abcrown",
            "--abcrown",
            str(abcrown_checkout),
            "--abcrown-python",
            sys.executable,
            "--timeout",
            "5",
        ],
    )
    assert out.exit_code == 0, out.output
    lines = [line for line in out.output.splitlines() if line.startswith("[")]
    assert len(lines) == 2 and lines[0].startswith("[1/2] abcrown ") and lines[1].startswith("[2/2] abcrown ")
    assert {" ".join(line.split()[2:4]) for line in lines} == {"robust: unsat", "wrong_label: sat"}


def test_ctrl_c_on_verify_jobs_2_stops_at_once_and_starts_nothing_new(bench, abcrown_checkout):
    import signal
    import subprocess

    _sleepers(bench, 4, 20)
    folder = bench / "results" / "abcrown"
    command = [
        str(Path(sys.executable).with_name("adcert-verify")),
        str(bench),
        "--verifier",
        "abcrown",
        "--abcrown",
        str(abcrown_checkout),
        "--abcrown-python",
        sys.executable,
        "--jobs",
        "2",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while len(list(folder.glob("*.txt.args"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(list(folder.glob("*.txt.args"))) == 2, "the first two instances did not start"
    proc.send_signal(signal.SIGINT)
    start = time.monotonic()
    output, _ = proc.communicate(timeout=60)
    assert time.monotonic() - start < 10, output
    assert proc.returncode == 130, output
    assert "answers already given are kept" in output and "Traceback" not in output
    time.sleep(1.5)
    assert len(list(folder.glob("*.txt.args"))) == 2  # no instance started after the signal
    running = [p for p in Path("/proc").glob("[0-9]*") if _cmdline(p).count(str(bench / "vnnlib"))]
    assert running == []  # and none of the two is left running


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _eval_folder(tmp_path: Path, bench: Path, answers: dict[int, str]) -> Path:
    """An adcert-eval --complete neuralsat report around ``bench``: robust is sample 0, wrong_label sample 1."""
    folder = tmp_path / "eval"
    shutil.copytree(bench, folder / "complete" / "neuralsat")
    (folder / "config.json").write_text(json.dumps({"complete": {"verifier": "neuralsat", "timeout": 5.0}}))
    instances = [
        {"instance": "robust", "index": 0, "vnnlib": "vnnlib/robust.vnnlib"},
        {"instance": "wrong_label", "index": 1, "vnnlib": "vnnlib/wrong_label.vnnlib"},
    ]
    (folder / "complete" / "neuralsat" / "metadata.json").write_text(json.dumps({"instances": instances}))
    lines = [json.dumps({"verifier": "neuralsat", "index": i, "result": r}) for i, r in answers.items()]
    (folder / "complete.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_a_second_opinion_compares_answers_and_names_every_disagreement(bench, abcrown_checkout, tmp_path):
    from vnncomp.verifiers.second_opinion import second_opinion

    options = dict(abcrown_path=abcrown_checkout, abcrown_python=sys.executable, mode="csv")
    folder = _eval_folder(tmp_path, bench, {0: "unsat", 1: "unsat"})  # sample 1 is wrong: it has a counterexample
    opinion = second_opinion(folder, "abcrown", sample=5, timeout=5, **options)
    assert [(p["index"], p["of_record"], p["second"]) for p in opinion.pairs] == [
        (0, "unsat", "unsat"),
        (1, "unsat", "sat"),
    ]
    record = opinion.record()
    assert record["both_decided"] == 2 and record["agree"] == 1 and record["disagreements"] == [opinion.pairs[1]]
    timeout = _eval_folder(tmp_path / "t", bench, {0: "timeout", 1: "sat"})
    record = second_opinion(timeout, "abcrown", sample=1, timeout=5, seed=3, **options).record()
    assert len(record["pairs"]) == 1 and record["disagreements"] == []
    with pytest.raises(Exception, match="another verifier"):
        second_opinion(folder, "neuralsat", sample=1, timeout=5)
    shutil.rmtree(folder / "complete")  # the bounds decided every sample: nothing went to the verifier
    (folder / "complete.jsonl").write_text("")
    assert second_opinion(folder, "abcrown", sample=5, timeout=5, **options).pairs == []

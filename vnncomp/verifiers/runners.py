"""Run complete verifiers on a benchmark, one subprocess per instance with a wall limit.

Each run writes ``<bench>/results/<verifier>/<instance>.txt`` in the VNN-COMP format (one
word, then the counterexample for ``sat``) and ``<instance>.log`` with the verifier's
output. A process that outlives its limit is killed and recorded as ``timeout``.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

from adcert_plugin.errors import VerifierError

from ..export.abcrown import single_instance_args
from ..export.instances import Instance, read_instances
from ..results import VerifierResult, read_result_file, write_result_file

logger = logging.getLogger(__name__)

STARTUP_GRACE = {"marabou": 15.0, "abcrown": 90.0, "neuralsat": 60.0}
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _select(bench_dir: Path, names: Sequence[str] | None) -> list[Instance]:
    instances = read_instances(bench_dir)
    if names is not None:
        unknown = set(names) - {i.name for i in instances}
        if unknown:
            raise VerifierError(f"unknown instances {sorted(unknown)}; see {bench_dir / 'instances.csv'}")
        instances = [i for i in instances if i.name in set(names)]
    return instances


def _run_one(command: list[str], instance: Instance, verifier: str, results_dir: Path, limit: float,
             cwd: Path | None = None, env: dict | None = None) -> VerifierResult:
    """Run ``command``, wait at most ``limit`` seconds, then read the instance's results file."""
    results_file = results_dir / f"{instance.name}.txt"
    log_file = results_dir / f"{instance.name}.log"
    results_file.unlink(missing_ok=True)
    start = time.monotonic()
    with log_file.open("w") as log:
        try:
            proc = subprocess.run(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=limit)
        except subprocess.TimeoutExpired:  # subprocess.run kills the child before raising
            seconds = time.monotonic() - start
            logger.info("%s on %s: killed after %.1f s", verifier, instance.name, seconds)
            return _record(results_file, VerifierResult(instance.name, verifier, "timeout", seconds,
                                                        note="killed at the wall limit"))
        except OSError as err:
            raise VerifierError(f"cannot start {verifier}: {err}") from err
    seconds = time.monotonic() - start
    if not results_file.is_file():
        note = f"exit status {proc.returncode}, no results file; see {log_file}"
        return _record(results_file, VerifierResult(instance.name, verifier, "error", seconds, note=note))
    try:
        result = read_result_file(results_file, verifier, instance.name, seconds)
    except VerifierError as err:
        return _record(results_file, VerifierResult(instance.name, verifier, "error", seconds, note=str(err)))
    logger.info("%s on %s: %s in %.1f s", verifier, instance.name, result.result, seconds)
    # Wall time for every verifier, start-up included, so tables compare like with like; the
    # time a verifier reports itself (NeuralSAT's excludes its imports) is kept in the note.
    if not math.isnan(result.seconds):
        own = f"{verifier} reports {result.seconds:.2f} s"
        result = replace(result, note=f"{result.note}; {own}" if result.note else own)
    return replace(result, seconds=seconds)


def _record(path: Path, result: VerifierResult) -> VerifierResult:
    write_result_file(path, result)
    return result


def _run_all(bench_dir, verifier: str, timeout: float | None, names,
             build: Callable[[Instance, Path, float], tuple[list[str], Path | None, dict | None]]
             ) -> list[VerifierResult]:
    bench_dir = Path(bench_dir).resolve()
    results_dir = bench_dir / "results" / verifier
    results_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for instance in _select(bench_dir, names):
        seconds = float(timeout) if timeout is not None else instance.timeout
        command, cwd, env = build(instance, results_dir / f"{instance.name}.txt", seconds)
        results.append(_run_one(command, instance, verifier, results_dir,
                                seconds + STARTUP_GRACE[verifier], cwd, env))
    return results


def _python_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    return env


def run_marabou(bench_dir, timeout: float | None = None, instances: Sequence[str] | None = None
                ) -> list[VerifierResult]:
    """Run Marabou (maraboupy) on every instance of a benchmark.

    Args:
        bench_dir: Benchmark folder with ``instances.csv``.
        timeout: Seconds per instance (default: the csv column).
        instances: Names of the instances to run (default: all).

    Returns:
        One :class:`VerifierResult` per instance; files under ``results/marabou/``.

    Raises:
        VerifierError: maraboupy is not installed.
    """
    if importlib.util.find_spec("maraboupy") is None:
        raise VerifierError("Marabou is not installed: pip install maraboupy")
    env = _python_env()

    def build(instance: Instance, results_file: Path, seconds: float):
        command = [sys.executable, "-m", "vnncomp.verifiers.marabou_worker", str(instance.onnx), str(instance.vnnlib),
                   str(results_file), str(seconds)]
        return command, None, env

    return _run_all(bench_dir, "marabou", timeout, instances, build)


def find_abcrown(abcrown_path) -> Path:
    """The ``complete_verifier`` folder of an alpha-beta-CROWN checkout.

    Accepts the checkout root, its ``complete_verifier`` folder, or ``abcrown.py`` itself.

    Raises:
        VerifierError: No ``complete_verifier/abcrown.py`` there.
    """
    path = Path(abcrown_path).expanduser().resolve() if abcrown_path else Path("/nonexistent")
    for candidate in (path / "complete_verifier", path, path.parent):
        if (candidate / "abcrown.py").is_file():
            return candidate
    raise VerifierError(f"no complete_verifier/abcrown.py under {abcrown_path}; install alpha-beta-CROWN: "
                        "git clone https://github.com/Verified-Intelligence/alpha-beta-CROWN and pass "
                        "--abcrown /path/to/alpha-beta-CROWN")


def run_abcrown(abcrown_path, bench_dir, timeout: float | None = None, device: str = "gpu",
                instances: Sequence[str] | None = None, python: str | None = None) -> list[VerifierResult]:
    """Run alpha-beta-CROWN per instance in VNN-COMP single_vnnlib mode.

    Args:
        abcrown_path: alpha-beta-CROWN checkout (see :func:`find_abcrown`).
        bench_dir: Benchmark folder (holds ``abcrown_<device>.yaml``).
        timeout: Seconds per instance (default: the csv column).
        device: ``gpu`` or ``cpu`` (picks the YAML).
        instances: Names to run (default: all).
        python: Interpreter of abCROWN's environment (default: this one).

    Raises:
        VerifierError: No abCROWN at ``abcrown_path`` or no config for ``device``.
    """
    workdir = find_abcrown(abcrown_path)
    config = Path(bench_dir).resolve() / f"abcrown_{device}.yaml"
    if not config.is_file():
        raise VerifierError(f"{config} does not exist; device must be gpu or cpu")

    def build(instance: Instance, results_file: Path, seconds: float):
        args = single_instance_args(config, instance.onnx, instance.vnnlib, results_file, seconds)
        return [python or sys.executable, "abcrown.py", *args], workdir, None

    return _run_all(bench_dir, "abcrown", timeout, instances, build)


_FIND_SRC = ("import importlib.util as u, sys; s = u.find_spec('src'); "
             "sys.stdout.write(s.origin if s and s.origin else '')")


def find_neuralsat(python: str | Path | None = None) -> Path:
    """Folder of NeuralSAT's ``main.py`` (pip package ``neuralsat``, import name ``src``).

    Args:
        python: the interpreter of the environment NeuralSAT is installed in (default: this one).
            NeuralSAT wants its own dependencies, so a separate venv is the usual set-up.

    Raises:
        VerifierError: Not installed there (or ``src`` is some other package).
    """
    if python is None:
        spec = importlib.util.find_spec("src")
        origin = spec.origin if spec is not None and spec.origin else ""
    else:
        try:
            origin = subprocess.run([str(python), "-c", _FIND_SRC], capture_output=True, text=True,
                                    timeout=120, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError) as err:
            raise VerifierError(f"cannot run {python} to find NeuralSAT: {err}") from err
    folder = Path(origin).parent if origin else None
    if folder is None or not (folder / "main.py").is_file() or not (folder / "verifier" / "verifier.py").is_file():
        where = f" for {python}" if python else ""
        raise VerifierError(f"NeuralSAT is not installed{where}: pip install --no-deps neuralsat "
                            "(it installs as the import package 'src'), plus its runtime deps; "
                            "or pass --python PATH of the venv that has it")
    return folder


def run_neuralsat(bench_dir, timeout: float | None = None, device: str = "cpu",
                  instances: Sequence[str] | None = None, python: str | Path | None = None
                  ) -> list[VerifierResult]:
    """Run NeuralSAT's ``main.py`` per instance as its own program.

    Its results file has ``<status>,<seconds>`` on line 1 (``--export_runtime``) and the
    counterexample block after it (``--export_cex``).

    Args:
        python: interpreter of the environment NeuralSAT is installed in (default: this one).

    Raises:
        VerifierError: NeuralSAT is not installed.
    """
    folder = find_neuralsat(python)
    interpreter = str(python) if python is not None else sys.executable

    def build(instance: Instance, results_file: Path, seconds: float):
        command = [interpreter, str(folder / "main.py"), "--net", str(instance.onnx), "--spec",
                   str(instance.vnnlib), "--timeout", str(seconds), "--device", device, "--result_file",
                   str(results_file), "--export_cex", "--export_runtime", "--verbosity", "0"]
        return command, folder, None

    return _run_all(bench_dir, "neuralsat", timeout, instances, build)


RUNNERS = {"marabou": run_marabou, "abcrown": run_abcrown, "neuralsat": run_neuralsat}


def verify_benchmark(bench_dir, verifier: str, timeout: float | None = None, abcrown_path=None,
                     device: str = "cpu", instances: Sequence[str] | None = None,
                     table: str | Path | None = None, python: str | Path | None = None
                     ) -> tuple[list[VerifierResult], Path]:
    """Run one verifier on a benchmark, check its counterexamples, write the results table.

    A ``sat`` whose counterexample fails :func:`check_counterexample` becomes ``error``; every
    answer is then checked against the benchmark's evidence (:func:`check_answers`): an
    ``unsat`` with a counterexample in hand becomes ``error``, and the table is written before
    any contradiction raises.

    Args:
        bench_dir: Benchmark folder.
        verifier: ``marabou``, ``abcrown`` or ``neuralsat``.
        timeout: Seconds per instance (default: the csv column).
        abcrown_path: alpha-beta-CROWN checkout (abcrown only).
        device: ``cpu``/``gpu`` for abcrown, ``cpu``/``cuda`` for neuralsat.
        instances: Names to run (default: all).
        table: CSV table path (default: ``<bench>/results/<verifier>.csv``).
        python: interpreter of the verifier's own environment (neuralsat only).

    Returns:
        (results, table path).

    Raises:
        VerifierError: Unknown or missing verifier.
        SoundnessError: An answer contradicts the evidence (exit 3); the table is written first.
    """
    from ..results import check_answers, validate_counterexamples, write_results_table

    bench_dir = Path(bench_dir).resolve()
    if verifier == "marabou":
        results = run_marabou(bench_dir, timeout, instances)
    elif verifier == "abcrown":
        results = run_abcrown(abcrown_path, bench_dir, timeout, "gpu" if device in ("gpu", "cuda") else "cpu",
                              instances)
    elif verifier == "neuralsat":
        results = run_neuralsat(bench_dir, timeout, "cuda" if device in ("gpu", "cuda") else "cpu", instances,
                                python)
    else:
        raise VerifierError(f"unknown verifier {verifier!r}; choose one of {sorted(RUNNERS)}")
    by_name = {i.name: i for i in read_instances(bench_dir)}
    results = validate_counterexamples(results, by_name)
    checked = check_answers(bench_dir, results)  # every answer against the benchmark's evidence (e13)
    path = write_results_table(table or bench_dir / "results" / f"{verifier}.csv", checked.results, checked.identity)
    checked.raise_if_contradicted(str(path))
    return checked.results, path

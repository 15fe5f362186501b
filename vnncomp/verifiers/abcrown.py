"""alpha-beta-CROWN, run from its GitHub checkout under the interpreter of its own environment.

abCROWN is not on the registry and wants upstream auto_LiRPA, so it never runs under adcert's
interpreter: the checkout comes from ``--abcrown`` / ``ADCERT_ABCROWN`` and the interpreter
from ``--abcrown-python`` / ``ADCERT_ABCROWN_PYTHON``, by default from ``.venv-abcrown``
(``make abcrown``). Two modes:

* ``single``: one ``abcrown.py`` process per instance (VNN-COMP single_vnnlib mode), results
  file with ``sat`` + counterexample, ``unsat`` or ``timeout``; each a fork of one process that
  imported abCROWN already (``warm.py``), so its start-up is paid once;
* ``csv``: one process over a csv of the instances to run (start-up paid once), with the timeout
  adcert records (``--override_timeout``: the YAML's ``bab.timeout`` does not apply); its answers
  are read from abCROWN's results pickle (torch tensors in it are never built), and each ``sat``
  gets the counterexample abCROWN saved for its row (``abcrown_hooks.py``), or is confirmed by a
  single-mode run of that instance when there is none.

Every process runs with its cwd in ``results/abcrown/``, and the counterexample file
(``attack.cex_path``, default ``./test_cex.txt``) is put there too. abCROWN also caches each
parsed property as ``<vnnlib>.compiled`` beside the vnnlib file; that one cannot be moved.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from adcert_plugin.errors import VerifierError

from ..export.abcrown import single_instance_args
from ..export.instances import Instance
from ..results import VerifierResult, read_abcrown_pickle, write_result_file
from ..results.readers import parse_result_text
from .common import (
    PROJECT_ROOT,
    STARTUP_GRACE,
    Command,
    RunPlan,
    announce,
    in_parallel,
    log_tail,
    plan,
    python_env,
    record,
    reused,
    run_benchmark,
    run_process,
    share_cores,
)

ENV_CHECKOUT = "ADCERT_ABCROWN"
ENV_PYTHON = "ADCERT_ABCROWN_PYTHON"
MODES = ("single", "csv")
DEVICES = ("cpu", "gpu")
logger = logging.getLogger(__name__)
_CALLS = itertools.count()  # csv calls in this process (their files' names)
HOOKS = Path(__file__).with_name("abcrown_hooks.py")  # runs inside abCROWN: csv mode's counterexamples
DEFAULT_VENV = PROJECT_ROOT / ".venv-abcrown"  # what `make abcrown` builds
DEFAULT_CHECKOUT = DEFAULT_VENV / "src" / "alpha-beta-CROWN"
DEFAULT_PYTHON = DEFAULT_VENV / "bin" / "python"
_CSV_OVERHEAD = 10.0  # seconds per instance for loading the model and the property in csv mode


def find_abcrown(abcrown_path=None) -> Path:
    """The ``complete_verifier`` folder of an alpha-beta-CROWN checkout.

    In this order: ``abcrown_path``, ``$ADCERT_ABCROWN``, the checkout ``make abcrown`` made
    (``.venv-abcrown/src/alpha-beta-CROWN``). Accepts the checkout root, its ``complete_verifier``
    folder, or ``abcrown.py`` itself.

    Raises:
        VerifierError: No ``complete_verifier/abcrown.py`` there.
    """
    named = abcrown_path or os.environ.get(ENV_CHECKOUT)
    path = Path(named).expanduser().resolve() if named else DEFAULT_CHECKOUT
    for candidate in (path / "complete_verifier", path, path.parent):
        if (candidate / "abcrown.py").is_file():
            return candidate
    where = f"no complete_verifier/abcrown.py under {named}" if named else "alpha-beta-CROWN is not installed"
    raise VerifierError(
        f"{where}; run `make abcrown` (it builds {DEFAULT_VENV.name} in the checkout), or pass "
        f"--abcrown /path/to/alpha-beta-CROWN (or set {ENV_CHECKOUT})"
    )


def find_abcrown_python(python=None) -> str:
    """The interpreter of abCROWN's own environment.

    In this order: ``python``, ``$ADCERT_ABCROWN_PYTHON``, ``.venv-abcrown/bin/python`` (``make abcrown``).

    Raises:
        VerifierError: None found, or the one named does not exist.
    """
    named = python or os.environ.get(ENV_PYTHON)
    if not named:
        if DEFAULT_PYTHON.exists():
            return str(DEFAULT_PYTHON)
        raise VerifierError(
            f"alpha-beta-CROWN needs the interpreter of its own environment: run `make abcrown`, "
            f"or pass --abcrown-python /path/to/its/venv/bin/python (or set {ENV_PYTHON})"
        )
    if not Path(named).expanduser().exists():
        raise VerifierError(f"abCROWN interpreter {named} does not exist; pass --abcrown-python (or set {ENV_PYTHON})")
    return str(Path(named).expanduser())


def _env(results_dir: Path) -> dict:
    env = python_env(cache_dir=results_dir / "cache")
    env.pop("PYTHONPATH", None)  # adcert's path must not shadow abCROWN's own auto_LiRPA
    return env


def abcrown_config(bench_dir: Path, device: str) -> Path:
    """The benchmark's ``abcrown_<device>.yaml``."""
    path = Path(bench_dir) / f"abcrown_{device}.yaml"
    if not path.is_file():
        raise VerifierError(
            f"{path} does not exist; re-export the benchmark (adcert-export writes "
            "abcrown_cpu.yaml and abcrown_gpu.yaml)"
        )
    return path


@dataclass(frozen=True)
class ABCrownRunner:
    """abCROWN's ``abcrown.py``: its folder, its interpreter, the benchmark's YAML for the device."""

    workdir: Path
    python: str
    config: Path
    name: str = "abcrown"
    # single mode: what abcrown.py imports is imported once, each instance a fork of that (warm.py)
    preload: ClassVar[tuple[str, ...]] = ("torch", "abcrown")

    def command(self, instance: Instance, results_file: Path, seconds: float) -> Command:
        args = single_instance_args(self.config, instance.onnx, instance.vnnlib, results_file, seconds)
        cex = results_file.with_name(f"{instance.name}.cex.txt")
        return Command(
            [self.python, str(self.workdir / "abcrown.py"), *args, "--cex_path", str(cex)], _env(results_file.parent)
        )

    def csv_command(self, csv_path: Path, pickle_path: Path, seconds: float) -> Command:
        """One process over ``csv_path``, every instance with ``seconds`` (the YAML's ``bab.timeout``
        overridden) and each counterexample kept as ``<csv>.cex.txt.<row>`` (abcrown_hooks.py)."""
        cex = csv_path.with_suffix(".cex.txt")
        saver = f'Customized("{HOOKS}", "save_numbered")'
        return Command(
            [
                self.python,
                str(self.workdir / "abcrown.py"),
                "--config",
                str(self.config),
                "--csv_name",
                str(csv_path),
                "--results_file",
                str(pickle_path),
                "--cex_path",
                str(cex),
                "--override_timeout",
                f"{seconds:g}",
                "--save_adv_example",
                "--adv_saver",
                saver,
            ],
            _env(csv_path.parent),
        )


def _csv_answer(row: VerifierResult, instance: Instance, cex_file: Path) -> VerifierResult:
    """A pickle row as an answer; a ``sat`` with the counterexample abCROWN saved for that row."""
    note = f"{row.note}; csv mode"
    if row.result != "sat":
        return VerifierResult(instance.name, row.verifier, row.result, row.seconds, note=note)
    try:
        found = parse_result_text("sat\n" + cex_file.read_text(), instance.name, row.verifier, row.seconds)
    except (OSError, VerifierError):
        return VerifierResult(instance.name, row.verifier, "sat", row.seconds, note=f"{note} (no counterexample)")
    return replace(found, note=note)


def _run_csv_chunk(runner: ABCrownRunner, run: RunPlan, chunk: list[Instance], tag: str) -> list[VerifierResult]:
    """One abCROWN process over ``chunk`` (one timeout); answers from its pickle, one results file per instance."""
    csv_path = run.results_dir / f"csv-{tag}.csv"
    pickle_path = run.results_dir / f"csv-{tag}.pkl"
    log_file = run.results_dir / f"csv-{tag}.log"
    cex = csv_path.with_suffix(".cex.txt")
    for old in (pickle_path, *run.results_dir.glob(f"{cex.name}.*")):
        old.unlink(missing_ok=True)
    seconds = run.seconds[chunk[0].name]
    # absolute paths: abCROWN joins them with root_path, which leaves an absolute path as it is
    csv_path.write_text("".join(f"{i.onnx},{i.vnnlib},{seconds:g}\n" for i in chunk))
    limit = len(chunk) * (seconds + _CSV_OVERHEAD) + STARTUP_GRACE[runner.name]
    command = share_cores(runner.csv_command(csv_path, pickle_path, seconds), run.jobs)
    status, _wall = run_process(command, log_file, limit, runner.name, run.results_dir)
    names = [i.name for i in chunk]
    answered = read_abcrown_pickle(pickle_path, names) if pickle_path.is_file() else []
    if status is None:
        missing = VerifierResult(
            "", runner.name, "timeout", float("nan"), note=f"abCROWN csv run killed at its wall limit ({limit:g} s)"
        )
    else:
        tail = log_tail(log_file)
        missing = VerifierResult(
            "",
            runner.name,
            "error",
            float("nan"),
            note=f"abCROWN csv run exited {status} before this instance{': ' + tail if tail else ''} (log {log_file})",
        )
    results = []
    for k, instance in enumerate(chunk):
        if k < len(answered):
            result = _csv_answer(answered[k], instance, cex.with_name(f"{cex.name}.{k}"))
        else:
            result = VerifierResult(instance.name, runner.name, missing.result, missing.seconds, note=missing.note)
        write_result_file(run.results_dir / f"{instance.name}.txt", result)
        record(run, instance, result)
        results.append(result)
    results = _confirm_sat(runner, run, results, chunk)
    for result in results:
        announce(run, result)
    return results


def _confirm_sat(
    runner: ABCrownRunner, run: RunPlan, results: list[VerifierResult], chunk: list[Instance]
) -> list[VerifierResult]:
    """A ``sat`` that came without its counterexample is run again alone (single mode), which writes one."""
    again = [i for i, r in zip(chunk, results) if r.result == "sat" and r.counterexample is None]
    if not again:
        return results
    logger.info("abCROWN csv: %d sat answers without a counterexample; confirming each alone", len(again))
    alone = replace(run, instances=again, force=True, jobs=1, progress=None)
    confirmed = {r.instance: r for r in run_benchmark(runner, alone)}
    out = []
    for r in results:
        c = confirmed.get(r.instance)
        if c is not None and c.result != "sat":  # the single run disagrees: the csv's sat has no proof
            c = replace(
                c,
                result="error" if c.result == "unsat" else c.result,
                note=f"csv mode said sat, single mode {c.result}; {c.note}",
            )
            write_result_file(run.results_dir / f"{r.instance}.txt", c)
        out.append(replace(c, note=f"{c.note}; confirmed alone") if c is not None else r)
    return out


def run_csv(runner: ABCrownRunner, run: RunPlan) -> list[VerifierResult]:
    """csv mode: the instances without a reusable answer, in ``run.jobs`` abCROWN processes per timeout."""
    earlier = {i.name: reused(run, i, runner.name) for i in run.instances}
    pending = [i for i in run.instances if earlier[i.name] is None]
    for result in earlier.values():
        if result is not None:
            announce(run, result)
    chunks = []
    for seconds in sorted({run.seconds[i.name] for i in pending}):
        same = [i for i in pending if run.seconds[i.name] == seconds]
        chunks += [same[k :: run.jobs] for k in range(min(run.jobs, len(same)))]
    # file names unique to this call: calls into the same results folder never share a pickle or cex file
    stamp = f"{os.getpid()}-{next(_CALLS)}"
    done = in_parallel(
        lambda kc: _run_csv_chunk(runner, run, kc[1], f"{stamp}-{kc[0]}"),
        list(enumerate(chunks)),
        max(1, min(run.jobs, len(chunks))),
        runner.name,
    )
    fresh = {r.instance: r for results in done for r in results}
    return [earlier[i.name] or fresh[i.name] for i in run.instances]


def run_abcrown(
    abcrown_path=None,
    bench_dir=None,
    timeout: float | None = None,
    device: str = "cpu",
    instances: Sequence[str] | None = None,
    python: str | Path | None = None,
    mode: str = "single",
    jobs: int = 1,
    force: bool = False,
) -> list[VerifierResult]:
    """Run alpha-beta-CROWN on a benchmark under the interpreter of its own environment.

    Args:
        abcrown_path: alpha-beta-CROWN checkout (default: ``$ADCERT_ABCROWN``; see :func:`find_abcrown`).
        bench_dir: Benchmark folder (holds ``abcrown_<device>.yaml``).
        timeout: Seconds per instance (default: the csv column).
        device: ``cpu`` or ``gpu`` (picks the YAML).
        instances: Names to run (default: all).
        python: Interpreter of abCROWN's environment (default: ``$ADCERT_ABCROWN_PYTHON``).
        mode: ``single`` (one process per instance) or ``csv`` (one process over all of them).
        jobs: Processes at once (csv mode: the instances are dealt out over ``jobs`` processes).
        force: Rerun instances whose answers are already there.

    Raises:
        VerifierError: No checkout, no interpreter, no config for ``device``, or an unknown mode.
    """
    if mode not in MODES or device not in DEVICES:
        raise VerifierError(
            f"abCROWN mode must be one of {MODES} and device one of {DEVICES}; got {mode!r}, {device!r}"
        )
    if bench_dir is None:
        raise VerifierError("run_abcrown needs a benchmark folder")
    workdir, interpreter = find_abcrown(abcrown_path), find_abcrown_python(python)
    config = abcrown_config(Path(bench_dir).resolve(), device)
    run = plan(bench_dir, "abcrown", timeout, instances, jobs, force, mode)
    runner = ABCrownRunner(workdir, interpreter, config)
    return run_csv(runner, run) if mode == "csv" else run_benchmark(runner, run)

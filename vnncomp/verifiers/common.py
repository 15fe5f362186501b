"""What every verifier shares: one subprocess per instance with a wall limit, results files, resume, jobs.

A runner (marabou.py, neuralsat.py, abcrown.py) only says how to start its verifier on one
instance (:class:`Command`); :func:`run_benchmark` does the rest:

* ``<bench>/results/<verifier>/<instance>.txt``: the answer in the VNN-COMP format;
  ``<instance>.log``: the verifier's output; ``<instance>.json``: what the answer was for
  (sha256 of the ONNX file, verifier, timeout), so a later run reuses it (``force`` reruns).
* The verifier runs with its working directory in the results folder, so what it leaves behind
  (``failedMarabouQuery.ipq``, caches, ``test_cex.txt``) lands there, never in the caller's cwd.
* ``jobs`` instances run at once, each in its own process; a process that outlives its limit
  is killed and recorded as ``timeout``. A runner that names the modules its script imports
  (``preload``) has each process forked from one that imported them already (``warm.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from adcert_plugin.errors import VerifierError

from ..export.instances import Instance, read_instances
from ..results import VerifierResult, read_result_file, write_result_file
from .process import Command, Stopped, reset_stop, run_process, stop_all
from .warm import WarmPool

logger = logging.getLogger(__name__)

# Seconds a verifier started afresh may run past its timeout (its imports, model loading) before it
# is killed. A run forked from a warm server has imported everything already: it gets FORKED_GRACE
# (loading the network and the property), so --timeout T stops it at T + 5 s whatever it does.
STARTUP_GRACE = {"marabou": 15.0, "abcrown": 90.0, "neuralsat": 60.0}
FORKED_GRACE = 5.0
PROJECT_ROOT = Path(__file__).resolve().parents[2]
_META_VERSION = 1


class Runner(Protocol):
    """One verifier: its name and the command for one instance."""

    @property
    def name(self) -> str: ...

    def command(self, instance: Instance, results_file: Path, seconds: float) -> Command: ...


@dataclass(frozen=True)
class RunPlan:
    """What to run: the instances, their per-instance seconds, where results go, how many at once."""

    bench_dir: Path
    instances: list[Instance]
    seconds: dict[str, float]
    results_dir: Path
    jobs: int = 1
    force: bool = False
    hashes: dict[str, str] = field(default_factory=dict)
    mode: str = ""  # a verifier's way of running whose answers differ in kind (abCROWN csv)
    progress: Progress | None = None  # one line per answer, when a CLI asked (reporting())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def select(bench_dir: Path, names: Sequence[str] | None) -> list[Instance]:
    """The benchmark's instances, or only ``names`` (in the csv's order)."""
    instances = read_instances(bench_dir)
    if names is not None:
        unknown = set(names) - {i.name for i in instances}
        if unknown:
            raise VerifierError(f"unknown instances {sorted(unknown)}; see {bench_dir / 'instances.csv'}")
        instances = [i for i in instances if i.name in set(names)]
    return instances


def plan(
    bench_dir,
    verifier: str,
    timeout: float | None,
    names: Sequence[str] | None,
    jobs: int = 1,
    force: bool = False,
    mode: str = "",
) -> RunPlan:
    """Resolve the benchmark, the instances and their timeouts; create the results folder."""
    if jobs < 1:
        raise VerifierError(f"jobs must be at least 1, got {jobs}")
    bench_dir = Path(bench_dir).resolve()
    instances = select(bench_dir, names)
    results_dir = bench_dir / "results" / verifier
    results_dir.mkdir(parents=True, exist_ok=True)
    seconds = {i.name: float(timeout) if timeout is not None else float(i.timeout) for i in instances}
    hashes: dict[str, str] = {}
    for i in instances:
        key = str(i.onnx)
        if key not in hashes:
            hashes[key] = sha256_file(i.onnx)
    progress = Progress(len(instances), verifier, _REPORTING[-1]) if _REPORTING else None
    return RunPlan(bench_dir, instances, seconds, results_dir, jobs, force, hashes, mode, progress)


# ------------------------------------------------------------------------------ progress

_REPORTING: list = []  # streams that runs planned now report to (reporting())


class Progress:
    """``[k/N] verifier instance: answer in s`` for each answer, as it comes (threads share it)."""

    def __init__(self, total: int, verifier: str, stream):
        self.total, self.verifier, self.stream = total, verifier, stream
        self.done, self._lock = 0, threading.Lock()

    def __call__(self, result: VerifierResult) -> None:
        with self._lock:
            self.done += 1
            reused_ = " (reused)" if "reused" in (result.note or "") else ""
            self.stream.write(
                f"[{self.done}/{self.total}] {self.verifier} {result.instance}: {result.result} in "
                f"{result.seconds:.1f} s{reused_}\n"
            )
            self.stream.flush()


@contextmanager
def reporting(stream):
    """Runs planned inside print one progress line per answer to ``stream`` (adcert-verify)."""
    _REPORTING.append(stream)
    try:
        yield
    finally:
        _REPORTING.pop()


def announce(run: RunPlan, result: VerifierResult) -> VerifierResult:
    if run.progress is not None:
        run.progress(result)
    return result


# ------------------------------------------------------------------------- resume records


def _meta(run: RunPlan, instance: Instance, verifier: str) -> dict:
    return {
        "version": _META_VERSION,
        "onnx_sha256": run.hashes[str(instance.onnx)],
        "verifier": verifier,
        "timeout": run.seconds[instance.name],
        "vnnlib": str(instance.vnnlib),
        "mode": run.mode,
    }


def record(run: RunPlan, instance: Instance, result: VerifierResult) -> None:
    """Write ``<instance>.json`` beside the results file: what the answer is for, and its wall time."""
    meta = {
        **_meta(run, instance, result.verifier),
        "result": result.result,
        "seconds": result.seconds,
        "note": result.note,
    }
    path = run.results_dir / f"{instance.name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=1, default=float) + "\n")
    tmp.replace(path)


def reused(run: RunPlan, instance: Instance, verifier: str) -> VerifierResult | None:
    """The earlier answer for the same network, verifier and timeout; None to run again.

    Errors are never reused: they are usually the set-up's fault and worth another try.
    """
    if run.force:
        return None
    meta_path = run.results_dir / f"{instance.name}.json"
    results_file = run.results_dir / f"{instance.name}.txt"
    try:
        meta = json.loads(meta_path.read_text())
        result = read_result_file(results_file, verifier, instance.name)
    except (OSError, ValueError, VerifierError):
        return None
    wanted = _meta(run, instance, verifier)
    if any(meta.get(k) != v for k, v in wanted.items()) or result.result == "error":
        return None
    note = meta.get("note") or ""
    return replace(result, seconds=float(meta.get("seconds", math.nan)), note=f"{note}; reused" if note else "reused")


# ---------------------------------------------------------------------------- one process


def log_tail(log_file: Path, lines: int = 1) -> str:
    """The last non-empty line of a log, shortened: the reason a process failed, for the summary."""
    try:
        text = [line.strip() for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    tail = " | ".join(text[-lines:])
    return tail if len(tail) <= 200 else tail[:197] + "..."


def exit_reason(status: int) -> str:
    """An exit status in words; a negative one is the signal that ended the process."""
    if status >= 0:
        return f"exit status {status}"
    try:
        name = signal.Signals(-status).name
    except ValueError:
        name = f"signal {-status}"
    # Nothing in adcert sends SIGKILL before the wall limit (that one is recorded as a timeout),
    # so a verifier killed early was, in every case seen here, the kernel's OOM killer.
    hint = " (out of memory? the kernel log says; run fewer jobs at once)" if -status == signal.SIGKILL else ""
    return f"killed by {name}{hint}"


def outcome(
    instance: Instance, verifier: str, results_file: Path, log_file: Path, status: int | None, seconds: float
) -> VerifierResult:
    """The answer of one finished (or killed) process, from its results file; written back to it."""
    if status is None:
        logger.info("%s on %s: killed after %.1f s", verifier, instance.name, seconds)
        return _write(
            results_file, VerifierResult(instance.name, verifier, "timeout", seconds, note="killed at the wall limit")
        )
    if not results_file.is_file():
        tail = log_tail(log_file)
        note = f"{exit_reason(status)}, no results file{': ' + tail if tail else ''} (log {log_file})"
        return _write(results_file, VerifierResult(instance.name, verifier, "error", seconds, note=note))
    try:
        result = read_result_file(results_file, verifier, instance.name, seconds)
    except VerifierError as err:
        return _write(results_file, VerifierResult(instance.name, verifier, "error", seconds, note=str(err)))
    logger.info("%s on %s: %s in %.1f s", verifier, instance.name, result.result, seconds)
    # Wall time for every verifier, start-up included (a forked run's start-up has no imports: its
    # note says "forked warm"); the time a verifier reports itself (NeuralSAT's excludes its
    # imports) is kept in the note.
    if not math.isnan(result.seconds):
        own = f"{verifier} reports {result.seconds:.2f} s"
        result = replace(result, note=f"{result.note}; {own}" if result.note else own)
    return replace(result, seconds=seconds)


def _write(path: Path, result: VerifierResult) -> VerifierResult:
    write_result_file(path, result)
    return result


def run_one(runner: Runner, run: RunPlan, instance: Instance, warm: WarmPool | None = None) -> VerifierResult:
    """Run one instance (or reuse its earlier answer) and record what it was for.

    ``warm``: start it as a fork of that pool's server when it can (``warm.py``); else a fresh process.
    """
    earlier = reused(run, instance, runner.name)
    if earlier is not None:
        logger.info("%s on %s: reusing %s", runner.name, instance.name, earlier.result)
        return announce(run, earlier)
    results_file = run.results_dir / f"{instance.name}.txt"
    log_file = run.results_dir / f"{instance.name}.log"
    results_file.unlink(missing_ok=True)
    seconds = run.seconds[instance.name]
    command = share_cores(runner.command(instance, results_file, seconds), run.jobs)
    forked = warm is not None and warm.forked(command)
    launch = warm.run if forked and warm is not None else run_process
    grace = FORKED_GRACE if forked else STARTUP_GRACE[runner.name]
    status, wall = launch(command, log_file, seconds + grace, runner.name, run.results_dir)
    result = outcome(instance, runner.name, results_file, log_file, status, wall)
    # a pool that fell back to a fresh process during this run is off now
    if forked and warm is not None and warm.active:
        result = replace(result, note=f"{result.note}; forked warm" if result.note else "forked warm")
    record(run, instance, result)
    return announce(run, result)


def share_cores(command: Command, jobs: int) -> Command:
    """With ``jobs`` verifiers at once, each gets its share of the cores unless the caller chose.

    torch and onnxruntime otherwise start one thread per core in every process, and ``jobs``
    processes each using every core run slower together than one after the other.
    """
    env = dict(command.env if command.env is not None else os.environ)
    if jobs == 1 or "OMP_NUM_THREADS" in env:
        return command
    env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    return replace(command, env=env)


def run_benchmark(runner: Runner, run: RunPlan) -> list[VerifierResult]:
    """Every instance of ``run``, ``run.jobs`` at a time; results in the csv's order.

    A runner with ``preload`` (modules its script imports) runs its instances as forks of a
    process that imported them once (``warm.py``), one such process per job. Ctrl-C (or SIGTERM
    turned into KeyboardInterrupt) kills every verifier running and starts no other.
    """
    with WarmPool(runner, run.results_dir) as warm:
        return in_parallel(lambda i: run_one(runner, run, i, warm), run.instances, run.jobs, runner.name)


def in_parallel(fn: Callable, items: Sequence, jobs: int, name: str) -> list:
    """``fn`` over ``items``, ``jobs`` at a time (threads only wait on child processes); in order.

    On KeyboardInterrupt every running verifier is killed (process.stop_all), nothing new starts,
    and the interrupt goes on up: answers already written stay for the next run to reuse.
    """
    reset_stop()
    try:
        if jobs == 1 or len(items) <= 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix=f"{name}-job") as pool:
            futures = [pool.submit(fn, item) for item in items]
            try:
                return [f.result() for f in futures]
            except BaseException:
                stop_all()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    except (KeyboardInterrupt, Stopped):
        stop_all()
        raise KeyboardInterrupt from None


def python_env(extra_path: Sequence[str | Path] = (), cache_dir: Path | None = None) -> dict:
    """This process's environment, with ``extra_path`` first on PYTHONPATH and caches under ``cache_dir``."""
    env = dict(os.environ)
    parts = [str(p) for p in extra_path] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    if parts:
        env["PYTHONPATH"] = os.pathsep.join(parts)
    if cache_dir is not None:
        env["XDG_CACHE_HOME"] = str(cache_dir)
    return env

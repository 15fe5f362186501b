"""Marabou (maraboupy, from the registry): one worker process per instance.

Marabou 2.0.0 gives wrong ``unsat`` answers on padded CNNs such as small-cnn (Conv 4x4,
stride 2, padding 1): counterexamples that abCROWN and NeuralSAT find, and onnxruntime
confirms, come back ``unsat`` (upstream issues #825, #568). It is right on MLPs. It stays
selectable, and its answers are cross-checked like every verifier's.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

from adcert_plugin.errors import VerifierError

from ..export.instances import Instance
from ..results import VerifierResult
from .common import PROJECT_ROOT, Command, plan, python_env, run_benchmark


class MarabouRunner:
    """``python -m vnncomp.verifiers.marabou_worker ONNX VNNLIB RESULTS TIMEOUT`` per instance.

    The worker runs with its cwd in the results folder: Marabou writes
    ``failedMarabouQuery.ipq`` into the cwd when a query fails.
    """

    name = "marabou"

    def __init__(self):
        if importlib.util.find_spec("maraboupy") is None:
            raise VerifierError("Marabou is not installed: pip install maraboupy")

    def command(self, instance: Instance, results_file: Path, seconds: float) -> Command:
        env = python_env([PROJECT_ROOT], cache_dir=results_file.parent / "cache")
        return Command(
            [
                sys.executable,
                "-m",
                "vnncomp.verifiers.marabou_worker",
                str(instance.onnx),
                str(instance.vnnlib),
                str(results_file),
                str(seconds),
            ],
            env,
        )


def run_marabou(
    bench_dir, timeout: float | None = None, instances: Sequence[str] | None = None, jobs: int = 1, force: bool = False
) -> list[VerifierResult]:
    """Run Marabou (maraboupy) on every instance of a benchmark.

    Args:
        bench_dir: Benchmark folder with ``instances.csv``.
        timeout: Seconds per instance (default: the csv column).
        instances: Names of the instances to run (default: all).
        jobs: Instances run at once.
        force: Rerun instances whose answers are already there.

    Returns:
        One :class:`VerifierResult` per instance; files under ``results/marabou/``.

    Raises:
        VerifierError: maraboupy is not installed.
    """
    runner = MarabouRunner()
    return run_benchmark(runner, plan(bench_dir, runner.name, timeout, instances, jobs, force))

"""Decide one VNN-COMP instance with Marabou (maraboupy); run in its own process.

    python -m vnncomp.verifiers.marabou_worker ONNX VNNLIB RESULTS_FILE TIMEOUT_SECONDS

The property is encoded here rather than through Marabou's own property reader: the
input box becomes variable bounds, and each disjunct A·y ≤ b of the output constraint
becomes one query with those inequalities. The instance is ``sat`` as soon as one query
is sat (its point is the counterexample), ``unsat`` when every query is unsat, and
``timeout`` when the budget runs out first. The results file has the VNN-COMP format
(one word, then ``((X_0  v) ... (Y_0  v) ...)`` for sat). This module never imports torch.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

from ..export.onnx_run import onnx_input_shape, run_onnx
from ..export.vnnlib import parse_v1
from ..results import VerifierResult, write_result_file

logger = logging.getLogger(__name__)


def _read_network(onnx_path: Path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from maraboupy import Marabou

        return Marabou, Marabou.read_onnx(str(onnx_path))


def _solve_disjunct(marabou, network, spec, a: np.ndarray, b: np.ndarray, seconds: float):
    """One Marabou query: input box plus A·y ≤ b. Returns (exit word, values dict)."""
    inputs = network.inputVars[0].flatten()
    outputs = network.outputVars[0].flatten()
    network.clearProperty()
    for var, low, high in zip(inputs, spec.lower, spec.upper):
        network.setLowerBound(int(var), float(low))
        network.setUpperBound(int(var), float(high))
    for row, rhs in zip(a, b):
        used = np.flatnonzero(row)
        network.addInequality(
            [int(outputs[j]) for j in used], [float(row[j]) for j in used], float(rhs), isProperty=True
        )
    options = marabou.createOptions(timeoutInSeconds=max(1, math.ceil(seconds)), verbosity=0)
    exit_code, values, stats = network.solve(options=options, verbose=False)
    if stats.hasTimedOut():
        return "timeout", {}
    return str(exit_code).lower(), values


def decide(onnx_path: Path, vnnlib_path: Path, timeout: float) -> VerifierResult:
    """Run Marabou on one instance within ``timeout`` seconds."""
    start = time.monotonic()
    spec = parse_v1(vnnlib_path.read_text())
    marabou, network = _read_network(onnx_path)
    if network.inputVars[0].size != spec.lower.size:
        raise ValueError(f"network has {network.inputVars[0].size} inputs, property {spec.lower.size}")
    words = []
    for a, b in spec.polytopes:
        remaining = timeout - (time.monotonic() - start)
        if remaining <= 0:
            words.append("timeout")
            break
        word, values = _solve_disjunct(marabou, network, spec, a, b, remaining)
        words.append(word)
        if word == "sat":
            x = np.array([values[int(v)] for v in network.inputVars[0].flatten()])
            y = run_onnx(onnx_path, x.reshape(onnx_input_shape(onnx_path)))[0]
            return VerifierResult(vnnlib_path.stem, "marabou", "sat", time.monotonic() - start, x, y)
    final = "unsat" if words and all(w == "unsat" for w in words) else "timeout" if "timeout" in words else "unknown"
    note = "" if final != "unknown" else f"Marabou answers {sorted(set(words))}"
    return VerifierResult(vnnlib_path.stem, "marabou", final, time.monotonic() - start, note=note)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: decide one instance and write its results file. Returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 4:
        sys.stderr.write("usage: python -m vnncomp.verifiers.marabou_worker ONNX VNNLIB RESULTS_FILE TIMEOUT\n")
        return 2
    onnx_path, vnnlib_path, results_file, timeout = Path(argv[0]), Path(argv[1]), Path(argv[2]), float(argv[3])
    try:
        result = decide(onnx_path, vnnlib_path, timeout)
    except Exception as err:  # the worker reports any failure as an 'error' result, then exits non-zero
        logger.exception("Marabou failed on %s", vnnlib_path)
        write_result_file(results_file, VerifierResult(vnnlib_path.stem, "marabou", "error", note=str(err)))
        return 1
    write_result_file(results_file, result)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())

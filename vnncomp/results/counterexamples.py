"""Counterexample checks: a ``sat`` counts only if its point holds on the ONNX network (VNN-COMP rules)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .readers import VerifierResult, reject

CEX_ATOL = 1e-4
CEX_RTOL = 1e-3


@dataclass(frozen=True)
class CexCheck:
    """Outcome of :func:`check_counterexample`: ``valid`` and, when not, why."""

    valid: bool
    reason: str = ""


def check_counterexample(
    onnx_path: str | Path, vnnlib_path: str | Path, x, y=None, atol: float = CEX_ATOL, rtol: float = CEX_RTOL
) -> CexCheck:
    """Check a claimed counterexample the way VNN-COMP scores it.

    The point must lie in the input box (``atol``), the ONNX network (onnxruntime) run on
    it must satisfy some disjunct of the output constraint (``atol``), and reported
    outputs ``y``, if any, must match that run (``rtol``, ``atol``).

    Args:
        onnx_path: Network.
        vnnlib_path: VNN-LIB 1.0 property.
        x: Flattened input ``[n]`` (normalised space).
        y: Reported outputs ``[K]`` or None.

    Returns:
        A :class:`CexCheck`.
    """
    from ..export.onnx_run import onnx_input_shape, run_onnx
    from ..export.vnnlib import parse_v1

    spec = parse_v1(Path(vnnlib_path).read_text())
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size != spec.lower.size:
        return CexCheck(False, f"counterexample has {x.size} inputs, the property {spec.lower.size}")
    outside = np.flatnonzero((x < spec.lower - atol) | (x > spec.upper + atol))
    if outside.size:
        i = int(outside[0])
        return CexCheck(
            False,
            f"X_{i} = {x[i]!r} lies outside [{spec.lower[i]!r}, {spec.upper[i]!r}] "
            f"({outside.size} inputs outside the box)",
        )
    logits = run_onnx(onnx_path, x.reshape(onnx_input_shape(onnx_path)))[0].astype(np.float64)
    if y is not None:
        y = np.asarray(y, dtype=np.float64).ravel()
        if y.shape != logits.shape or not np.allclose(y, logits, rtol=rtol, atol=atol):
            return CexCheck(False, "reported outputs differ from the ONNX network's outputs")
    for a, b in spec.polytopes:
        if np.all(a @ logits <= b + atol):
            return CexCheck(True)
    return CexCheck(False, f"outputs {np.round(logits, 4).tolist()} satisfy no disjunct of the property")


def validate_counterexamples(
    results: Sequence[VerifierResult], instances: dict, require: bool = True
) -> list[VerifierResult]:
    """Check every ``sat`` result's counterexample; a failed one becomes ``error``.

    Args:
        results: Verifier results.
        instances: Instance name → object with ``onnx`` and ``vnnlib`` paths.
        require: Also reject a ``sat`` that comes without a counterexample (VNN-COMP rule);
            off for sources that never carry one (abCROWN csv-mode pickles, tables).
    """
    checked = []
    for r in results:
        if r.result == "sat" and r.instance in instances:
            inst = instances[r.instance]
            if r.counterexample is not None:
                outcome = check_counterexample(inst.onnx, inst.vnnlib, r.counterexample, r.output)
                r = r if outcome.valid else reject(r, outcome.reason)
            elif require:
                r = reject(r, "no counterexample given")
        checked.append(r)
    return checked

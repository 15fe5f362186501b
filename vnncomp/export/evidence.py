"""Per-instance evidence: attack points and bound certificates a verifier's answer is checked against.

A benchmark keeps, for every instance, what is known about its property besides any
verifier's word (``evidence/<instance>.json``, points in ``evidence/<instance>.<source>.npy``)::

    {"format": "adcert-evidence", "version": 1, "instance": ..., "onnx_sha256": ...,
     "attacks": [{"source": "export", "method": ..., "point": "evidence/<i>.export.npy",
                  "margin": m, "counterexample": true|false}, ...],
     "bound": {"method": "IBP", "min_margin_lower": l, "certified": l > 0}}

``margin`` is the property margin at the point on the ONNX network (onnxruntime):
min over disjuncts of max_i (A·y − b)_i, so ≤ 0 means the output satisfies the property's
unsafe region (for robustness: z_label − max_j z_j). ``counterexample`` applies VNN-COMP's
rule: inside the box and margin ≤ ``CEX_ATOL``. That rule is lenient on purpose (it accepts a
``sat`` whose point another runtime rounds differently); a point contradicts an ``unsat`` only
if it violates the property outright: :func:`box_margin` ≤ 0 (the point clipped into the box).
The record names the ONNX file's sha256; a
record for another network is stale and ignored. Export writes the PGD point and the bound;
``vnncomp.results.evidence`` adds verify-time attacks and valid verifier counterexamples.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from adcert_plugin.io import atomic_file, atomic_write_text, sha256_file

from .onnx_run import onnx_input_shape, run_onnx
from .vnnlib_reader import VnnlibSpec, parse_v1

logger = logging.getLogger(__name__)

EVIDENCE_DIR = "evidence"
CEX_ATOL = 1e-4  # VNN-COMP's tolerance on the input box and the output constraint
_FORMAT = "adcert-evidence"


def property_margin(spec: VnnlibSpec, logits: np.ndarray) -> float:
    """min over disjuncts of max_i (A·y − b)_i: ≤ 0 where ``logits`` lie in the unsafe region."""
    y = np.asarray(logits, dtype=np.float64).ravel()
    return float(min(np.max(a @ y - b) for a, b in spec.polytopes))


def point_outcome(onnx_path, vnnlib_path, x) -> tuple[float, bool, str]:
    """(margin, counterexample, why not) of a normalised input point on the ONNX network."""
    spec = parse_v1(Path(vnnlib_path).read_text())
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size != spec.lower.size:
        return float("nan"), False, f"the point has {x.size} inputs, the property {spec.lower.size}"
    logits = run_onnx(onnx_path, x.reshape(onnx_input_shape(onnx_path)))[0]
    margin = property_margin(spec, logits)
    outside = np.flatnonzero((x < spec.lower - CEX_ATOL) | (x > spec.upper + CEX_ATOL))
    if outside.size:
        return margin, False, f"{outside.size} inputs lie outside the box"
    if margin > CEX_ATOL:
        return margin, False, "the outputs satisfy no disjunct"
    return margin, True, ""


def box_margin(onnx_path, vnnlib_path, x) -> float:
    """The property margin at ``x`` clipped into the box: ≤ 0 means a point of the box violates the property."""
    spec = parse_v1(Path(vnnlib_path).read_text())
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size != spec.lower.size:
        return float("nan")
    x = np.clip(x, spec.lower, spec.upper)
    return property_margin(spec, run_onnx(onnx_path, x.reshape(onnx_input_shape(onnx_path)))[0])


def record_path(bench_dir, instance: str) -> Path:
    return Path(bench_dir) / EVIDENCE_DIR / f"{instance}.json"


def read_record(bench_dir, instance: str, onnx_sha256: str | None = None) -> dict | None:
    """The instance's evidence record, or None when absent, unreadable or for another network."""
    path = record_path(bench_dir, instance)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        logger.warning("ignoring unreadable evidence %s: %s", path, err)
        return None
    if not isinstance(record, dict) or record.get("format") != _FORMAT:
        logger.warning("ignoring %s: not an adcert evidence record", path)
        return None
    if onnx_sha256 is not None and record.get("onnx_sha256") != onnx_sha256:
        logger.warning("ignoring stale evidence %s: it is for another ONNX network", path)
        return None
    return record


def new_record(instance: str, onnx_sha256: str) -> dict:
    return {
        "format": _FORMAT,
        "version": 1,
        "instance": instance,
        "onnx_sha256": onnx_sha256,
        "attacks": [],
        "bound": None,
    }


def write_record(bench_dir, record: dict) -> Path:
    path = record_path(bench_dir, record["instance"])
    return atomic_write_text(path, json.dumps(record, indent=1) + "\n")


def save_point(bench_dir, instance: str, source: str, x) -> str:
    """Store a point (float32, flattened) as ``evidence/<instance>.<source>.npy``; return that relative path."""
    rel = f"{EVIDENCE_DIR}/{instance}.{source}.npy"
    with atomic_file(Path(bench_dir) / rel, "wb") as f:
        np.save(f, np.asarray(x, dtype=np.float32).ravel())
    return rel


def load_point(bench_dir, rel: str) -> np.ndarray | None:
    try:
        return np.load(Path(bench_dir) / rel, allow_pickle=False).astype(np.float64)
    except (OSError, ValueError) as err:
        logger.warning("ignoring unreadable evidence point %s: %s", rel, err)
        return None


def add_attack(bench_dir, record: dict, source: str, method: str, x, onnx_path, vnnlib_path) -> dict:
    """Re-check ``x`` on the ONNX network and append it to ``record`` (not written); return the entry."""
    margin, counterexample, why = point_outcome(onnx_path, vnnlib_path, x)
    entry = {
        "source": source,
        "method": method,
        "point": save_point(bench_dir, record["instance"], source, x),
        "margin": margin,
        "counterexample": counterexample,
        "note": why,
    }
    record["attacks"] = [a for a in record["attacks"] if a.get("source") != source] + [entry]
    return entry


def export_attack_method(pgd: dict) -> str:
    return (
        f"PGD margin loss, {pgd['steps']} steps x {pgd['restarts']} restarts, step {pgd['step_size']} "
        "of the half-width, on the PyTorch model in the pixel box; point re-checked with onnxruntime"
    )


def write_export_evidence(root: Path, params: dict, entries: list[dict], selection: dict) -> None:
    """Write every instance's export-time evidence: its PGD point and its cheap bound."""
    shutil.rmtree(root / EVIDENCE_DIR, ignore_errors=True)
    onnx_path = root / params["onnx"]
    digest = sha256_file(onnx_path)
    bound = selection["bound"]
    for entry, point, lower in zip(entries, selection["points"], bound["lower"]):
        record = new_record(entry["instance"], digest)
        add_attack(
            root,
            record,
            "export",
            export_attack_method(params["pgd"]),
            point.numpy(),
            onnx_path,
            root / entry["vnnlib"],
        )
        record["bound"] = {
            "method": bound["method"],
            "min_margin_lower": float(lower),
            "certified": lower > 0,
            "note": "PyTorch model, pixel box; the VNN-LIB box is rounded outward from it",
        }
        write_record(root, record)
        entry["evidence"] = str(record_path(Path("."), entry["instance"]))

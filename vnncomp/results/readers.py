"""Verifier answers: read every verifier's result files and results tables.

Result words follow VNN-COMP: ``unsat`` (robust), ``sat`` (counterexample), ``timeout``,
``error``, ``unknown``. File formats read here (formats.md §2.3):

* VNN-COMP single-instance file (abCROWN single_vnnlib mode, our Marabou runner):
  line 1 is the word; with a counterexample, the next lines are
  ``((X_0  v)\\n(X_1  v)...\\n(Y_0  v)...)``.
* NeuralSAT ``--result_file``: line 1 is ``<status>`` or ``<status>,<seconds>`` (with
  ``--export_runtime``); with ``--export_cex`` the same ``((X_i v) ... (Y_j v))`` block.
* abCROWN csv mode: a pickle ``{'summary': {status: [rows]}, 'results': [[status, s], ...],
  'bab_ret': [...]}``, read with a restricted unpickler (torch tensors in it become inert placeholders).
"""

from __future__ import annotations

import csv
import io
import logging
import pickle
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from adcert_plugin.errors import VerifierError

from ..export.vnnlib import format_number

__all__ = [
    "RESULTS",
    "VerifierResult",
    "load_pickle_restricted",
    "read_abcrown_pickle",
    "read_result_file",
    "read_results",
    "read_results_table",
    "read_table_identity",
    "reject",
    "write_result_file",
    "write_results_table",
]

logger = logging.getLogger(__name__)

RESULTS = ("unsat", "sat", "timeout", "error", "unknown")
_ALIASES = {
    "holds": "unsat",
    "violated": "sat",
    "timed_out": "timeout",
    "to": "timeout",
    "invalid_counterexample": "error",
    "restart": "unknown",
    "early_stop": "unknown",
}
_CEX_ATOM = re.compile(r"\(\s*([XY])_(\d+)\s+([^\s()]+)\s*\)")


@dataclass(frozen=True)
class VerifierResult:
    """One verifier's answer on one instance.

    Attributes:
        instance: Instance name (the vnnlib file stem).
        verifier: ``marabou``, ``abcrown`` or ``neuralsat``.
        result: One of :data:`RESULTS`.
        seconds: Wall time (NaN when unknown).
        counterexample: Flattened input ``[n]`` for ``sat`` (normalised space), else None.
        output: The logits the verifier reported with the counterexample, else None.
        note: Free text (why an answer was rejected, an error message).
    """

    instance: str
    verifier: str
    result: str
    seconds: float = float("nan")
    counterexample: np.ndarray | None = None
    output: np.ndarray | None = None
    note: str = ""


def normalize_word(word: str, source: str = "") -> str:
    """Map a verifier's status word to one of :data:`RESULTS`.

    Raises:
        VerifierError: The word is not a known status.
    """
    key = word.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in RESULTS:
        raise VerifierError(f"{source or 'result'}: unknown result word {word!r}; expected one of {RESULTS}")
    return key


def parse_counterexample(text: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Read a ``((X_0 v) ... (Y_0 v) ...)`` block into (x ``[n]``, y ``[K]``); None when absent."""
    values: dict[str, dict[int, float]] = {"X": {}, "Y": {}}
    for kind, index, value in _CEX_ATOM.findall(text):
        try:
            values[kind][int(index)] = float(value)
        except ValueError as err:
            raise VerifierError(f"counterexample value {value!r} for {kind}_{index} is not a number") from err
    arrays: list[np.ndarray | None] = []
    for kind in ("X", "Y"):
        found = values[kind]
        if not found:
            arrays.append(None)
            continue
        if sorted(found) != list(range(len(found))):
            raise VerifierError(f"counterexample lists {kind} indices with gaps: {sorted(found)[:5]}...")
        arrays.append(np.array([found[i] for i in range(len(found))]))
    return arrays[0], arrays[1]


def parse_result_text(text: str, instance: str, verifier: str, seconds: float = float("nan")) -> VerifierResult:
    """Parse a VNN-COMP style result (one word, optional ``,seconds``, optional counterexample)."""
    lines = text.strip().splitlines()
    if not lines:
        raise VerifierError(f"{verifier} result for {instance} is empty")
    head = lines[0].strip().split(",")
    word = normalize_word(head[0], f"{verifier}/{instance}")
    if len(head) > 1 and head[1].strip():
        try:
            seconds = float(head[1])
        except ValueError as err:
            raise VerifierError(f"{verifier}/{instance}: bad time {head[1]!r}") from err
    x, y = parse_counterexample("\n".join(lines[1:]))
    if word == "sat" and x is None:
        logger.warning("%s reports sat for %s without a counterexample", verifier, instance)
    return VerifierResult(instance, verifier, word, seconds, x, y)


def read_result_file(
    path: str | Path, verifier: str, instance: str | None = None, seconds: float = float("nan")
) -> VerifierResult:
    """Read one single-instance result file (abCROWN single mode, NeuralSAT, our Marabou runner)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise VerifierError(f"cannot read {verifier} result {path}: {err}") from err
    return parse_result_text(text, instance or path.stem, verifier, seconds)


def write_result_file(path: str | Path, result: VerifierResult) -> Path:
    """Write ``result`` in the VNN-COMP single-instance format (word, then counterexample)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [result.result]
    if result.result == "sat" and result.counterexample is not None:
        atoms = [f"(X_{i}  {format_number(v)})" for i, v in enumerate(result.counterexample)]
        if result.output is not None:
            atoms += [f"(Y_{j}  {format_number(v)})" for j, v in enumerate(result.output)]
        lines.append("(" + "\n".join(atoms) + ")")
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------ abCROWN csv-mode pickle

_SAFE_GLOBALS = (
    {
        ("builtins", name)
        for name in ("dict", "list", "tuple", "set", "frozenset", "int", "float", "str", "bool", "complex", "bytes")
    }
    | {("collections", "defaultdict"), ("collections", "OrderedDict")}
    | {
        (module, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    }
    | {("numpy", "ndarray"), ("numpy", "dtype")}
    | {(module, "_frombuffer") for module in ("numpy.core.numeric", "numpy._core.numeric")}
)


# abCROWN puts torch tensors into the pickle (``bab_ret``: the bound and the node count of each
# instance that went to branch and bound). Those are never read here, and building a tensor would run
# torch's code on the file's bytes (``_load_from_bytes`` is a ``torch.load``), so the functions that
# rebuild a tensor, and only those, are replaced by one that builds an inert placeholder: no torch
# import, no code of the file's choosing. Any other name is refused as before.
_TENSOR_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_device_tensor_from_numpy"),
    ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch._tensor", "_rebuild_from_type"),
    ("torch.storage", "_load_from_bytes"),
    ("torch", "Tensor"),
    ("torch.nn.parameter", "Parameter"),
    ("torch", "Size"),
    ("torch", "device"),
} | {
    ("torch", dtype)
    for dtype in ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
}


class OpaqueTensor:
    """What a torch tensor in an abCROWN pickle reads as: nothing of it is built (see above)."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __repr__(self) -> str:
        return "OpaqueTensor()"


def _opaque(*args, **kwargs) -> OpaqueTensor:
    return OpaqueTensor()


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only builtin containers/numbers/strings and numpy arrays/scalars; tensors as placeholders."""

    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        if (module, name) in _TENSOR_GLOBALS:
            return _opaque
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load_pickle_restricted(data: bytes, source: str = "pickle"):
    """Unpickle ``data`` allowing only plain containers, numbers, strings and numpy arrays.

    torch tensors (abCROWN's ``bab_ret``) are read as :class:`OpaqueTensor` placeholders, never built.

    Raises:
        VerifierError: The pickle names any other class, or is corrupt.
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(data)).load()
    except (
        pickle.UnpicklingError,
        EOFError,
        AttributeError,
        ValueError,
        TypeError,
        ImportError,
        IndexError,
        KeyError,
    ) as err:
        raise VerifierError(f"{source}: not a plain abCROWN results pickle ({err})") from err


def abcrown_status_word(status: str) -> str:
    """abCROWN's internal status (``safe-incomplete``, ``unsafe-pgd``, ...) → result word."""
    status = str(status)
    if "unknown" in status or "timeout" in status or "timed out" in status:
        return "timeout"
    if "unsafe" in status:
        return "sat"
    if "safe" in status:
        return "unsat"
    raise VerifierError(f"unknown abCROWN status {status!r}")


def read_abcrown_pickle(path: str | Path, instances: Sequence[str]) -> list[VerifierResult]:
    """Read abCROWN's csv-mode results pickle; row i belongs to ``instances[i]``.

    Raises:
        VerifierError: Unreadable or unsafe pickle, or more rows than instances.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise VerifierError(f"cannot read abCROWN results {path}: {err}") from err
    record = load_pickle_restricted(data, str(path))
    if not isinstance(record, dict) or not isinstance(record.get("results"), (list, tuple)):
        raise VerifierError(f"{path}: expected a dict with a 'results' list (abCROWN csv mode)")
    rows = record["results"]
    if len(rows) > len(instances):
        raise VerifierError(f"{path}: {len(rows)} result rows but only {len(instances)} instances")
    results = []
    for name, row in zip(instances, rows):
        status, seconds = row[0], float(row[1])
        results.append(VerifierResult(name, "abcrown", abcrown_status_word(status), seconds, note=str(status)))
    return results


# ------------------------------------------------------------------- results tables

_TABLE_FIELDS = ("instance", "verifier", "result", "seconds", "note")


_IDENTITY_FIELDS = ("network_sha256", "eps")


def write_results_table(path: str | Path, results: Iterable[VerifierResult], identity: dict | None = None) -> Path:
    """Write a CSV table (header: instance, verifier, result, seconds, note[, network_sha256, eps]).

    ``identity`` (``network_sha256`` of the ONNX file, ``eps``) is written on every row, so that
    a table read back is matched to the network it was computed for.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = [("" if (identity or {}).get(k) is None else str((identity or {})[k])) for k in _IDENTITY_FIELDS]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(_TABLE_FIELDS + (_IDENTITY_FIELDS if identity else ()))
        for r in results:
            writer.writerow(
                [r.instance, r.verifier, r.result, f"{r.seconds:.3f}", r.note] + (extra if identity else [])
            )
    return path


def read_table_identity(path: str | Path) -> set[tuple[str, str]]:
    """The (network_sha256, eps) pairs a results table records (empty for older tables)."""
    try:
        with Path(path).open(newline="") as f:
            return {
                (row.get("network_sha256") or "", row.get("eps") or "")
                for row in csv.DictReader(f)
                if row.get("network_sha256") or row.get("eps")
            }
    except OSError as err:
        raise VerifierError(f"cannot read results table {path}: {err}") from err


def read_results_table(path: str | Path) -> list[VerifierResult]:
    """Read a table written by :func:`write_results_table` (counterexamples are not in it)."""
    path = Path(path)
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as err:
        raise VerifierError(f"cannot read results table {path}: {err}") from err
    if rows and set(_TABLE_FIELDS) - set(rows[0]):
        raise VerifierError(f"{path}: missing columns {sorted(set(_TABLE_FIELDS) - set(rows[0]))}")
    return [
        VerifierResult(
            r["instance"],
            r["verifier"],
            normalize_word(r["result"], str(path)),
            float(r["seconds"] or "nan"),
            note=r["note"],
        )
        for r in rows
    ]


def read_results(
    source: str | Path, verifier: str | None = None, instances: Sequence[str] | None = None
) -> list[VerifierResult]:
    """Read verifier results from a table, a pickle, a result file, or a folder of result files.

    Args:
        source: ``*.csv`` table; abCROWN ``*.pkl`` (needs ``instances``); a single ``*.txt``
            result file; or a folder of ``<instance>.txt`` files.
        verifier: Verifier name for files that do not record it (default: folder name).
        instances: Instance names in csv row order, for abCROWN pickles.

    Returns:
        The results, sorted by instance.
    """
    source = Path(source)
    if source.is_dir():
        name = verifier or source.name
        results = [read_result_file(p, name) for p in sorted(source.glob("*.txt"))]
    elif source.suffix == ".csv":
        results = read_results_table(source)
    elif source.suffix in (".pkl", ".pickle"):
        if instances is None:
            raise VerifierError(f"{source}: an abCROWN pickle needs the instance list (instances.csv order)")
        results = read_abcrown_pickle(source, instances)
    else:
        results = [read_result_file(source, verifier or "unknown")]
    return sorted(results, key=lambda r: r.instance)


def reject(result: VerifierResult, reason: str) -> VerifierResult:
    """The same result turned into ``error`` with ``reason`` noted (a sat that failed its check)."""
    logger.warning("%s on %s: rejecting %s: %s", result.verifier, result.instance, result.result, reason)
    return replace(result, result="error", note=f"rejected {result.result}: {reason}")

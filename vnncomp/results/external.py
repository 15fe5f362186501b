"""Other people's results, mapped onto a benchmark's instances, and the format detection of ``--results``.

* VNN-COMP per-tool ``results.csv`` (``<tool>/<benchmark>/results.csv`` in the results
  repositories): no header; ``benchmark, onnx path, vnnlib path, prepare time, result, run time``
  (further columns ignored). Words ``holds``/``violated`` (or ``unsat``/``sat``), ``timeout...``,
  ``error...``, ``unknown``. A ``sat`` row's counterexample is
  ``<onnx stem>_<vnnlib stem>.counterexample[.gz]`` beside the csv.
* The 2026 certified-training benchmark's per-model records
  (``verification_results/<model>.json``): ``{"<test index>": {"result": ..., "method": ...,
  "running_time": s}}``, mapped to instances named ``<model>_idx<index>_...`` (or, for an adcert
  benchmark of that net, through ``metadata.json``). They carry no counterexamples.

A row is matched to an instance by vnnlib file stem (``.gz`` dropped) and ONNX file stem.
Published answers are named ``vnncomp:<tool>`` and ``published:<method>`` beside adcert's.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import re
from pathlib import Path

from adcert_plugin.errors import ConfigError

from ..export.instances import Instance
from .readers import VerifierResult, parse_counterexample, read_abcrown_pickle, read_result_file, read_results_table

logger = logging.getLogger(__name__)

__all__ = ["detect_format", "read_2026_records", "read_source", "read_vnncomp_csv"]

_WORDS = {"holds": "unsat", "unsat": "unsat", "violated": "sat", "sat": "sat", "unknown": "unknown", "": "unknown"}
_TABLE_HEADER = ["instance", "verifier", "result", "seconds", "note"]


def _stem(path: str) -> str:
    name = Path(path.strip()).name
    name = name[:-3] if name.endswith(".gz") else name
    return name.rsplit(".", 1)[0] if "." in name else name


def _vnncomp_word(word: str) -> str:
    word = word.strip().lower()
    if word in _WORDS:
        return _WORDS[word]
    for prefix, mapped in (("timeout", "timeout"), ("error", "error"), ("run_instance_timeout", "timeout")):
        if word.startswith(prefix):
            return mapped
    return "unknown"


def _read_counterexample(folder: Path, onnx_stem: str, vnnlib_stem: str):
    for name in (f"{onnx_stem}_{vnnlib_stem}.counterexample", f"{onnx_stem}_{vnnlib_stem}.counterexample.gz"):
        path = folder / name
        if path.is_file():
            data = path.read_bytes()
            text = (gzip.decompress(data) if name.endswith(".gz") else data).decode("utf-8", "replace")
            return parse_counterexample(text)
    return None, None


def read_vnncomp_csv(path, instances: dict[str, Instance], tool: str | None = None) -> list[VerifierResult]:
    """Read a VNN-COMP ``results.csv``; rows of other benchmarks' instances are skipped.

    Args:
        path: The csv (or the folder holding it).
        instances: The benchmark's instances by name.
        tool: Tool name (default: the folder two levels up, ``<tool>/<benchmark>/results.csv``).

    Raises:
        ConfigError: Malformed rows, or no row names an instance of the benchmark.
    """
    path = Path(path)
    path = path / "results.csv" if path.is_dir() else path
    tool = tool or (path.parent.parent.name or path.parent.name)
    by_key = {(inst.vnnlib.stem, inst.onnx.stem): name for name, inst in instances.items()}
    results, skipped = [], 0
    with path.open(newline="") as f:
        for number, row in enumerate(csv.reader(f), 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 6:
                raise ConfigError(f"{path}:{number}: expected benchmark,onnx,vnnlib,prepare,result,time; got {row}")
            onnx_stem, vnnlib_stem = _stem(row[1]), _stem(row[2])
            name = by_key.get((vnnlib_stem, onnx_stem))
            if name is None:
                skipped += 1
                continue
            word = _vnncomp_word(row[4])
            x, y = _read_counterexample(path.parent, onnx_stem, vnnlib_stem) if word == "sat" else (None, None)
            try:
                seconds = float(row[5])
            except ValueError:
                seconds = float("nan")
            results.append(VerifierResult(name, f"vnncomp:{tool}", word, seconds, x, y, note=f"{path.name}:{number}"))
    if not results:
        raise ConfigError(f"no row of {path} names an instance of this benchmark ({skipped} rows of others)")
    logger.info("%s: %d rows for this benchmark, %d skipped", path, len(results), skipped)
    return results


def read_2026_records(path, instances: dict[str, Instance], metadata: dict | None = None) -> list[VerifierResult]:
    """Read a 2026 certified-training ``verification_results/<model>.json`` onto the benchmark's instances.

    Raises:
        ConfigError: Not such a file, or no instance belongs to its model.
    """
    path = Path(path)
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read {path}: {err}") from err
    if not isinstance(records, dict) or not all(isinstance(r, dict) and "result" in r for r in records.values()):
        raise ConfigError(f"{path}: expected {{index: {{'result', 'method', 'running_time'}}}} records")
    model = path.stem
    index_of = _instance_indices(model, instances, metadata)
    if not index_of:
        raise ConfigError(
            f"{path}: no instance of this benchmark belongs to model {model!r} (instances are named <model>_idx<i>_...)"
        )
    results = []
    for name, index in sorted(index_of.items()):
        record = records.get(str(index))
        if record is None:
            continue
        word = _vnncomp_word(str(record["result"]))
        results.append(
            VerifierResult(
                name,
                f"published:{record.get('method', 'unknown')}",
                word,
                float(record.get("running_time", float("nan"))),
                note=f"{path.name}[{index}]",
            )
        )
    return results


def _instance_indices(model: str, instances: dict, metadata: dict | None) -> dict[str, int]:
    pattern = re.compile(rf"^{re.escape(model)}_idx(\d+)(?:_|$)")
    found = {name: int(m.group(1)) for name in instances if (m := pattern.match(name))}
    if not found and metadata and metadata.get("net") == model:
        found = {e["instance"]: int(e["index"]) for e in metadata.get("instances", []) if e["instance"] in instances}
    return found


def detect_format(source: Path) -> str:
    """``table``, ``vnncomp-csv``, ``records-2026``, ``abcrown-pickle``, ``folder`` or ``result-file``."""
    if source.is_dir():
        return "vnncomp-csv" if (source / "results.csv").is_file() else "folder"
    if source.suffix in (".pkl", ".pickle"):
        return "abcrown-pickle"
    if source.suffix == ".json":
        return "records-2026"
    if source.suffix == ".csv":
        with source.open(newline="") as f:
            first = next(csv.reader(f), [])
        if [c.strip() for c in first[:5]] == _TABLE_HEADER:
            return "table"
        if len(first) >= 6:
            return "vnncomp-csv"
        raise ConfigError(
            f"{source}: neither an adcert results table (header {','.join(_TABLE_HEADER)}) nor a "
            "VNN-COMP results.csv (benchmark,onnx,vnnlib,prepare,result,time)"
        )
    return "result-file"


def read_source(
    source, instances: dict[str, Instance], metadata: dict | None = None
) -> tuple[list[VerifierResult], str]:
    """Read any results source onto the benchmark's instances; return (results, its format)."""
    source = Path(source)
    kind = detect_format(source)
    names = list(instances)
    if kind == "table":
        results = read_results_table(source)
    elif kind == "vnncomp-csv":
        results = read_vnncomp_csv(source, instances)
    elif kind == "records-2026":
        results = read_2026_records(source, instances, metadata)
    elif kind == "abcrown-pickle":
        results = read_abcrown_pickle(source, names)
    elif kind == "folder":
        results = [read_result_file(p, source.name) for p in sorted(source.glob("*.txt"))]
    else:
        results = [read_result_file(source, "unknown")]
    return sorted(results, key=lambda r: (r.instance, r.verifier)), kind


def needs_counterexample(kind: str) -> bool:
    """Whether a ``sat`` from this kind of source must come with a counterexample (VNN-COMP rule)."""
    return kind in ("folder", "result-file")  # a results.csv may travel without its counterexample files

"""Benchmark instance lists: ``instances.csv`` rows and ``metadata.json`` sample indices.

``instances.csv`` has no header; each row is ``onnx_path,vnnlib_path,timeout`` with paths
relative to the benchmark folder (formats.md §1.2). An instance is named by its vnnlib
file stem, which is also the name of its result files.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from adcert_plugin.errors import ConfigError

INSTANCES_CSV = "instances.csv"
METADATA_JSON = "metadata.json"


@dataclass(frozen=True)
class Instance:
    """One row of ``instances.csv``, with absolute paths.

    Attributes:
        name: The vnnlib file stem.
        onnx: Absolute ONNX path.
        vnnlib: Absolute vnnlib path.
        timeout: Seconds.
    """

    name: str
    onnx: Path
    vnnlib: Path
    timeout: float


def format_timeout(seconds: float) -> str:
    """``120`` for whole seconds, else a plain decimal."""
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


def write_instances_csv(path: str | Path, rows: Iterable[tuple[str, str, float]]) -> Path:
    """Write ``onnx,vnnlib,timeout`` rows (relative paths, no header)."""
    path = Path(path)
    lines = [f"{onnx},{vnnlib},{format_timeout(timeout)}" for onnx, vnnlib, timeout in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_instances(bench_dir: str | Path, csv_name: str = INSTANCES_CSV) -> list[Instance]:
    """Read the instance list of a benchmark folder.

    Raises:
        ConfigError: The csv is missing, malformed, or names a missing file.
    """
    bench_dir = Path(bench_dir).resolve()
    path = bench_dir / csv_name
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; is {bench_dir} a benchmark folder written by adcert-export?")
    instances = []
    with path.open(newline="") as f:
        for number, row in enumerate(csv.reader(f), 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 3:
                raise ConfigError(f"{path}:{number}: expected onnx,vnnlib,timeout, got {row}")
            onnx, vnnlib = bench_dir / row[0].strip(), bench_dir / row[1].strip()
            try:
                timeout = float(row[2])
            except ValueError as err:
                raise ConfigError(f"{path}:{number}: timeout {row[2]!r} is not a number") from err
            if not (math.isfinite(timeout) and timeout > 0):  # NaN passes every comparison: say it
                raise ConfigError(
                    f"{path}:{number}: timeout {row[2].strip()!r} must be a positive number of "
                    "seconds; fix the row, or export the benchmark again"
                )
            for file in (onnx, vnnlib):
                if not file.is_file():
                    raise ConfigError(f"{path}:{number}: {file} does not exist")
            instances.append(Instance(vnnlib.stem, onnx, vnnlib, timeout))
    if not instances:
        raise ConfigError(f"{path} lists no instances; export the benchmark again (adcert-export ... --force)")
    return instances


def read_metadata(bench_dir: str | Path) -> dict:
    """Load ``metadata.json`` of a benchmark folder.

    Raises:
        ConfigError: Missing or not valid JSON.
    """
    path = Path(bench_dir) / METADATA_JSON
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read {path}: {err}; is this a benchmark written by adcert-export?") from err


def instance_sample_index(metadata: dict) -> dict[str, int]:
    """Instance name → test-set index, from ``metadata.json``."""
    return {entry["instance"]: int(entry["index"]) for entry in metadata.get("instances", [])}

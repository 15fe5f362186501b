"""The list of files an export wrote (``<bench>/.adcert-export``), so that --force removes only those.

``adcert-export --force`` replaces a benchmark folder only when everything in it was written by
an export: a folder of other files, a file, a parent folder of several benchmarks, or a
benchmark with verifier results in it (``results/``, written by adcert-verify) is refused.
A benchmark exported before the manifest existed is recognised by its ``benchmark.json``
(format ``adcert-benchmark``) and the top-level names an export writes.
"""

from __future__ import annotations

import json
from pathlib import Path

MANIFEST = ".adcert-export"
# What an export writes at the top level (benchmarks from before the manifest).
LEGACY_TOP = {
    "onnx",
    "vnnlib",
    "1.0",
    "2.0",
    "evidence",
    "src",
    "instances.csv",
    "metadata.json",
    "benchmark.json",
    "README.md",
    "generate_properties.py",
    "abcrown_cpu.yaml",
    "abcrown_gpu.yaml",
    "run_abcrown.sh",
}


def _files(root: Path) -> list[str]:
    """Every file and symlink under ``root``, as sorted relative POSIX paths (folders not listed)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_symlink() or not p.is_dir())


def write_manifest(root: Path, keep: set[str] | None = None) -> None:
    """Record what is in ``root`` now (plus ``keep``: files an earlier export listed) as the export's."""
    files = set(_files(root)) - {MANIFEST} | (keep or set())
    (root / MANIFEST).write_text(
        json.dumps({"format": "adcert-export-manifest", "version": 1, "files": sorted(files)}, indent=0) + "\n"
    )


def read_manifest(root: Path) -> set[str] | None:
    """The files an export listed in ``root``, or None when there is no readable manifest."""
    try:
        data = json.loads((root / MANIFEST).read_text())
        files = data["files"] if data.get("format") == "adcert-export-manifest" else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return {f for f in files if isinstance(f, str)} if isinstance(files, list) else None


def _is_legacy_benchmark(root: Path) -> bool:
    try:
        return json.loads((root / "benchmark.json").read_text()).get("format") == "adcert-benchmark"
    except (OSError, ValueError, AttributeError):
        return False


def foreign_files(root: Path) -> list[str]:
    """What in ``root`` an export did not write (empty: --force may replace the folder)."""
    listed = read_manifest(root)
    if listed is not None:
        return [f for f in _files(root) if f != MANIFEST and f not in listed]
    if _is_legacy_benchmark(root):  # an export leaves results/abcrown/ empty: only files in it are foreign
        results = [f"results/{f}" for f in _files(root / "results")] if (root / "results").is_dir() else []
        return results + sorted(
            p.name + ("/" if p.is_dir() else "") for p in root.iterdir() if p.name not in LEGACY_TOP | {"results"}
        )
    return sorted(p.name + ("/" if p.is_dir() and not p.is_symlink() else "") for p in root.iterdir())

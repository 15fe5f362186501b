"""Export: a VNN-COMP benchmark folder from an adcert checkpoint.

    benchmark.py      export_benchmark() / regenerate_properties(): the whole folder
    selection.py      which test samples qualify (correct, optionally PGD-robust, not cheaply certified)
    onnx_export.py    BN folding, TorchScript export, onnxruntime equivalence check (onnx_run.py runs one)
    vnnlib.py         properties (input box + margin disjunction) in VNN-LIB 1.0 and 2.0
    vnnlib_reader.py  the VNN-LIB 1.0 subset we write, read back (for validation and counterexamples)
    instances.py      instances.csv and metadata.json
    abcrown.py        alpha-beta-CROWN YAML configs and run_abcrown.sh
    readme.py         the folder's README.md and generate_properties.py

The names below load on first use, so that the torch-free modules here (the VNN-LIB reader,
onnx_run, instances) stay importable by the verifier worker without loading torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "BenchmarkInfo": "benchmark",
    "export_benchmark": "benchmark",
    "find_eps": "benchmark",
    "regenerate_properties": "benchmark",
    "export_onnx": "onnx_export",
    "property_from_sample": "vnnlib",
    "render_v1": "vnnlib",
    "render_v2": "vnnlib",
    "parse_v1": "vnnlib_reader",
    "read_instances": "instances",
    "write_abcrown_configs": "abcrown",
}
__all__ = sorted(_EXPORTS)  # noqa: PLE0605 - a list, built from the lazy-export table


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

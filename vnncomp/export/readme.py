"""Text files of a benchmark: ``README.md`` and the ``generate_properties.py`` script."""

from __future__ import annotations

from .abcrown import RESULTS_DIR

GENERATE_PROPERTIES = '''#!/usr/bin/env python3
"""Regenerate vnnlib/, 1.0/, 2.0/, instances.csv and metadata.json of this benchmark.

    python generate_properties.py <seed> [--data-dir DIR]

Deterministic: the same seed, model (src/model.pt) and test set give the same files.
Needs adcert installed (it imports adcert_plugin and vnncomp) and the test set of the data
set named in benchmark.json (--data-dir, else $ADCERT_DATA).
"""

import argparse
import logging
from pathlib import Path

from vnncomp.export import regenerate_properties


def main() -> None:
    parser = argparse.ArgumentParser(description="Regenerate the properties for a seed.")
    parser.add_argument("seed", type=int, help="random seed for drawing test samples")
    parser.add_argument("--data-dir", default=None, help="data root (default: $ADCERT_DATA)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    regenerate_properties(Path(__file__).resolve().parent, args.seed, data_dir=args.data_dir)


if __name__ == "__main__":
    main()
'''


def _percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.2f} % ({part}/{whole})" if whole else "n/a"


def _selection(params: dict) -> str:
    """What the samples are, e.g. "correctly classified test samples that PGD does not break"."""
    filters = []
    if params["filter_pgd"]:
        filters.append("that PGD does not break")
    if params.get("skip_certified"):
        filters.append(f"that {params['skip_certified']} does not already certify")
    where = _range(params)
    return " ".join([f"correctly classified test samples{where}", *filters[:1], *(f"and {f}" for f in filters[1:])])


def _range(params: dict) -> str:
    """ " of test indices [start, end)" when the export was restricted to a range (as adcert-eval's)."""
    start, end = params.get("start"), params.get("end")
    if start is None and end is None:
        return ""
    return f" of test indices [{start or 0}, {'end' if end is None else end})"


def _bound_fact(params: dict, stats: dict) -> list[tuple[str, str]]:
    """The README row for ``skip_certified`` (none when it is off)."""
    method = params.get("skip_certified")
    if not method:
        return []
    share = _percent(stats["bound_certified"], stats["bound_examined"])
    return [(f"{method}-certified", f"{share} of the bound-checked samples (skipped: a cheap bound decides them)")]


def _facts(params: dict, stats: dict) -> list[tuple[str, str]]:
    arch, pgd = params["arch"], params["pgd"]
    c, h, w = params["shape"]
    n, timeout, k = stats["n_written"], params["timeout"], params["num_classes"]
    selection = _selection(params)
    return [
        ("model", f"`{arch['name']}` {arch.get('kwargs') or ''}, checkpoint copy `src/model.pt`"),
        (
            "network file",
            f"`{params['onnx']}`: opset {params['opset']}, BatchNorm folded, input `input` float32 "
            f"`[1,{c},{h},{w}]` (NCHW), output `output` `[1,{k}]` logits",
        ),
        ("data set", f"`{params['dataset']}`, test split, {k} classes"),
        (
            "normalisation",
            "**outside the network**: input = (x - mean_c) / std_c, "
            f"mean = {list(params['mean'])}, std = {list(params['std'])}",
        ),
        ("eps", f"{params['eps']!r} (L-infinity, pixel space, pixels in [0, 1])"),
        (
            "input bounds",
            "(clip(x - eps, 0, 1) - mean_c) / std_c and (clip(x + eps, 0, 1) - mean_c) / std_c, "
            "rounded outward; `X_i` is element i of the C-order flattening of `[C,H,W]`",
        ),
        ("output property", "`(or (and (>= Y_j Y_t)) ...)` for j != t: the counterexample region"),
        ("samples", f"{n} {selection}, drawn with `numpy.random.default_rng({params['seed']})`"),
        ("clean accuracy", f"{_percent(stats['clean_correct'], stats['test_size'])} on the full test split"),
        (
            "PGD-robust",
            f"{_percent(stats['pgd_robust'], stats['pgd_examined'])} of the examined correctly "
            f"classified samples (PGD {pgd['steps']} steps, {pgd['restarts']} restarts, margin loss)",
        ),
        *_bound_fact(params, stats),
        ("timeouts", f"{timeout!r} s per instance, total {n * timeout!r} s <= 21600 s (6 h)"),
    ]


def render_readme(params: dict, stats: dict) -> str:
    """README.md text.

    Args:
        params: The contents of ``benchmark.json``.
        stats: ``clean_correct``, ``test_size``, ``pgd_examined``, ``pgd_robust``, ``n_written``;
            with ``skip_certified`` also ``bound_examined`` and ``bound_certified``.
    """
    timeout = params["timeout"]
    table = "\n".join(f"| {item} | {value} |" for item, value in _facts(params, stats))
    return f"""# {params["net"]}: adcert local-robustness benchmark

VNN-COMP style benchmark written by `adcert-export` (adcert {params.get("adcert_version", "?")}).
Each instance asks whether some input in an L-infinity ball around a test image is classified
differently from its label: `unsat` = robust, `sat` = counterexample.

| item | value |
|---|---|
{table}

## Files

* `instances.csv`: `onnx/...,vnnlib/...,timeout` rows, no header.
* `onnx/`, `vnnlib/`: the network and the VNN-LIB 1.0 properties (`<net>_idx<i>_eps<eps>.vnnlib`,
  i = test-set index).
* `1.0/` and `2.0/`: the 2026 layout, each with its own `instances.csv`, `onnx/` and `vnnlib/`
  (VNN-LIB 1.0 and 2.0 versions of the same properties).
* `metadata.json`: per instance the test index, label, paths and PGD result; the `skip_certified`
  bound method and its counts.
* `benchmark.json`: the parameters `generate_properties.py` reads.
* `abcrown_gpu.yaml`, `abcrown_cpu.yaml`, `run_abcrown.sh`: alpha-beta-CROWN configs.

## Regenerate the properties

    python generate_properties.py <seed> [--data-dir DIR]     # data root also from $ADCERT_DATA

## Run verifiers

alpha-beta-CROWN (from a checkout with `complete_verifier/abcrown.py`):

    ABCROWN_DIR=/path/to/alpha-beta-CROWN ./run_abcrown.sh gpu single   # one call per instance
    ABCROWN_DIR=/path/to/alpha-beta-CROWN ./run_abcrown.sh gpu csv      # one call, pickle results

or one instance by hand, from `complete_verifier/`:

    python abcrown.py --config <this dir>/abcrown_gpu.yaml --onnx_path <this dir>/onnx/<net>.onnx \\
        --vnnlib_path <this dir>/vnnlib/<file>.vnnlib --results_file out.txt --timeout {timeout!r} --save_adv_example

Results go to `{RESULTS_DIR}/`. With adcert installed:

    adcert-verify <this dir> --verifier marabou|abcrown|neuralsat [--abcrown PATH] [--timeout S]
    adcert-report <eval per-sample file> <this dir>
"""

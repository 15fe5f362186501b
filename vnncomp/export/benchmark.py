"""export_benchmark(): a VNN-COMP benchmark folder from an adcert checkpoint.

Layout (formats.md §1.1, §5)::

    onnx/<net>.onnx                      BN folded, [1,C,H,W] -> [1,K], normalisation outside
    vnnlib/<net>_idx<i>_eps<eps>.vnnlib  VNN-LIB 1.0
    instances.csv                        onnx/...,vnnlib/...,timeout  (no header)
    1.0/ 2.0/                            the 2026 layout: instances.csv, onnx/, vnnlib/ each
    generate_properties.py <seed>        regenerates the properties deterministically
    benchmark.json metadata.json README.md abcrown_{gpu,cpu}.yaml run_abcrown.sh src/model.pt
    evidence/<instance>.json (+ .npy)    the export-time PGD point and cheap bound (evidence.py)

Samples are correctly classified test images (optionally only those PGD does not break, and
only those a cheap bound does not already certify), drawn with ``np.random.default_rng(seed)``
(``selection.py``). ``benchmark.json`` and ``metadata.json`` name the network by the sha256 of
the source checkpoint and of the ONNX file, with the eps, so results can be matched to them.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from adcert_plugin import __version__
from adcert_plugin.bounds.spec import normalize
from adcert_plugin.errors import ConfigError, ExportError
from adcert_plugin.evaluation import check_eps, check_range
from adcert_plugin.io import sha256_file
from adcert_plugin.training import load_model, read_checkpoint, save_checkpoint

from .abcrown import write_abcrown_configs
from .evidence import write_export_evidence
from .folder import commit, link_or_copy, output_error_of, prepare_target
from .instances import INSTANCES_CSV, METADATA_JSON, write_instances_csv
from .manifest import read_manifest, write_manifest
from .onnx_export import creation_mode, export_onnx
from .readme import GENERATE_PROPERTIES, render_readme
from .selection import PGD, sample_range, select_samples, skip_method
from .vnnlib import check_v2, property_from_sample, render_v1, render_v2, validate_v1

logger = logging.getLogger(__name__)

MAX_TOTAL_TIMEOUT = 6 * 3600.0
BENCHMARK_JSON = "benchmark.json"
MODEL_FILE = "src/model.pt"


@dataclass(frozen=True)
class BenchmarkInfo:
    """What :func:`export_benchmark` wrote.

    Attributes:
        out_dir: The benchmark folder.
        params: The contents of ``benchmark.json``.
        instances: The ``metadata.json`` instance entries.
        clean_accuracy: On the test range samples are drawn from (the full split by default).
        pgd_examined: Correctly classified samples attacked during selection.
        pgd_robust: How many of those PGD did not break.
        onnx_max_abs_diff: Largest |onnxruntime − PyTorch| logit difference.
        bound_examined: Samples bounded with the ``skip_certified`` method during selection.
        bound_certified: How many of those the method certified (and so were skipped).
    """

    out_dir: Path
    params: dict
    instances: list[dict]
    clean_accuracy: float
    pgd_examined: int
    pgd_robust: int
    onnx_max_abs_diff: float = float("nan")
    bound_examined: int = 0
    bound_certified: int = 0

    @property
    def total_timeout(self) -> float:
        return sum(float(i["timeout"]) for i in self.instances)


def find_eps(config: dict | None) -> float | None:
    """The training eps in a checkpoint's config: top level, ``attack``, ``schedule``, else anywhere."""
    if not isinstance(config, dict):
        return None
    for section in (config, config.get("attack"), config.get("schedule")):
        if isinstance(section, dict) and isinstance(section.get("eps"), (int, float)):
            return float(section["eps"])
    for value in config.values():
        found = find_eps(value) if isinstance(value, dict) else None
        if found is not None:
            return found
    return None


def _eps_tag(eps: float) -> str:
    return np.format_float_positional(eps, precision=6, unique=True, fractional=False, trim="-")


def _net_name(dataset: str, arch: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{dataset}_{arch}")


def _check_request(n: int, timeout: float, eps: float) -> None:
    if n < 1 or timeout <= 0 or not check_eps(eps):
        raise ConfigError(
            f"need n >= 1, timeout > 0 and 0 < eps <= 1 (pixel space, where images lie in [0, 1]); "
            f"got n={n}, timeout={timeout}, eps={eps}"
        )
    if n * timeout > MAX_TOTAL_TIMEOUT:
        raise ConfigError(
            f"{n} instances x {timeout} s = {n * timeout} s exceeds the VNN-COMP total of "
            f"{MAX_TOTAL_TIMEOUT:.0f} s (6 h); lower --n or --timeout"
        )


def _write_property(root: Path, params: dict, index: int, image: torch.Tensor, label: int) -> tuple[str, str]:
    """Write one property in 1.0 (vnnlib/, 1.0/vnnlib/) and 2.0 (2.0/vnnlib/); return (name, 1.0 path)."""
    name = f"{params['net']}_idx{index}_eps{_eps_tag(params['eps'])}"
    comment = (
        f"adcert benchmark {params['net']}: {params['dataset']} test index {index}, label {label}\n"
        f"L_inf eps {params['eps']!r} in pixel space; bounds normalised with mean {params['mean']} "
        f"std {params['std']} (normalisation outside the network), NCHW flattening"
    )
    prop = property_from_sample(
        image, label, params["eps"], params["mean"], params["std"], params["num_classes"], comment
    )
    text_v1, text_v2 = render_v1(prop), render_v2(prop)
    parsed = validate_v1(text_v1)
    if parsed.label != label or not (
        np.array_equal(parsed.lower, prop.lower) and np.array_equal(parsed.upper, prop.upper)
    ):
        raise ExportError(f"{name}: the 1.0 text does not read back as the intended property")
    check_v2(text_v2, prop)
    rel = f"vnnlib/{name}.vnnlib"
    (root / rel).write_text(text_v1)
    link_or_copy(root / rel, root / "1.0" / rel)
    (root / "2.0" / rel).write_text(text_v2)
    return name, rel


def _write_properties(root: Path, params: dict, images, labels, selection: dict) -> list[dict]:
    for sub in ("vnnlib", "1.0/vnnlib", "2.0/vnnlib"):
        shutil.rmtree(root / sub, ignore_errors=True)
        (root / sub).mkdir(parents=True)
    entries, rows = [], []
    for row, (index, flag) in enumerate(zip(selection["indices"], selection["pgd_flags"])):
        label = int(labels[index])
        name, rel = _write_property(root, params, index, images[index], label)
        rows.append((params["onnx"], rel, params["timeout"]))
        entries.append(
            {
                "instance": name,
                "row": row,
                "index": int(index),
                "label": label,
                "onnx": params["onnx"],
                "vnnlib": rel,
                "vnnlib_1.0": f"1.0/{rel}",
                "vnnlib_2.0": f"2.0/{rel}",
                "timeout": params["timeout"],
                "pgd_robust": flag,
            }
        )
    for sub in ("", "1.0", "2.0"):
        write_instances_csv(root / sub / INSTANCES_CSV, rows)
    for sub in ("1.0", "2.0"):
        link_or_copy(root / params["onnx"], root / sub / params["onnx"])
    write_export_evidence(root, params, entries, selection)
    metadata = {
        "net": params["net"],
        "dataset": params["dataset"],
        "eps": params["eps"],
        "checkpoint_sha256": params.get("checkpoint_sha256"),
        "onnx_sha256": params.get("onnx_sha256"),
        "seed": params["seed"],
        "skip_certified": params.get("skip_certified"),
        "bound_examined": selection["bound_examined"],
        "bound_certified": selection["bound_certified"],
        "instances": entries,
    }
    (root / METADATA_JSON).write_text(json.dumps(metadata, indent=1) + "\n")
    return entries


def _write_docs(root: Path, params: dict, selection: dict, final_dir: Path) -> None:
    keys = ("clean_correct", "test_size", "pgd_examined", "pgd_robust", "bound_examined", "bound_certified")
    stats = {k: selection[k] for k in keys}
    stats["n_written"] = len(selection["indices"])
    total = stats["n_written"] * params["timeout"]
    if total > MAX_TOTAL_TIMEOUT:
        raise ExportError(f"total timeout {total} s exceeds 6 h")
    (root / BENCHMARK_JSON).write_text(json.dumps(params, indent=1) + "\n")
    (root / "README.md").write_text(render_readme(params, stats))
    script = root / "generate_properties.py"
    script.write_text(GENERATE_PROPERTIES)
    script.chmod(0o755)
    write_abcrown_configs(root, params["timeout"], root_path=final_dir)


def _info(root: Path, params: dict, entries: list[dict], selection: dict, diff: float) -> BenchmarkInfo:
    accuracy = selection["clean_correct"] / max(selection["test_size"], 1)
    return BenchmarkInfo(
        root,
        params,
        entries,
        accuracy,
        selection["pgd_examined"],
        selection["pgd_robust"],
        diff,
        bound_examined=selection["bound_examined"],
        bound_certified=selection["bound_certified"],
    )


def _load(checkpoint, dataset, arch):
    from adcert_plugin.data import get_data_spec

    record = read_checkpoint(checkpoint)
    trained_on = record.get("dataset") if isinstance(record, dict) and record.get("format") else None
    dataset = dataset or trained_on
    if not dataset:
        raise ConfigError(f"{checkpoint} does not name its data set; pass --dataset")
    data_spec = get_data_spec(dataset)
    model, record = load_model(checkpoint, arch=arch, in_shape=data_spec.shape, num_classes=data_spec.num_classes)
    if tuple(record["arch"]["in_shape"]) != tuple(data_spec.shape):
        raise ConfigError(f"model input shape {record['arch']['in_shape']} does not fit {dataset} {data_spec.shape}")
    if record.get("dataset") and dataset != record["dataset"]:  # same shape (Fashion-MNIST vs MNIST): still wrong
        raise ConfigError(
            f"{checkpoint} was trained on {record['dataset']}, not {dataset}; drop --dataset "
            "(the checkpoint's is used) or pass a model trained on it"
        )
    return model, record, data_spec


def export_benchmark(
    checkpoint,
    out_dir,
    dataset: str | None = None,
    data_dir=None,
    eps: float | None = None,
    n: int = 20,
    seed: int = 0,
    timeout: float = 120.0,
    filter_pgd: bool = False,
    force: bool = False,
    arch: str | None = None,
    opset: int = 13,
    skip_certified: str | None = None,
    start: int | None = None,
    end: int | None = None,
) -> BenchmarkInfo:
    """Write a VNN-COMP benchmark for a checkpoint (see the module docstring for the layout).

    Args:
        checkpoint: adcert checkpoint (or a plain state_dict with ``arch`` and ``dataset``).
        out_dir: Benchmark folder; refused if it exists and is not empty, unless ``force`` and it
            holds only what an earlier export wrote (its ``.adcert-export`` manifest).
        dataset: Data-set name (default: the checkpoint's ``dataset``).
        data_dir: Data root (default: ``$ADCERT_DATA``).
        eps: Pixel-space L∞ radius (default: the ``eps`` of the checkpoint's config).
        n: Number of instances.
        seed: Seed for drawing samples.
        timeout: Seconds per instance; ``n * timeout`` must be ≤ 6 h.
        filter_pgd: Keep only samples PGD does not break.
        force: Replace an earlier export in ``out_dir`` (never a folder holding anything else).
        arch: Architecture name for a plain state_dict.
        opset: ONNX opset (13..17).
        skip_certified: None, or a bound method of ``SKIP_METHODS`` ("IBP", "CROWN-IBP", "CROWN"):
            keep only samples that method does not already certify, so that the benchmark is
            not decided by a cheap incomplete bound.
        start, end: draw only from test indices ``[start, end)``, adcert-eval's range, so that
            the benchmark's samples are in that eval's report (default: the whole split).

    Returns:
        A :class:`BenchmarkInfo`.

    Raises:
        ConfigError: Bad arguments, no eps, or an existing folder without ``force``.
        ExportError: ONNX or VNN-LIB checks fail. Nothing is left behind on failure.
    """
    from adcert_plugin.data import load_split

    out_dir = Path(out_dir).resolve()
    check_range(start, end)
    prepare_target(out_dir, force)
    model, record, data_spec = _load(checkpoint, dataset, arch)
    eps = float(eps) if eps is not None else find_eps(record.get("config"))
    if eps is None:
        raise ConfigError(f"no eps in the config of {checkpoint}; pass --eps (pixel space, e.g. 0.00784)")
    _check_request(n, timeout, eps)
    skip_certified = skip_method(skip_certified)
    images, labels = load_split(data_spec.name, "test", data_dir)
    sample_range(len(labels), start, end)  # a bad range fails before anything is written
    net = _net_name(data_spec.name, record["arch"]["name"])
    params = {
        "format": "adcert-benchmark",
        "version": 1,
        "adcert_version": __version__,
        "net": net,
        "dataset": data_spec.name,
        "eps": eps,
        "checkpoint_sha256": sha256_file(checkpoint),
        "n": int(n),
        "seed": int(seed),
        "timeout": float(timeout),
        "filter_pgd": bool(filter_pgd),
        "skip_certified": skip_certified,
        "start": start,
        "end": end,
        "model": MODEL_FILE,
        "onnx": f"onnx/{net}.onnx",
        "opset": opset,
        "arch": record["arch"],
        "mean": list(data_spec.mean),
        "std": list(data_spec.std),
        "shape": list(data_spec.shape),
        "num_classes": data_spec.num_classes,
        "pgd": PGD,
    }
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp.", dir=out_dir.parent))
    except OSError as err:
        raise output_error_of(err, out_dir) from err
    tmp.chmod(creation_mode(0o777))  # mkdtemp folders are private; the benchmark should not be
    try:
        save_checkpoint(tmp / MODEL_FILE, model, record["arch"], data_spec.name, config=record.get("config"))
        (tmp / MODEL_FILE).chmod(creation_mode(0o666))
        probe = normalize(images[:8], data_spec.mean, data_spec.std)
        exported = export_onnx(model, data_spec.shape, tmp / params["onnx"], opset=opset, check_inputs=probe)
        params["onnx_sha256"] = sha256_file(tmp / params["onnx"])
        selection = select_samples(
            model, images, labels, data_spec, eps, n, seed, filter_pgd, skip_certified, start, end
        )
        entries = _write_properties(tmp, params, images, labels, selection)
        _write_docs(tmp, params, selection, out_dir)
        write_manifest(tmp)
        commit(tmp, out_dir)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            raise output_error_of(err, out_dir) from err
        raise
    logger.info("wrote %d instances to %s", len(entries), out_dir)
    return _info(out_dir, params, entries, selection, exported.max_abs_diff)


def regenerate_properties(bench_dir, seed: int, data_dir=None) -> BenchmarkInfo:
    """Redraw the samples of an exported benchmark for ``seed`` (what generate_properties.py runs).

    Rewrites ``vnnlib/``, ``1.0/``, ``2.0/``, the ``instances.csv`` files, ``metadata.json``,
    ``benchmark.json`` and ``README.md``; the network is unchanged.

    Raises:
        ConfigError: Not a benchmark folder.
    """
    from adcert_plugin.data import get_data_spec, load_split

    bench_dir = Path(bench_dir).resolve()
    try:
        params = json.loads((bench_dir / BENCHMARK_JSON).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read {bench_dir / BENCHMARK_JSON}: {err}") from err
    params["seed"] = int(seed)
    params["skip_certified"] = skip_method(params.get("skip_certified"))  # absent in older benchmark.json
    params["onnx_sha256"] = sha256_file(bench_dir / params["onnx"])  # likewise
    data_spec = get_data_spec(params["dataset"])
    model, _ = load_model(bench_dir / params["model"])
    images, labels = load_split(data_spec.name, "test", data_dir)
    selection = select_samples(
        model,
        images,
        labels,
        data_spec,
        params["eps"],
        params["n"],
        seed,
        params["filter_pgd"],
        params["skip_certified"],
        params.get("start"),
        params.get("end"),
    )
    entries = _write_properties(bench_dir, params, images, labels, selection)
    _write_docs(bench_dir, params, selection, bench_dir)
    write_manifest(bench_dir, keep=read_manifest(bench_dir))
    return _info(bench_dir, params, entries, selection, float("nan"))

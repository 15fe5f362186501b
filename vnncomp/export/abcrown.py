"""alpha-beta-CROWN configuration for an exported benchmark (formats.md §2.5).

Writes ``abcrown_gpu.yaml`` and ``abcrown_cpu.yaml`` (csv mode over ``instances.csv``;
``root_path`` absolute) and ``run_abcrown.sh``, which runs either the whole csv or each
instance in VNN-COMP single_vnnlib mode with ``--save_adv_example``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from adcert_plugin.errors import ConfigError

from .instances import INSTANCES_CSV

logger = logging.getLogger(__name__)

RESULTS_DIR = "results/abcrown"
DEVICES = {"gpu": ("cuda", 512), "cpu": ("cpu", 64)}

_RUN_SCRIPT = """#!/usr/bin/env bash
# Run alpha-beta-CROWN on this benchmark (written by adcert-export).
#
#   ABCROWN_DIR=/path/to/alpha-beta-CROWN ./run_abcrown.sh [gpu|cpu] [single|csv]
#
# single (default): one abcrown.py call per instances.csv row, VNN-COMP style:
#   python abcrown.py --config abcrown_<dev>.yaml --onnx_path ONNX --vnnlib_path VNNLIB \\
#       --results_file results/abcrown/<instance>.txt --timeout T --save_adv_example \\
#       --cex_path results/abcrown/<instance>.cex.txt   (default: ./test_cex.txt in complete_verifier/)
#   Each results file holds one word (unsat/sat/timeout), then the counterexample if sat.
# csv: one call over the whole csv (root_path in the YAML is absolute: re-export if you move
#   this folder); the results file results/abcrown/results_<dev>.pkl is a pickle.
# Read either with: adcert-verify ... or vnncomp.results.read_results.
set -euo pipefail
BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEVICE="${1:-gpu}"
MODE="${2:-single}"
: "${ABCROWN_DIR:?set ABCROWN_DIR to an alpha-beta-CROWN checkout (it holds complete_verifier/abcrown.py)}"
CONFIG="$BENCH/abcrown_${DEVICE}.yaml"
mkdir -p "$BENCH/__RESULTS__"
cd "$ABCROWN_DIR/complete_verifier"
if [ "$MODE" = "csv" ]; then
  python abcrown.py --config "$CONFIG"
  exit 0
fi
while IFS=, read -r onnx vnnlib timeout; do
  [ -z "$onnx" ] && continue
  name="$(basename "$vnnlib" .vnnlib)"
  python abcrown.py --config "$CONFIG" --onnx_path "$BENCH/$onnx" --vnnlib_path "$BENCH/$vnnlib" \\
    --results_file "$BENCH/__RESULTS__/$name.txt" --timeout "$timeout" --save_adv_example \\
    --cex_path "$BENCH/__RESULTS__/$name.cex.txt" < /dev/null
done < "$BENCH/__CSV__"
"""


# abCROWN's attack before BaB (after CROWN, before alpha-CROWN: ``pgd_order: middle``), by name.
# ``pgd``: plain PGD, 30 restarts (abCROWN's default), cheap. ``diversed``: diversified outputs
# (Tashiro et al.) and 100 restarts: on the quickstart student it finds the counterexamples of all 6
# properties the plain attack missed and BaB then timed out on (benchmarks/results/
# complete_throughput_cpu.txt), but it does not keep to the timeout: on an MNIST ε 0.3 network it
# spent 24 s per property before a 10 s limit, so it is an option, not the default.
ATTACKS = {
    "pgd": {"pgd_order": "middle", "pgd_restarts": 30},
    "diversed": {"pgd_order": "middle", "pgd_restarts": 100, "attack_mode": "diversed_PGD"},
}


def abcrown_config(root_path: str | Path, device: str, batch_size: int, timeout: float, attack: str = "pgd") -> dict:
    """The §2.5 YAML as a dict, for csv mode over ``root_path/instances.csv``.

    Args:
        root_path: Absolute benchmark folder (must be writable: abCROWN caches next to files).
        device: ``cuda`` or ``cpu``.
        batch_size: ``solver.batch_size`` (lower it on out-of-memory).
        timeout: Fallback ``bab.timeout``; the csv column wins.
        attack: a name of :data:`ATTACKS`.
    """
    if attack not in ATTACKS:
        raise ConfigError(f"abCROWN attack {attack!r}: choose one of {', '.join(ATTACKS)}")
    root = Path(root_path).resolve()
    short = "gpu" if device == "cuda" else "cpu"
    return {
        "general": {
            "device": device,
            "root_path": str(root),
            "csv_name": INSTANCES_CSV,
            "results_file": str(root / RESULTS_DIR / f"results_{short}.pkl"),
            "enable_incomplete_verification": True,
            "complete_verifier": "bab",
        },
        "model": {"onnx_optimization_flags": []},  # BN is folded before export
        "solver": {
            "batch_size": int(batch_size),
            "alpha-crown": {"iteration": 100, "lr_alpha": 0.1},
            "beta-crown": {"iteration": 20, "lr_alpha": 0.01, "lr_beta": 0.05},
        },
        "bab": {"timeout": float(timeout), "branching": {"method": "kfsb", "candidates": 3, "reduceop": "max"}},
        "attack": dict(ATTACKS[attack]),
    }


def single_instance_args(
    config: str | Path, onnx: str | Path, vnnlib: str | Path, results_file: str | Path, timeout: float
) -> list[str]:
    """``abcrown.py`` arguments for one instance in VNN-COMP single_vnnlib mode."""
    return [
        "--config",
        str(config),
        "--onnx_path",
        str(onnx),
        "--vnnlib_path",
        str(vnnlib),
        "--results_file",
        str(results_file),
        "--timeout",
        str(timeout),
        "--save_adv_example",
    ]


def write_abcrown_configs(
    bench_dir: str | Path,
    timeout: float,
    root_path: str | Path | None = None,
    gpu_batch_size: int = 512,
    cpu_batch_size: int = 64,
    attack: str = "pgd",
) -> list[Path]:
    """Write ``abcrown_gpu.yaml``, ``abcrown_cpu.yaml`` and ``run_abcrown.sh`` into ``bench_dir``.

    Args:
        bench_dir: Where to write (may be a temporary folder renamed later).
        timeout: Fallback per-instance timeout (``bab.timeout``).
        root_path: The benchmark's final absolute location (default: ``bench_dir``).
        gpu_batch_size: ``solver.batch_size`` for the GPU config.
        cpu_batch_size: ``solver.batch_size`` for the CPU config.
        attack: abCROWN's attack before BaB, a name of :data:`ATTACKS`.

    Returns:
        The written paths.
    """
    bench_dir = Path(bench_dir)
    root = Path(root_path) if root_path is not None else bench_dir
    written = []
    for short, (device, _) in DEVICES.items():
        batch = gpu_batch_size if short == "gpu" else cpu_batch_size
        path = bench_dir / f"abcrown_{short}.yaml"
        header = (
            f"# alpha-beta-CROWN config ({short}); run from complete_verifier/:\n"
            f"#   python abcrown.py --config {root.resolve() / path.name}\n"
            "# one instance: add --onnx_path X --vnnlib_path Y --results_file out.txt "
            "--timeout T --save_adv_example\n"
        )
        body = yaml.safe_dump(abcrown_config(root, device, batch, timeout, attack), sort_keys=False)
        path.write_text(header + body)
        written.append(path)
    (bench_dir / RESULTS_DIR).mkdir(parents=True, exist_ok=True)
    script = bench_dir / "run_abcrown.sh"
    script.write_text(_RUN_SCRIPT.replace("__RESULTS__", RESULTS_DIR).replace("__CSV__", INSTANCES_CSV))
    script.chmod(0o755)
    written.append(script)
    logger.info("wrote abCROWN configs to %s", bench_dir)
    return written


NATIVE_LOADER = Path(__file__).resolve().with_name("abcrown_native.py")
NATIVE_INDICES = "abcrown_native_indices.txt"


def native_config(
    root_path: str | Path,
    device: str,
    batch_size: int,
    timeout: float,
    checkpoint: str | Path,
    data_dir: str | Path,
    eps: float,
    num_classes: int,
) -> dict:
    """abCROWN's YAML that loads the checkpoint and the test split itself (``abcrown_native.py``).

    The samples are the benchmark's (``abcrown_native_indices.txt``, test-set indices); drop
    ``data.data_idx_file`` to run every test image, as CTBench does.
    """
    root = Path(root_path).resolve()
    short = "gpu" if device == "cuda" else "cpu"
    base = abcrown_config(root, device, batch_size, timeout)
    general = {k: v for k, v in base["general"].items() if k != "csv_name"}
    general["results_file"] = str(root / RESULTS_DIR / f"native_{short}.pkl")
    loader, ckpt = str(NATIVE_LOADER), str(Path(checkpoint).resolve())
    return {
        **base,
        "general": general,
        "model": {"name": f'Customized("{loader}", "model", checkpoint="{ckpt}")'},
        "data": {
            "dataset": f'Customized("{loader}", "data", checkpoint="{ckpt}", '
            f'data_dir="{Path(data_dir).resolve()}", eps={float(eps)!r})',
            "data_idx_file": str(root / NATIVE_INDICES),
            "num_outputs": int(num_classes),
            "mean": 0.0,
            "std": 1.0,
        },  # the loader normalises; abCROWN must not again
        "specification": {"norm": float("inf"), "epsilon": float(eps)},
    }


def write_native_configs(
    bench_dir: str | Path,
    indices,
    timeout: float,
    checkpoint: str | Path,
    data_dir: str | Path,
    eps: float,
    num_classes: int,
) -> list[Path]:
    """``abcrown_native_{gpu,cpu}.yaml`` and the index list beside them (``adcert-export --abcrown-native``)."""
    bench_dir = Path(bench_dir)
    (bench_dir / NATIVE_INDICES).write_text("".join(f"{int(i)}\n" for i in indices))
    written = [bench_dir / NATIVE_INDICES]
    for short, (device, batch) in DEVICES.items():
        path = bench_dir / f"abcrown_native_{short}.yaml"
        header = (
            f"# alpha-beta-CROWN loads adcert's network and test split itself ({short}); from complete_verifier/:\n"
            f"#   python abcrown.py --config {path.resolve()}\n"
            "# the samples: data.data_idx_file (the benchmark's); remove it to run the whole test set\n"
        )
        config = native_config(bench_dir, device, batch, timeout, checkpoint, data_dir, eps, num_classes)
        path.write_text(header + yaml.safe_dump(config, sort_keys=False))
        written.append(path)
    (bench_dir / RESULTS_DIR).mkdir(parents=True, exist_ok=True)
    return written

"""Training-step cost of every loss on CNN7: time and peak memory, as ratios.

    python benchmarks/train_step_cost.py                      # MNIST and CIFAR shapes, batch 128
    python benchmarks/train_step_cost.py --shapes mnist --losses ibp mtl-ibp ad-cert
    python benchmarks/train_step_cost.py --losses pgd --repeats 40   # PGD-1 against plain CE only

Memory: each (shape, loss) runs one step in a fresh subprocess, so its peak is its own: on a
GPU ``torch.cuda.max_memory_allocated``; on the CPU the resident-set growth during that step
plus the bytes of parameters, gradients and Adam moments (what a GPU's allocator also counts),
after the interval pass's compiled kernels were built (``bounds/fused.py``: once per process).
Time: all losses of a shape live in one process and are stepped round-robin (--repeats rounds
after a warm-up), so load drifting on a shared machine hits them alike. In a round each loss
runs --steps-per-turn consecutive steps and the last is timed: training repeats one loss step
after step, and the first step after another loss's (often much larger) memory footprint pays
the allocator for it. A step is forward, backward, clipping and Adam. Ratios are to a plain clean
cross-entropy step of the same network, to ``ibp`` and to ``mtl-ibp``; each is the median over
rounds of the ratio within a round (paired, so a slow round slows both sides), and the plain
ratio's interquartile range shows how much the machine's noise moves it.

Reference (methods' own code with upstream auto_LiRPA, 2-core CPU, CNN7, batch 128, as a
multiple of a plain CE step): IBP 4.2× (MNIST) / 4.2× (CIFAR), MTL-IBP 5.4× / 6.0×,
PGD-1 training 1.6×; peak memory of the bound losses 3.5× plain training.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
from pathlib import Path

from timing import paired_ratio, round_robin

REFERENCE = {"mnist": {"ibp": 4.2, "mtl-ibp": 5.4, "pgd": 1.6}, "cifar": {"ibp": 4.2, "mtl-ibp": 6.0, "pgd": 1.6}}
PLAIN = "plain-ce"


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _reset_peak_rss() -> None:
    """Reset the kernel's resident-set high-water mark (Linux ≥ 4.0), so VmHWM covers one step."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure_memory(shape: str, loss_name: str, batch: int, device: str) -> dict:
    """Run in a subprocess: the peak memory of one step of ``loss_name``."""
    import torch

    step, params = _steps(shape, [loss_name], batch, device)[loss_name]
    state_bytes = sum(p.numel() * p.element_size() for p in params) * 4  # weights, grads, Adam m and v
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        from adcert_plugin.bounds import fused

        fused.available()  # compile the interval kernels first: the process pays that once (~150 MB), not each step
        before = _rss_bytes()
        _reset_peak_rss()
        step()
        peak = _peak_rss_bytes() - before + state_bytes
    return {"shape": shape, "loss": loss_name, "peak_bytes": peak}


def _steps(shape: str, names: list[str], batch: int, device: str) -> dict:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from loss_step_time import SHAPES, make_step

    from adcert_plugin.losses.teacher import Teacher
    from adcert_plugin.models import create_model

    spec, eps = SHAPES[shape]
    torch.manual_seed(1)
    x, y = torch.rand(batch, *spec.shape), torch.randint(0, spec.num_classes, (batch,))
    teacher = Teacher(create_model("cnn7", spec.shape, spec.num_classes))
    return {
        name: make_step(None if name == PLAIN else name, spec, eps, x, y, teacher, device=device, return_params=True)
        for name in names
    }


def measure_times(
    shape: str, names: list[str], batch: int, repeats: int, device: str, steps_per_turn: int = 2
) -> dict[str, list[float]]:
    """Seconds per step of each loss, one per round (the last of its turn), stepped round-robin."""
    import torch

    steps = {name: step for name, (step, _) in _steps(shape, names, batch, device).items()}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return round_robin(steps, repeats, steps_per_turn, sync)


def run_memory(shape, loss_name, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", shape, loss_name, "--batch", str(args.batch), "--device", args.device]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{shape}/{loss_name} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_ratios(times: dict[str, list[float]], name: str) -> dict:
    """The paired time ratios of ``name`` to plain CE (with quartiles), ibp and mtl-ibp."""
    median, q1, q3 = paired_ratio(times, name, PLAIN)
    out = {"x_plain": median, "x_plain_q1": q1, "x_plain_q3": q3}
    for base, key in (("ibp", "x_ibp"), ("mtl-ibp", "x_mtl_ibp")):
        out[key] = paired_ratio(times, name, base)[0] if base in times else None
    return out


def table(rows: list[dict], shape: str) -> str:
    by_loss = {r["loss"]: r for r in rows if r["shape"] == shape}
    plain = by_loss.get(PLAIN)
    rounds = len(plain["round_seconds"]) if plain else 0
    title = (
        f"CNN7, {shape} shapes, batch {plain['batch'] if plain else ''}, {rounds} round-robin rounds "
        f"({plain['steps_per_turn'] if plain else ''} steps per turn, the last timed): "
        "median s/step; time ratios are medians of per-round ratios (25th–75th percentile)"
    )
    lines = [
        title,
        "| loss | s/step | × plain CE | × ibp | × mtl-ibp | peak MB | mem × plain | reference × plain |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in by_loss.items():
        fmt = lambda v: "–" if v is None else f"{v:.2f}"
        memory = f"{r['peak_bytes'] / plain['peak_bytes']:.2f}" if plain else "–"
        spread = f"{r['x_plain_q1']:.2f}–{r['x_plain_q3']:.2f}"
        lines.append(
            f"| {name} | {r['seconds']:.3f} | {r['x_plain']:.2f} ({spread}) "
            f"| {fmt(r['x_ibp'])} | {fmt(r['x_mtl_ibp'])} | {r['peak_bytes'] / 2**20:.0f} | {memory} | "
            f"{REFERENCE[shape].get(name, '')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", default=["mnist", "cifar"], choices=["mnist", "cifar"])
    parser.add_argument("--losses", nargs="*", default=None, help="default: every registered loss")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="round-robin rounds")
    parser.add_argument(
        "--steps-per-turn", type=int, default=2, help="consecutive steps of a loss per round; the last is timed"
    )
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw rows here")
    parser.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave glibc's thresholds as they are "
        "(train() raises them on the CPU: adcert_plugin/training/allocator.py), for a before/after",
    )
    parser.add_argument("--worker", nargs=2, metavar=("SHAPE", "LOSS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.system_malloc:
        os.environ["ADCERT_MALLOC"] = "system"  # the memory workers inherit it
    if args.device == "cpu":  # as train() does: every step timed here, the plain one included
        from adcert_plugin.training.allocator import reuse_freed_memory

        malloc = "reused" if reuse_freed_memory() else "system"
    else:
        malloc = None
    if args.worker:
        print(json.dumps(measure_memory(*args.worker, args.batch, args.device)))
        return
    import torch

    from adcert_plugin.losses import list_losses

    # Every loss by default; with --losses only those (and plain CE), so e.g. `--losses pgd` can
    # afford many more rounds: the × ibp / × mtl-ibp columns then show "–".
    chosen = args.losses or ["ibp", "mtl-ibp"] + [n for n in list_losses() if n not in ("ibp", "mtl-ibp")]
    names = [PLAIN] + [n for n in chosen if n != PLAIN]
    rows = []
    for shape in args.shapes:
        times = measure_times(shape, names, args.batch, args.repeats, args.device, args.steps_per_turn)
        for name in names:
            row = {
                **run_memory(shape, name, args),
                "seconds": statistics.median(times[name]),
                "round_seconds": times[name],
                **time_ratios(times, name),
                "batch": args.batch,
                "steps_per_turn": args.steps_per_turn,
                "threads": torch.get_num_threads(),
                "device": args.device,
                "malloc": malloc,
            }
            rows.append(row)
            print(
                f"  {shape:5s} {name:10s} {row['seconds']:.3f} s  {row['peak_bytes'] / 2**20:.0f} MB",
                file=sys.stderr,
                flush=True,
            )
    print(
        f"{platform.processor() or platform.machine()}, device {args.device}, "
        f"{rows[0]['threads']} threads" + (f", freed memory {malloc} (allocator.py)" if malloc else "")
    )
    for shape in args.shapes:
        print(table(rows, shape))
        print()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

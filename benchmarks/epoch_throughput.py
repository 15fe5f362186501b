"""Throughput of one training epoch of every method at the ``paper`` preset's MNIST setting.

    python benchmarks/epoch_throughput.py --device cuda                 # one epoch (235 steps) each, a GPU
    python benchmarks/epoch_throughput.py --device cpu --steps 2 --batch 16   # the path, in seconds

The GPU check of issue 14: CNN7, batch 256 (the paper preset), ε = 0.1, the 1-step training
attack; each loss runs --steps optimizer steps (default one MNIST epoch, 60000 / 256) on one
fixed random batch already on the device, so the number is the step's compute, not the data
loader's. Reported per loss: seconds per step, images per second, the time as a multiple of a
plain cross-entropy step, and the peak memory of its steps (``torch.cuda.max_memory_allocated``;
on the CPU the resident-set high-water mark of the process, which only grows). Losses run one
after another, not round-robin: a GPU's timing drifts far less than a shared CPU's, and an epoch
of one loss is what a user runs. Timed with ``torch.cuda.synchronize`` around each loss.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

PLAIN = "plain-ce"
DEFAULT_LOSSES = ("pgd", "ibp", "mtl-ibp", "cc-ibp", "ad-cert", "cc-dist")
MNIST_TRAIN = 60000


def measure(names: list[str], batch: int, steps: int, device: str) -> list[dict]:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from loss_step_time import SHAPES, make_step

    from adcert_plugin.losses.teacher import Teacher
    from adcert_plugin.models import create_model

    spec, eps = SHAPES["mnist"]
    torch.manual_seed(1)
    x, y = torch.rand(batch, *spec.shape), torch.randint(0, spec.num_classes, (batch,))
    teacher = Teacher(create_model("cnn7", spec.shape, spec.num_classes))
    cuda = device == "cuda"
    rows = []
    for name in names:
        step = make_step(None if name == PLAIN else name, spec, eps, x, y, teacher, device=device)
        step()  # warm-up: kernels chosen, allocator filled
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / steps
        peak = torch.cuda.max_memory_allocated() if cuda else _peak_rss_bytes()
        rows.append(
            {
                "loss": name,
                "steps": steps,
                "batch": batch,
                "seconds_per_step": seconds,
                "images_per_s": batch / seconds,
                "peak_bytes": peak,
                "device": device,
            }
        )
        print(f"  {name:10s} {seconds:.4f} s/step  {batch / seconds:8.0f} images/s", file=sys.stderr, flush=True)
        del step
        if cuda:
            torch.cuda.empty_cache()
    plain = next(r["seconds_per_step"] for r in rows if r["loss"] == PLAIN)
    for r in rows:
        r["x_plain"] = r["seconds_per_step"] / plain
    return rows


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def table(rows: list[dict], device_name: str) -> str:
    first = rows[0]
    lines = [
        f"CNN7, MNIST shapes, batch {first['batch']}, {first['steps']} steps per loss on {device_name}: "
        "seconds per step, images per second, × a plain CE step, peak memory",
        "| loss | s/step | images/s | × plain CE | peak MiB |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['loss']} | {r['seconds_per_step']:.4f} | {r['images_per_s']:.0f} | {r['x_plain']:.2f} | "
        f"{r['peak_bytes'] / 2**20:.0f} |"
        for r in rows
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--losses", nargs="*", default=list(DEFAULT_LOSSES))
    parser.add_argument("--batch", type=int, default=256, help="the paper preset's MNIST batch")
    parser.add_argument("--steps", type=int, default=None, help="steps per loss [default: one epoch]")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no GPU here; pass --device cpu")
    if device == "cpu":
        from adcert_plugin.training.allocator import reuse_freed_memory

        reuse_freed_memory()  # as train() does on the CPU
    steps = args.steps or -(-MNIST_TRAIN // args.batch)
    rows = measure([PLAIN] + [n for n in args.losses if n != PLAIN], args.batch, steps, device)
    name = torch.cuda.get_device_name() if device == "cuda" else (platform.processor() or platform.machine())
    print(f"torch {torch.__version__}, {name}")
    print(table(rows, name))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

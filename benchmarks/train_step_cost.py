"""Training-step cost of every loss on CNN7: time and peak memory, as ratios.

    python benchmarks/train_step_cost.py                      # MNIST and CIFAR shapes, batch 128
    python benchmarks/train_step_cost.py --shapes mnist --losses ibp mtl-ibp ad-cert

Each (shape, loss) runs in a fresh subprocess so its peak memory is its own. Time is the
median of --repeats optimizer steps after one warm-up step (forward, backward, clipping,
Adam). Memory is the peak of one step: on a GPU ``torch.cuda.max_memory_allocated``; on the
CPU the resident-set growth during the first step plus the bytes of parameters, gradients
and Adam moments (what a GPU's allocator would also count). Ratios are to a plain clean
cross-entropy step of the same network, to ``ibp`` and to ``mtl-ibp``.

Reference (methods' own code with upstream auto_LiRPA, 2-core CPU, CNN7, batch 128, as a
multiple of a plain CE step): IBP 4.2× (MNIST) / 4.2× (CIFAR), MTL-IBP 5.4× / 6.0×,
PGD-1 training 1.6×; peak memory of the bound losses 3.5× plain training.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REFERENCE = {"mnist": {"ibp": 4.2, "mtl-ibp": 5.4}, "cifar": {"ibp": 4.2, "mtl-ibp": 6.0}}
PLAIN = "plain-ce"


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def measure(shape: str, loss_name: str, batch: int, repeats: int, device: str) -> dict:
    """Run in the subprocess: one (shape, loss) measurement."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from loss_step_time import SHAPES, make_step

    from adcert_plugin.models import create_model
    from adcert_plugin.teacher import Teacher

    spec, eps = SHAPES[shape]
    torch.manual_seed(1)
    x, y = torch.rand(batch, *spec.shape), torch.randint(0, spec.num_classes, (batch,))
    teacher = Teacher(create_model("cnn7", spec.shape, spec.num_classes))
    step, params = make_step(None if loss_name == PLAIN else loss_name, spec, eps, x, y, teacher,
                             device=device, return_params=True)
    state_bytes = sum(p.numel() * p.element_size() for p in params) * 4  # weights, grads, Adam m and v
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        before = _rss_bytes()
        step()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before + state_bytes
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {"shape": shape, "loss": loss_name, "seconds": statistics.median(times), "peak_bytes": peak,
            "threads": torch.get_num_threads(), "device": device}


def run_one(shape, loss_name, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", shape, loss_name, "--batch", str(args.batch),
           "--repeats", str(args.repeats), "--device", args.device]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{shape}/{loss_name} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict], shape: str) -> str:
    by_loss = {r["loss"]: r for r in rows if r["shape"] == shape}
    plain, ibp, mtl = (by_loss.get(n) for n in (PLAIN, "ibp", "mtl-ibp"))
    lines = [f"CNN7, {shape} shapes, batch {plain and plain.get('batch', '')}".rstrip(),
             "| loss | s/step | × plain CE | × ibp | × mtl-ibp | peak MB | mem × plain | reference × plain |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in by_loss.items():
        ratio = lambda base, key="seconds": f"{r[key] / base[key]:.2f}" if base else "–"  # noqa: E731
        ref = REFERENCE[shape].get(name, "")
        lines.append(f"| {name} | {r['seconds']:.3f} | {ratio(plain)} | {ratio(ibp)} | {ratio(mtl)} | "
                     f"{r['peak_bytes'] / 2**20:.0f} | {ratio(plain, 'peak_bytes')} | {ref} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", default=["mnist", "cifar"], choices=["mnist", "cifar"])
    parser.add_argument("--losses", nargs="*", default=None, help="default: every registered loss")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw rows here")
    parser.add_argument("--worker", nargs=2, metavar=("SHAPE", "LOSS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.worker:
        print(json.dumps(measure(*args.worker, args.batch, args.repeats, args.device)))
        return
    from adcert_plugin.losses import list_losses

    names = [PLAIN, "ibp", "mtl-ibp"] + [n for n in (args.losses or list_losses()) if n not in ("ibp", "mtl-ibp")]
    rows = []
    for shape in args.shapes:
        for name in names:
            row = run_one(shape, name, args)
            row["batch"] = args.batch
            rows.append(row)
            print(f"  {shape:5s} {name:10s} {row['seconds']:.3f} s  {row['peak_bytes'] / 2**20:.0f} MB",
                  file=sys.stderr, flush=True)
    print(f"{platform.processor() or platform.machine()}, device {args.device}, "
          f"{rows[0]['threads']} threads")
    for shape in args.shapes:
        print(table(rows, shape))
        print()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

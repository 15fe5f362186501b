"""Training step with the CPU convolutions NCHW or channels-last, paired: is ``layout.py``'s rule right here?

    python benchmarks/layout_cost.py                                  # small-cnn, batch 100, one thread
    python benchmarks/layout_cost.py --model cnn7 --batch 128 --losses ibp pgd --repeats 9

``layout.prefers_channels_last`` decides the memory format of the interval pass and of the
attack's network for every model on the CPU. This steps each loss twice per round, once with
that rule answering NCHW and once channels-last, and reports the median of the per-round ratios
(quartiles beside it). Run it on a new kind of CPU before trusting the rule there.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loss_step_time import SHAPES, make_step
from timing import paired_ratio, round_robin

from adcert_plugin.attacks import folding
from adcert_plugin.bounds import interval
from adcert_plugin.losses.teacher import Teacher
from adcert_plugin.models import create_model
from adcert_plugin.training.allocator import reuse_freed_memory


def in_layout(step, channels_last: bool):
    """``step`` with the layout rule answering ``channels_last`` for its duration."""

    def run():
        saved = interval._prefers_channels_last, folding._prefers_channels_last
        interval._prefers_channels_last = folding._prefers_channels_last = lambda model: channels_last
        try:
            step()
        finally:
            interval._prefers_channels_last, folding._prefers_channels_last = saved

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small-cnn", choices=["small-cnn", "cnn7"])
    parser.add_argument("--shape", default="mnist", choices=sorted(SHAPES))
    parser.add_argument("--losses", nargs="*", default=["ibp", "mtl-ibp", "cc-ibp", "pgd"])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=30, help="round-robin rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the studies train with 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    reuse_freed_memory()
    spec, eps = SHAPES[args.shape]
    torch.manual_seed(1)
    x, y = torch.rand(args.batch, *spec.shape), torch.randint(0, spec.num_classes, (args.batch,))
    teacher = Teacher(create_model(args.model, spec.shape, spec.num_classes))
    print(
        f"{args.model}, {args.shape} shapes, batch {args.batch}, {args.threads} thread(s), {args.repeats} rounds; "
        "ms per training step (median), channels-last ÷ NCHW (median of per-round ratios, 25th–75th percentile)"
    )
    print("| loss | NCHW ms | channels-last ms | ratio |")
    print("|---|---|---|---|")
    for loss in args.losses:
        steps = {
            f"{loss} {name}": in_layout(make_step(loss, spec, eps, x, y, teacher, model=args.model), cl)
            for name, cl in (("nchw", False), ("cl", True))
        }
        times = round_robin(steps, args.repeats)
        ratio, q1, q3 = paired_ratio(times, f"{loss} cl", f"{loss} nchw")
        nchw, cl = (1e3 * statistics.median(times[f"{loss} {n}"]) for n in ("nchw", "cl"))
        print(f"| {loss} | {nchw:.1f} | {cl:.1f} | {ratio:.2f} ({q1:.2f}–{q3:.2f}) |", flush=True)


if __name__ == "__main__":
    main()

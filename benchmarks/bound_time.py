"""Time of one bound computation on CNN7 (IBP forward+backward, CROWN-IBP, CROWN).

    python benchmarks/bound_time.py --shape mnist --batch 128

Prints a table: method, path (native interval code or auto_LiRPA), seconds (median of
--repeats round-robin runs after one warm-up), and for reference a plain forward+backward.
CROWN runs once, on --crown-batch samples: on a CPU it costs far more than the others.

Memory: auto_LiRPA keeps linear bounds per neuron and per sample, so the peak grows with the
batch. At the defaults (--batch 128, CROWN on 128) it needs 10-12 GB (issue 36). Measured
peak RSS, MNIST shapes, CROWN skipped: 1.8 GB at --batch 16, 2.5 GB at --batch 32 (CROWN-IBP
dominates: about 1.1 GB + 43 MB per sample).
On a smaller machine: --batch 16 --crown-batch 4, or --skip CROWN.
"""

from __future__ import annotations

import argparse
import time

import torch
from timing import medians, round_robin

from adcert_plugin.bounds import InputBox, wrap_model
from adcert_plugin.models import create_model, ibp_init

SHAPES = {
    "mnist": ((1, 28, 28), (0.0,), (1.0,), 0.1),
    "cifar": ((3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), 8 / 255),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="mnist")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--crown-batch", type=int, default=None, help="batch for CROWN (default: --batch)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip", nargs="*", default=[], help="methods to skip, e.g. CROWN")
    args = parser.parse_args()
    print(
        f"note: CROWN-IBP on {args.batch} and CROWN on {args.crown_batch or args.batch} samples of CNN7 need "
        "about 10-12 GB at --batch 128 (less with a smaller --batch / --crown-batch, see the docstring)"
    )
    shape, mean, std, eps = SHAPES[args.shape]
    torch.manual_seed(0)
    model = ibp_init(create_model("cnn7", shape, 10)).train()
    x, y = torch.rand(args.batch, *shape), torch.randint(0, 10, (args.batch,))
    box = InputBox.from_pixels(x, eps, mean, std)
    native, lirpa = wrap_model(model, shape), wrap_model(model, shape, use_native_ibp=False)

    def backward_of(bounded, method, b=box, yy=y):
        def run():
            model.zero_grad(set_to_none=True)
            lower = bounded.margin_lower(b, yy, method)
            torch.logsumexp(torch.cat([torch.zeros(len(yy), 1), -lower], 1), 1).mean().backward()

        return run

    def plain():
        model.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(box.x_norm), y).backward()

    fns = {
        ("plain CE forward+backward", "torch", args.batch): plain,
        ("IBP forward+backward", "native", args.batch): backward_of(native, "IBP"),
        ("IBP forward+backward", "auto_LiRPA", args.batch): backward_of(lirpa, "IBP"),
    }
    if "CROWN-IBP" not in args.skip:
        fns[("CROWN-IBP forward+backward", "auto_LiRPA", args.batch)] = backward_of(lirpa, "CROWN-IBP")
    seconds = medians(round_robin(fns, args.repeats))
    rows = [(*key, seconds[key]) for key in fns]
    if "CROWN" not in args.skip:
        n = args.crown_batch or args.batch
        small = InputBox(box.x_norm[:n], box.lower_norm[:n], box.upper_norm[:n])
        model.eval()
        with torch.no_grad():
            start = time.perf_counter()
            lirpa.margin_lower(small, y[:n], "CROWN")  # one run: CROWN on CNN7 is minutes per sample on a CPU
            rows.append(("CROWN (eval, no grad, 1 run)", "auto_LiRPA", n, time.perf_counter() - start))
    print(f"CNN7 on {args.shape} shapes, {torch.get_num_threads()} threads")
    print(f"{'computation':30s} {'path':11s} {'batch':>5s} {'seconds':>9s} {'x plain':>8s}")
    for name, path, batch, seconds in rows:
        print(f"{name:30s} {path:11s} {batch:5d} {seconds:9.3f} {seconds / rows[0][3]:8.1f}")


if __name__ == "__main__":
    main()

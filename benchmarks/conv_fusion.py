"""Does fusing the interval pass's convolutions pay? Forward + backward per CNN7 conv layer.

    python benchmarks/conv_fusion.py                    # MNIST and CIFAR shapes, batch 128, 9 rounds
    python benchmarks/conv_fusion.py --shapes mnist --repeats 15 --threads 2

A train-mode IBP step sends three tensors through every convolution: the statistics batch s
(W·s, for BN's batch statistics), the centre c (W'·c, BN folded into W') and the radius r
(|W'|·r). ``interval.py`` runs them as three calls. Two fusions keep the arithmetic and make
fewer, larger calls:
- grouped: [c; r] stacked along channels, one grouped convolution (groups=2) with [W'; |W'|];
- batched: [s; c] stacked along the batch, one convolution of 2B with W (BN's scale then goes
  on the centre's output instead of into its weights).
The stacked inputs are built before the clock starts: the best case, as if the layer before had
written them stacked. Channels-last, as the pass runs on the CPU. Per round all variants run
round-robin; the ratio to ``separate`` is the median of per-round ratios (quartiles beside it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import medians, paired_ratio, round_robin

LAYERS = {  # CNN7's convolutions: (in, out, input side, stride)
    "mnist": [(64, 64, 28, 1), (64, 128, 28, 2), (128, 128, 14, 1)],
    "cifar": [(64, 64, 32, 1), (64, 128, 32, 2), (128, 128, 16, 1)],
}


def products(batch: int, cin: int, cout: int, side: int, stride: int) -> dict:
    """For one layer, each variant as a function returning (W·s, W'·c, |W'|·r) with autograd."""
    cl = torch.channels_last
    gen = torch.Generator().manual_seed(0)

    def leaf(t):
        return t.contiguous(memory_format=cl).requires_grad_(True)

    s, c, r = (torch.randn(batch, cin, side, side, generator=gen) for _ in range(3))
    w = torch.randn(cout, cin, 3, 3, generator=gen).requires_grad_(True)
    scale = torch.rand(cout, generator=gen) + 0.5
    conv = dict(stride=stride, padding=1)
    stacked_cr, stacked_sc = leaf(torch.cat([c, r], 1)), leaf(torch.cat([s, c]))
    s, c, r = leaf(s), leaf(c), leaf(r)

    def folded():
        return w * scale.view(-1, 1, 1, 1)

    def separate():
        return F.conv2d(s, w, **conv), F.conv2d(c, folded(), **conv), F.conv2d(r, folded().abs(), **conv)

    def grouped():
        both = F.conv2d(stacked_cr, torch.cat([folded(), folded().abs()]), groups=2, **conv)
        return F.conv2d(s, w, **conv), both[:, :cout], both[:, cout:]

    def batched():
        out = F.conv2d(stacked_sc, w, **conv)
        return out[:batch], out[batch:] * scale.view(1, -1, 1, 1), F.conv2d(r, folded().abs(), **conv)

    return {"separate": separate, "grouped": grouped, "batched": batched}


def variants(batch: int, cin: int, cout: int, side: int, stride: int) -> dict:
    """Closures for one layer: each is the forward and backward of the three products."""

    def step(fn):
        def run():
            outs = fn()
            torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])

        return run

    return {name: step(fn) for name, fn in products(batch, cin, cout, side, stride).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", default=["mnist", "cifar"], choices=sorted(LAYERS))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=9, help="round-robin rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (training runs use 1 on CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"CPU, {args.threads} torch thread(s), batch {args.batch}, channels-last, {args.repeats} rounds; "
        "ms per forward+backward of the three products (median), × separate (median of per-round ratios, "
        "25th–75th percentile)"
    )
    print("| shape | layer | separate ms | grouped ms | × separate | batched ms | × separate |")
    print("|---|---|---|---|---|---|---|")
    for shape in args.shapes:
        for cin, cout, side, stride in LAYERS[shape]:
            times = round_robin(variants(args.batch, cin, cout, side, stride), args.repeats)
            med = medians(times)
            cells = [f"{1e3 * med['separate']:.0f}"]
            for name in ("grouped", "batched"):
                ratio, q1, q3 = paired_ratio(times, name, "separate")
                cells += [f"{1e3 * med[name]:.0f}", f"{ratio:.2f} ({q1:.2f}–{q3:.2f})"]
            print(f"| {shape} | {cin}→{cout}, {side}×{side}, stride {stride} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

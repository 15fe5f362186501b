"""The interval ReLU's compiled kernels (``bounds/fused.py``) against its eager ops, paired.

    python benchmarks/fused_relu.py                          # per layer, then whole steps, 9 rounds
    python benchmarks/fused_relu.py --shapes mnist --losses ibp --repeats 15
    python benchmarks/fused_relu.py --model small-cnn --batch 100 --threads 1 --shapes mnist   # the studies' setting

Per layer: forward + backward of the interval ReLU on each of CNN7's ReLU shapes (batch 128,
channels-last, as the pass runs on the CPU), eager ops against the one-loop kernels. Per step: a
plain CE step and a training step of each loss with the kernels switched off and on (the same
model and batch), round-robin, so the ratio fused ÷ eager is paired within a round. The kernels
are compiled before the clock starts. Both forms compute the same numbers
(``tests/bounds/test_fused_kernels.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import medians, paired_ratio, round_robin

from adcert_plugin.bounds import fused, interval

RELU_SHAPES = {"mnist": [(64, 28), (128, 14)], "cifar": [(64, 32), (128, 16)]}  # (channels, side)


def _switched(fn, on: bool):
    """``fn`` run with the fused kernels on or off (off: as on a machine whose probe failed)."""

    def run():
        original = fused.available
        if not on:
            fused.available = lambda *dtype: False
        try:
            return fn()
        finally:
            fused.available = original

    return run


def relu_pair(batch: int, channels: int, side: int):
    gen = torch.Generator().manual_seed(0)
    shape = (batch, channels, side, side)
    inputs = [
        t.contiguous(memory_format=torch.channels_last).requires_grad_(True)
        for t in (torch.randn(shape, generator=gen), torch.rand(shape, generator=gen))
    ]
    grads = [torch.randn(shape, generator=gen).contiguous(memory_format=torch.channels_last) for _ in range(2)]

    def step():
        out = interval._IntervalReLU.apply(*inputs)
        torch.autograd.grad(out, inputs, grads)

    return {"eager": _switched(step, False), "fused": _switched(step, True)}


def step_trio(shape: str, loss: str, batch: int, model: str = "cnn7"):
    from loss_step_time import SHAPES, make_step

    from adcert_plugin.losses.teacher import Teacher
    from adcert_plugin.models import create_model

    spec, eps = SHAPES[shape]
    torch.manual_seed(1)
    x, y = torch.rand(batch, *spec.shape), torch.randint(0, spec.num_classes, (batch,))
    teacher = Teacher(create_model(model, spec.shape, spec.num_classes))
    plain, _ = make_step(None, spec, eps, x, y, teacher, device="cpu", return_params=True, model=model)
    step, _ = make_step(loss, spec, eps, x, y, teacher, device="cpu", return_params=True, model=model)
    return {"plain-ce": plain, "eager": _switched(step, False), "fused": _switched(step, True)}


def _row(label: str, times: dict) -> str:
    med = medians(times)
    ratio, q1, q3 = paired_ratio(times, "fused", "eager")
    plain = ""
    if "plain-ce" in times:
        plain = " | ".join(f"{paired_ratio(times, k, 'plain-ce')[0]:.2f}" for k in ("eager", "fused"))
        plain = f" | {plain}"
    return f"| {label} | {med['eager'] * 1e3:.1f} | {med['fused'] * 1e3:.1f} | {ratio:.3f} ({q1:.3f}–{q3:.3f}){plain} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", default=["mnist", "cifar"], choices=sorted(RELU_SHAPES))
    parser.add_argument("--losses", nargs="*", default=["ibp", "mtl-ibp"], help="whole steps to time ('' for none)")
    parser.add_argument(
        "--model",
        default="cnn7",
        choices=["cnn7", "small-cnn"],
        help="the network of the whole steps (the per-layer rows are CNN7's)",
    )
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from adcert_plugin.training.allocator import reuse_freed_memory

    reuse_freed_memory()  # as train() does
    if not fused.available():
        raise SystemExit("the fused kernels do not compile here (see bounds/fused.py); nothing to compare")
    print(
        f"{args.model}, {torch.get_num_threads()} threads, batch {args.batch}, {args.repeats} round-robin rounds; "
        "ms are medians, fused ÷ eager the median of per-round ratios (quartiles)"
    )
    if args.model == "cnn7":
        print("| interval ReLU, forward + backward | eager ms | fused ms | fused ÷ eager |")
        print("|---|---|---|---|")
    for shape in args.shapes if args.model == "cnn7" else []:
        for channels, side in RELU_SHAPES[shape]:
            times = round_robin(relu_pair(args.batch, channels, side), args.repeats)
            print(_row(f"{shape} {channels}×{side}×{side}", times), flush=True)
    losses = [loss for loss in args.losses if loss]
    if losses:
        print("\n| training step | eager ms | fused ms | fused ÷ eager | eager × plain CE | fused × plain CE |")
        print("|---|---|---|---|---|---|")
    for shape in args.shapes:
        for loss in losses:
            times = round_robin(step_trio(shape, loss, args.batch, args.model), args.repeats, steps_per_turn=2)
            print(_row(f"{shape} {loss}", times), flush=True)


if __name__ == "__main__":
    main()

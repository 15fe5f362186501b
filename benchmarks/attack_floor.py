"""The floor of the training attack: its kernels timed alone, against the attack as run and a plain step.

    python benchmarks/attack_floor.py --shapes mnist cifar --repeats 15

A PGD-1 training step is a plain step at x_adv plus one attack: the attack's network forward
and its gradient with respect to the input (``pgd_attack``: BN folded, channels-last on the
CPU, each wide conv + ReLU one oneDNN kernel). Whatever an exact implementation does, it runs
at least these kernels: per conv its forward and its input gradient, per linear layer the same,
a ReLU-mask pass per ReLU, and the flatten's copy when the activations are channels-last. Each
is timed alone here on tensors of the attack's shapes (warm, round-robin with the rest, median),
with its rate against a 2048² float32 matrix product (about the CPU's peak as torch reaches it).

Their sum is what the attack costs when nothing else runs, so ``1 + sum / plain step`` is the
PGD-1 ratio that no exact implementation of this attack goes under on this machine; the table
sets it beside the attack and the PGD-1 step as they run (``loss_step_time.make_step``).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from loss_step_time import SHAPES, make_step
from timing import paired_ratio, round_robin
from torch import nn

from adcert_plugin.attacks import AttackConfig, folding, pgd_attack
from adcert_plugin.bounds import InputBox
from adcert_plugin.losses.teacher import Teacher
from adcert_plugin.models import create_model, ibp_init

Kernel = tuple[Callable[[], object], float]  # (the closure, its GFLOP; 0 for a memory pass)


def kernels(model: nn.Sequential, in_shape: tuple[int, ...], batch: int) -> dict[str, Kernel]:
    """Every kernel the attack's network needs, by layer, on random tensors of its shapes and layout."""
    layout = torch.channels_last if folding._prefers_channels_last(model) else torch.contiguous_format
    fuse = layout == torch.channels_last and folding.wide_convolutions(model)
    shapes = _input_shapes(model, in_shape, batch)
    out: dict[str, Kernel] = {}
    children = list(model)
    for i, layer in enumerate(children):
        name = f"{i}:{type(layer).__name__}"
        if isinstance(layer, nn.Conv2d):
            relu_next = fuse and folding._fuses_relu(layer, _next_non_bn(children, i))
            out.update(_conv_kernels(name, layer, shapes[i], layout, relu_next))
        elif isinstance(layer, nn.Linear):
            out.update(_linear_kernels(name, layer, shapes[i]))
        elif isinstance(layer, nn.ReLU):
            act = torch.rand(shapes[i]) - 0.5
            act = act.contiguous(memory_format=layout) if act.dim() == 4 else act
            grad = torch.randn_like(act)
            out[f"{name} mask (backward)"] = (lambda g=grad, a=act: torch.ops.aten.threshold_backward(g, a, 0), 0.0)
        elif isinstance(layer, nn.Flatten) and layout == torch.channels_last:
            act = torch.randn(shapes[i]).contiguous(memory_format=layout)
            out[f"{name} copy"] = (lambda a=act: a.flatten(1), 0.0)
    return out


def _input_shapes(model: nn.Sequential, in_shape, batch) -> list[torch.Size]:
    shapes: list[torch.Size] = []
    x, was_training = torch.rand(batch, *in_shape), model.training
    with torch.no_grad():
        for layer in model.eval():
            shapes.append(x.shape)
            x = layer(x)
    model.train(was_training)
    return shapes


def _next_non_bn(children, i):
    after = children[i + 1 :]
    while after and isinstance(after[0], nn.modules.batchnorm._BatchNorm):
        after = after[1:]
    return after[0] if after else None


def _conv_kernels(name: str, conv: nn.Conv2d, shape, layout, relu: bool) -> dict[str, Kernel]:
    x = folding._in_layout(torch.randn(shape), layout)
    weight = conv.weight.detach().contiguous(memory_format=layout)
    bias = torch.zeros(conv.out_channels)
    args = (conv.stride, conv.padding, conv.dilation, conv.groups)
    y = F.conv2d(x, weight, bias, *args)
    grad = torch.randn_like(y)
    gflop = 2 * y.numel() * weight[0].numel() / 1e9
    forward = (
        (lambda: folding._fused_conv_relu(x, weight, bias, *args))
        if relu
        else (lambda: F.conv2d(x, weight, bias, *args))
    )
    return {
        f"{name} forward{' + ReLU' if relu else ''}": (forward, gflop),
        f"{name} input gradient": (lambda: folding._conv_input_grad(grad, x, weight, *args), gflop),
    }


def _linear_kernels(name: str, linear: nn.Linear, shape) -> dict[str, Kernel]:
    x, weight = torch.randn(shape), linear.weight.detach()
    grad = torch.randn(shape[0], linear.out_features)
    gflop = 2 * shape[0] * weight.numel() / 1e9
    return {
        f"{name} forward": (lambda: F.linear(x, weight, linear.bias.detach()), gflop),
        f"{name} input gradient": (lambda: grad @ weight, gflop),
    }


PEAK_GFLOP = 2 * 2048**3 / 1e9  # one 2048² matmul


def _peak() -> Callable[[], object]:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    return lambda: a @ b


def measure(shape: str, batch: int, repeats: int) -> tuple[dict[str, list[float]], dict[str, Kernel]]:
    spec, eps = SHAPES[shape]
    torch.manual_seed(1)
    x, y = torch.rand(batch, *spec.shape), torch.randint(0, spec.num_classes, (batch,))
    teacher = Teacher(create_model("cnn7", spec.shape, spec.num_classes))
    model = ibp_init(create_model("cnn7", spec.shape, spec.num_classes))
    box = InputBox.from_pixels(x, eps, spec.mean, spec.std)
    found = kernels(model, spec.shape, batch)
    steps = {
        "plain step": make_step(None, spec, eps, x, y, teacher),
        "PGD-1 step": make_step("pgd", spec, eps, x, y, teacher),
        "attack (pgd_attack)": lambda: pgd_attack(model, box, y, AttackConfig()),
        "2048² matmul": _peak(),
    }
    times = round_robin({**steps, **{name: fn for name, (fn, _) in found.items()}}, repeats)
    return times, found


def table(shape: str, times: dict[str, list[float]], found: dict[str, Kernel]) -> str:
    ms = {name: ms_of(times, name) for name in times}
    peak = PEAK_GFLOP / ms["2048² matmul"] * 1e3
    lines = [f"| {shape} | 2048² float32 matmul | {ms['2048² matmul']:.2f} | {peak:.0f} | 1.00 |"]
    for name, (_, gflop) in found.items():
        rate = gflop / ms[name] * 1e3
        lines.append(
            f"| {shape} | {name} | {ms[name]:.2f} | {rate:.0f} | {rate / peak:.2f} |"
            if gflop
            else f"| {shape} | {name} | {ms[name]:.2f} | – | – |"
        )
    rounds = len(times["plain step"])
    times = {**times, "kernels alone, sum": [sum(times[name][r] for name in found) for r in range(rounds)]}
    lines += [
        f"| {shape} | {label} | {ms_of(times, name):.1f} | | |"
        for label, name in (
            ("**kernels alone, sum**", "kernels alone, sum"),
            ("attack as run (pgd_attack)", "attack (pgd_attack)"),
            ("plain step", "plain step"),
            ("PGD-1 step", "PGD-1 step"),
        )
    ]
    lines += [
        f"| {shape} | {label} | {_ratio(times, name)} | | |"
        for label, name in (
            ("**PGD-1 floor: 1 + kernels alone / plain step**", "kernels alone, sum"),
            ("PGD-1 with the attack as run: 1 + attack / plain step", "attack (pgd_attack)"),
        )
    ]
    median, q1, q3 = paired_ratio(times, "PGD-1 step", "plain step")
    lines.append(f"| {shape} | PGD-1 step as run ÷ plain step | {median:.3f} ({q1:.3f}–{q3:.3f}) × | | |")
    return "\n".join(lines)


def ms_of(times: dict[str, list[float]], name: str) -> float:
    return statistics.median(times[name]) * 1e3


def _ratio(times: dict[str, list[float]], extra: str) -> str:
    """1 + times[extra] / plain step, paired per round: median (25th–75th percentile)."""
    median, q1, q3 = paired_ratio(times, extra, "plain step")
    return f"{1 + median:.3f} ({1 + q1:.3f}–{1 + q3:.3f}) ×"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", default=["mnist", "cifar"], choices=sorted(SHAPES))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=15, help="round-robin rounds; medians are shown")
    args = parser.parse_args()
    from adcert_plugin.training.allocator import reuse_freed_memory

    malloc = "reused" if reuse_freed_memory() else "system"  # as train() does on the CPU
    print(
        f"CNN7, batch {args.batch}, {torch.get_num_threads()} threads, {args.repeats} rounds, "
        f"freed memory {malloc}; medians in ms"
    )
    print("| shape | kernel | ms | GFLOP/s | × matmul rate |")
    print("|---|---|---|---|---|")
    for shape in args.shapes:
        print(table(shape, *measure(shape, args.batch, args.repeats)), flush=True)


if __name__ == "__main__":
    main()

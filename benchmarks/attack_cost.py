"""Cost of the training attack (PGD-1) on CNN7 against a plain training step, per forward variant.

    python benchmarks/attack_cost.py --shapes mnist cifar --repeats 9
    python benchmarks/attack_cost.py --model small-cnn --shapes mnist --batch 100 --steps 10 --repeats 15

The attack runs the student in eval mode. Variants: ``module`` (the model itself, BN as its
own pass), ``folded`` (BN folded into the convolutions, ``folding.folded_eval_forward``),
``folded+channels-last`` and ``folded+channels-last+fused`` (each conv + ReLU one oneDNN
kernel: what ``pgd_attack`` uses for wide convolutions on the CPU), then ``pgd_attack``'s own
network (its layout chosen by width) with a one-channel first conv's input gradient by
``convolution_backward`` (the path before ``folding._conv_input_grad``) and as it runs now. Each
round times one plain cross-entropy step (forward, backward, Adam) and one attack of each
variant; ratios are medians of per-round ratios to the plain step, and to the variant
above (what each change gains, paired within the round).
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F
from timing import paired_ratio, round_robin

from adcert_plugin.attacks import folded_eval_forward, folding
from adcert_plugin.attacks.pgd import AttackConfig, _pgd
from adcert_plugin.bounds import InputBox
from adcert_plugin.models import create_model, ibp_init

SHAPES = {"mnist": (1, 28, 28), "cifar": (3, 32, 32)}


def _setup(shape, batch, model_name="cnn7"):
    torch.manual_seed(0)
    model = ibp_init(create_model(model_name, shape, 10)).train()
    x, y = torch.rand(batch, *shape), torch.randint(0, 10, (batch,))
    with torch.no_grad():
        model(x)  # running statistics away from (0, 1)
    box = InputBox.from_pixels(x, 0.1, (0.0,) * shape[0], (1.0,) * shape[0])
    return model, box, y


def _variants(model, box, y, steps=1):
    params = list(model.parameters())
    opt = torch.optim.Adam(params, 5e-4)

    def plain():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(box.x_norm), y).backward()
        opt.step()

    cfg = AttackConfig(steps=steps, step_size=10.0 if steps == 1 else 0.25)

    def attack(make_forward):
        def run():
            model.eval()
            for p in params:
                p.requires_grad_(False)
            _pgd(make_forward(), box, y, cfg, None, None)
            for p in params:
                p.requires_grad_(True)
            model.train()

        return run

    return {
        "plain step": plain,
        "attack: module": attack(lambda: model),
        "attack: folded": attack(lambda: folded_eval_forward(model, channels_last=False)),
        "attack: folded+channels-last": attack(lambda: folded_eval_forward(model, True, fuse_relu=False)),
        "attack: folded+channels-last+fused": attack(lambda: folded_eval_forward(model, True, fuse_relu=True)),
        "attack: pgd_attack's, input gradient by convolution": _by_convolution(
            attack(lambda: folded_eval_forward(model))
        ),
        "attack: pgd_attack's": attack(lambda: folded_eval_forward(model)),
    }


def _by_convolution(run):
    """``run`` with the one-channel input gradient taken by convolution_backward, as before col2im."""

    def patched():
        chosen = folding._folds_input_grad
        folding._folds_input_grad = lambda weight, groups: False
        try:
            run()
        finally:
            folding._folds_input_grad = chosen

    return patched


def measure(shape, batch, repeats, model_name="cnn7", steps=1) -> dict[str, list[float]]:
    return round_robin(_variants(*_setup(SHAPES[shape], batch, model_name), steps=steps), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", default=["mnist", "cifar"], choices=sorted(SHAPES))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--model", default="cnn7", choices=["cnn7", "small-cnn"])
    parser.add_argument("--steps", type=int, default=1, help="PGD steps of the attack")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    print(f"{args.model}, batch {args.batch}, PGD-{args.steps}, {threads} threads, {args.repeats} rounds")
    print("| shape | variant | s | × plain step (25th–75th percentile) | × the variant above |")
    print("|---|---|---|---|---|")
    for shape in args.shapes:
        times = measure(shape, args.batch, args.repeats, args.model, args.steps)
        names = list(times)
        for i, name in enumerate(names):
            above = names[i - 1] if i >= 2 else None  # the first attack has no attack above it
            ratio, q1, q3 = paired_ratio(times, name, "plain step")
            step = "–" if above is None else "{:.3f} ({:.3f}–{:.3f})".format(*paired_ratio(times, name, above))
            print(
                f"| {shape} | {name} | {statistics.median(times[name]):.3f} | {ratio:.2f} ({q1:.2f}–{q3:.2f}) "
                f"| {step} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

"""Time of one training step (loss forward + backward + Adam step) for every registered loss, on CNN7.

    python benchmarks/loss_step_time.py --dataset-shape mnist --batch 128 --repeats 3

Prints a table: loss, seconds per step (median of --repeats after one warm-up step), and the
ratio to ``ibp``; a plain clean cross-entropy step is the first row. Random data of the chosen
shape, ε = 0.1 (MNIST) or 8/255 (CIFAR), the default 1-step η = 10 training attack. The
teacher of the distillation losses is a second CNN7. Losses are timed round-robin (one step
of each per repeat) so that load drifting on a shared machine affects them alike.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from timing import medians, round_robin

from adcert_plugin.attacks import AttackConfig
from adcert_plugin.bounds import wrap_model
from adcert_plugin.data import DataSpec
from adcert_plugin.losses import create_loss, list_losses
from adcert_plugin.losses.base import LossContext
from adcert_plugin.losses.teacher import Teacher
from adcert_plugin.models import create_model, ibp_init

SHAPES = {
    "mnist": (DataSpec("mnist", (1, 28, 28), 10, (0.0,), (1.0,)), 0.1),
    "cifar": (DataSpec("cifar10", (3, 32, 32), 10, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)), 8 / 255),
}


def make_step(
    name: str,
    spec: DataSpec,
    eps: float,
    x,
    y,
    teacher: Teacher,
    device: str = "cpu",
    return_params: bool = False,
    model: str = "cnn7",
):
    """A closure running one optimizer step of loss ``name`` (``None``: plain clean CE)."""
    torch.manual_seed(0)
    x, y = x.to(device), y.to(device)
    teacher.to(device)
    student = ibp_init(create_model(model, spec.shape, spec.num_classes)).to(device).train()
    loss = create_loss(name) if name else None
    if loss is not None:
        loss.prepare(student, teacher)
    params = list(student.parameters()) + ([] if loss is None else list(loss.modules.parameters()))
    opt = torch.optim.Adam(params, lr=5e-4)
    bounded = wrap_model(student, spec.shape)
    generator = torch.Generator(device=device).manual_seed(0)

    def step():
        opt.zero_grad(set_to_none=True)
        if loss is None:
            mean, std = (torch.tensor(v, device=x.device).view(1, -1, 1, 1) for v in (spec.mean, spec.std))
            x_norm = (x - mean) / std
            value = F.cross_entropy(student(x_norm), y)
        else:
            ctx = LossContext(
                student, bounded, x, y, eps, spec, attack=AttackConfig(), teacher=teacher, generator=generator
            )
            value = loss(ctx).loss
        value.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()

    return (step, params) if return_params else step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset-shape", choices=sorted(SHAPES), default="mnist")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--losses", nargs="*", default=None, help="subset of losses (default: all registered)")
    args = parser.parse_args()
    spec, eps = SHAPES[args.dataset_shape]
    names = args.losses or list_losses()
    if "ibp" not in names:
        names = ["ibp", *names]
    torch.manual_seed(1)
    x, y = torch.rand(args.batch, *spec.shape), torch.randint(0, spec.num_classes, (args.batch,))
    teacher = Teacher(create_model("cnn7", spec.shape, spec.num_classes))
    rows = [None, *names]
    steps = {name: make_step(name, spec, eps, x, y, teacher) for name in rows}
    median = medians(round_robin(steps, args.repeats))
    print(
        f"CNN7, {args.dataset_shape} shape {spec.shape}, batch {args.batch}, median of {args.repeats}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(f"{'loss':<12} {'s/step':>8} {'x ibp':>7}")
    for name in rows:
        label = "plain CE" if name is None else name
        print(f"{label:<12} {median[name]:>8.3f} {median[name] / median['ibp']:>7.2f}")


if __name__ == "__main__":
    main()

"""PGD as CTBench's ``adv_whitebox`` runs it during training (methods.md §9; the ctbench convention).

Differences from ``pgd.py`` (the expressive-losses attack), each read from the reference:
- the start is x + U(−½, ½)·(x_U − x_L), clipped to the box (not uniform in the box);
- ``steps`` signed steps of lr_k·(x_U − x_L)/2, with lr_0 = ``step_size`` (CTBench's default rule
  max(0.25, 2/steps), :func:`default_step_size`) and a step decay: ×0.1 at ⌈0.5s⌉, ⌈0.8s⌉, ⌈0.9s⌉
  for s ≥ 50 steps, ×0.1 at ⌈0.7s⌉ for s ≥ 20, else ×0.2 every 10 steps;
- per sample, the point with the highest objective among the start and the iterates of every
  restart is kept (the clean point is not a candidate);
- the model is whatever ``forward`` computes: under ctbench the student in train mode with the
  clean batch's frozen BN statistics (``bounds.batch_stats``), not eval mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..bounds import InputBox
from .pgd import Objective, attack_objective

Forward = Callable[[torch.Tensor], torch.Tensor]


def default_step_size(steps: int) -> float:
    """CTBench's step size when none is given: max(0.25, 2/steps) of the half-width (2.0 for one step)."""
    return max(0.25, 2.0 / steps)


def step_scale(step: int, steps: int) -> float:
    """The factor of the initial step size at step ``step`` (0-based) of a ``steps``-step attack."""
    if steps >= 50:
        milestones, gamma = [math.ceil(f * steps) for f in (0.5, 0.8, 0.9)], 0.1
    elif steps >= 20:
        milestones, gamma = [math.ceil(0.7 * steps)], 0.1
    else:
        return 0.2 ** (step // 10)
    return gamma ** sum(step >= m for m in milestones)


def ctbench_pgd(
    forward: Forward,
    box: InputBox,
    y: torch.Tensor,
    steps: int,
    step_size: float,
    restarts: int,
    objective: Objective = "ce",
    target_logits: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The best point found in ``box`` per sample ``[B, C, H, W]`` (normalised, detached)."""
    lower, upper = box.lower_norm.detach(), box.upper_norm.detach()
    centre = box.x_norm.detach()
    width = upper - lower
    half = width / 2
    best_x, best_val = centre.clone(), None
    view = (-1,) + (1,) * (centre.dim() - 1)
    for _ in range(restarts):
        noise = torch.rand(centre.shape, generator=generator, device=centre.device, dtype=centre.dtype) - 0.5
        x = torch.maximum(torch.minimum(centre + noise * width, upper), lower)
        for k in range(steps + 1):
            x.requires_grad_(True)
            with torch.enable_grad():
                value = attack_objective(forward(x), y, objective, target_logits)
                grad = torch.autograd.grad(value.sum(), x)[0] if k < steps else None
            value = value.detach()
            if best_val is None:
                best_x, best_val = x.detach().clone(), value
            else:
                better = value > best_val
                best_x = torch.where(better.view(view), x.detach(), best_x)
                best_val = torch.maximum(value, best_val)
            if grad is None:
                break
            step = step_size * step_scale(k, steps)
            x = torch.maximum(torch.minimum(x.detach() + step * half * grad.sign(), upper), lower)
    return best_x.detach()

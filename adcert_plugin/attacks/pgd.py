"""Batched PGD inside a clipped, normalised input box (methods.md B.2.3).

Random start uniform in the box; each step moves by η·(x_U − x_L)/2 · sign(∇) (the step is
relative to the box half-width, so η = 10 with one step lands on a vertex); iterates are
projected back into the box; with several steps or restarts the iterate with the highest
per-sample objective is kept. The model is put in eval mode during the attack and restored;
the attack runs it with BatchNorm folded (``folding.folded_eval_forward``: the same function,
without BN's passes), so it costs a training step as little as it can.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..bounds import InputBox
from .folding import folded_eval_forward

Objective = Literal["ce", "margin", "kl"]


@dataclass(frozen=True)
class AttackConfig:
    """PGD settings. ``step_size`` is relative to the box half-width."""

    steps: int = 1
    step_size: float = 10.0
    restarts: int = 1
    objective: Objective = "ce"
    eps_factor: float = 1.0  # attack box = eps_factor·ε (CIFAR 2/255 trains with 2.1)

    def __post_init__(self):
        if self.steps < 1 or self.restarts < 1 or self.step_size <= 0:
            raise ValueError(f"PGD needs steps ≥ 1, restarts ≥ 1 and step_size > 0; got {self}")


def attack_objective(
    logits: torch.Tensor, y: torch.Tensor, objective: Objective, target_logits: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-sample quantity the attack maximises ``[B]``.

    ``ce``: cross-entropy; ``margin``: max_{j≠y} z_j − z_y (positive = misclassified);
    ``kl``: KL(p_target ‖ p_model), with ``target_logits`` (e.g. a teacher's) as the target.
    """
    if objective == "ce":
        return F.cross_entropy(logits, y, reduction="none")
    if objective == "margin":
        true = logits.gather(1, y[:, None]).squeeze(1)
        other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
        return other - true
    if objective == "kl":
        if target_logits is None:
            raise ValueError("the kl objective needs target_logits")
        target = F.log_softmax(target_logits, 1)
        return (target.exp() * (target - F.log_softmax(logits, 1))).sum(1)
    raise ValueError(f"unknown attack objective {objective!r}; choose ce, margin or kl")


def pgd_attack(
    model: nn.Module,
    box: InputBox,
    y: torch.Tensor,
    cfg: AttackConfig = AttackConfig(),
    target_logits: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Strongest point found in ``box`` for each sample: ``[B, C, H, W]`` (normalised, detached).

    The model runs in eval mode (BN with running statistics, folded) and is switched back
    afterwards. Parameters receive no gradient from the attack.
    """
    was_training = model.training
    model.eval()
    requires = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        return _pgd(folded_eval_forward(model), box, y, cfg, target_logits, generator)
    finally:
        for p, flag in zip(model.parameters(), requires):
            p.requires_grad_(flag)
        model.train(was_training)


def _pgd(model, box, y, cfg, target_logits, generator):
    lower, upper = box.lower_norm.detach(), box.upper_norm.detach()
    step = cfg.step_size * (upper - lower) / 2
    keep_best = cfg.steps > 1 or cfg.restarts > 1
    best_x, best_val = box.x_norm.detach().clone(), None
    if keep_best:  # the clean point competes too; a single step returns its end point unscored
        with torch.no_grad():
            best_val = attack_objective(model(best_x), y, cfg.objective, target_logits)
    for _ in range(cfg.restarts):
        noise = torch.rand(lower.shape, generator=generator, device=lower.device, dtype=lower.dtype)
        x = lower + noise * (upper - lower)
        for _ in range(cfg.steps):
            x.requires_grad_(True)
            with torch.enable_grad():
                value = attack_objective(model(x), y, cfg.objective, target_logits)
                (grad,) = torch.autograd.grad(value.sum(), x)
            grad = grad.contiguous()  # the folded forward may hand it back channels-last
            x = torch.maximum(torch.minimum(x.detach() + step * grad.sign(), upper), lower)
            if keep_best:
                best_x, best_val = _keep_best(model, x, y, cfg, target_logits, best_x, best_val)
        if not keep_best:
            return x.detach()  # one step: the final point, as in the reference code
    return best_x


def _keep_best(model, x, y, cfg, target_logits, best_x, best_val):
    with torch.no_grad():
        value = attack_objective(model(x), y, cfg.objective, target_logits)
    better = value > best_val
    best_x = torch.where(better.view(-1, *[1] * (x.dim() - 1)), x, best_x)
    return best_x, torch.maximum(value, best_val)

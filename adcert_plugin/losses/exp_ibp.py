"""Exp-IBP: L = L_lb(z̲)^α · CE(f(x_adv), y)^(1−α).

De Palma et al. 2024, "Expressive losses for verified robustness via convex combinations",
ICLR 2024, arXiv 2305.13991 (a convex combination in log-loss space). Both factors are
clamped at 1e-12 before the power so that a zero cross-entropy cannot give an infinite
gradient. BN statistics while bounding: the adversarial batch. Default α = 0.095 is the
CIFAR-10 2/255 value (the paper reports no MNIST setting, methods.md §4.2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import LossContext, LossOutput, accuracy, check_config, lb_loss
from .registry import register_loss

FLOOR = 1e-12


@dataclass(frozen=True)
class ExpIbpConfig:
    alpha: float = 0.095  # exponent of the IBP loss, in [0, 1]

    def __post_init__(self):
        check_config(self, alpha=(0.0, 1.0))


def geometric_mix(robust, adversarial, alpha: float):
    """robust^α · adversarial^(1−α), exact at α ∈ {0, 1}."""
    if alpha == 1.0:
        return robust
    if alpha == 0.0:
        return adversarial
    return robust.clamp_min(FLOOR) ** alpha * adversarial.clamp_min(FLOOR) ** (1.0 - alpha)


@register_loss(
    "exp-ibp",
    config=ExpIbpConfig,
    needs={"attack", "bounds"},
    description="Exp-IBP: L_lb(z_lower)^alpha * CE(f(x_adv), y)^(1-alpha) (De Palma et al. 2024)",
)
def exp_ibp(ctx: LossContext, cfg: ExpIbpConfig) -> LossOutput:
    """L_lb(z̲)^α · CE(f(x_adv), y)^(1−α)."""
    robust = lb_loss(ctx.margin_lower("IBP"))
    logits_adv = ctx.student_logits("adv")
    ce_adv = F.cross_entropy(logits_adv, ctx.y)
    loss = geometric_mix(robust, ce_adv, cfg.alpha)
    return LossOutput(loss, {"lb": robust, "ce_adv": ce_adv, "acc_adv": accuracy(logits_adv, ctx.y)})

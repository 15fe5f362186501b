"""TRADES (teacher recipe): L = CE(f(x), y) + β·KL(p(x) ‖ p(x_adv)), β = 6.

Zhang et al. 2019, "Theoretically principled trade-off between robustness and accuracy",
arXiv 1901.08573. The attack maximises KL(p(x) ‖ p(x')) with the clean prediction as a fixed
target (the student's eval-mode clean logits, detached), whatever ``AttackConfig.objective``
says. In the loss both p(x) and p(x_adv) carry gradients, as in the reference code;
the KL is summed over classes and averaged over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import LossContext, LossOutput, accuracy, check_config, kl_distill
from .registry import register_loss


@dataclass(frozen=True)
class TradesConfig:
    beta: float = 6.0  # weight of the robustness (KL) term, >= 0

    def __post_init__(self):
        check_config(self, beta=(0.0, None))


@register_loss(
    "trades",
    config=TradesConfig,
    needs={"attack"},
    description="TRADES: CE(f(x), y) + beta*KL(p(x) || p(x_adv)) (Zhang et al. 2019), teacher training",
)
def trades(ctx: LossContext, cfg: TradesConfig) -> LossOutput:
    """CE(f(x), y) + β·KL(p(x) ‖ p(x_adv))."""
    ctx.adversarial("kl", target="student")  # must come before any x_adv access
    logits_clean, logits_adv = ctx.student_logits("clean"), ctx.student_logits("adv")
    ce_clean = F.cross_entropy(logits_clean, ctx.y)
    robust = kl_distill(logits_clean, logits_adv, tau=1.0)
    return LossOutput(
        ce_clean + cfg.beta * robust,
        {
            "ce_clean": ce_clean,
            "ce_adv": F.cross_entropy(logits_adv, ctx.y).detach(),
            "acc_adv": accuracy(logits_adv, ctx.y),
        },
    )

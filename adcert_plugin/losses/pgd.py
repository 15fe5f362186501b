"""PGD adversarial training (teacher recipe): L = CE(f(x_adv), y).

Madry et al. 2018, "Towards deep learning models resistant to adversarial attacks",
arXiv 1706.06083. x_adv comes from the context's PGD (``AttackConfig``); for teachers the
trainer sets 10 steps with step ε/4 (relative step 0.5 of the box half-width).
"""

from __future__ import annotations

import torch.nn.functional as F

from .base import LossContext, LossOutput, NoConfig, accuracy
from .registry import register_loss


@register_loss(
    "pgd",
    config=NoConfig,
    needs={"attack"},
    description="PGD-AT: CE(f(x_adv), y) (Madry et al. 2018), teacher training",
)
def pgd(ctx: LossContext, cfg: NoConfig) -> LossOutput:
    """CE(f(x_adv), y)."""
    logits_adv = ctx.student_logits("adv")  # [B, K], train mode
    ce_adv = F.cross_entropy(logits_adv, ctx.y)
    return LossOutput(ce_adv, {"ce_adv": ce_adv, "acc_adv": accuracy(logits_adv, ctx.y)})

"""CC-IBP: L = L_lb(α·z̲ + (1−α)·d(x_adv)), d(x) = C_y f(x) the exact margins.

De Palma et al. 2024, "Expressive losses for verified robustness via convex combinations",
ICLR 2024, arXiv 2305.13991. The convex combination is taken in margin space; by convexity of
L_lb it is never above MTL-IBP at the same α and x_adv. BN statistics while bounding: the
adversarial batch. Default α = 0.1 is the MNIST ε = 0.1 value (methods.md §4.2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import LossContext, LossOutput, accuracy, check_config, lb_loss
from .registry import register_loss


@dataclass(frozen=True)
class CcIbpConfig:
    alpha: float = 0.1  # weight of the IBP bound in the margin combination, in [0, 1]

    def __post_init__(self):
        check_config(self, alpha=(0.0, 1.0))


@register_loss(
    "cc-ibp",
    config=CcIbpConfig,
    needs={"attack", "bounds"},
    description="CC-IBP: L_lb(alpha*z_lower + (1-alpha)*d(x_adv)) (De Palma et al. 2024)",
)
def cc_ibp(ctx: LossContext, cfg: CcIbpConfig) -> LossOutput:
    """L_lb(α·z̲ + (1−α)·d(x_adv))."""
    bound = ctx.margin_lower("IBP")  # [B, K-1]
    margins_adv = ctx.margins("adv")  # [B, K-1], same order as the bound
    loss = lb_loss(cfg.alpha * bound + (1.0 - cfg.alpha) * margins_adv)
    logits_adv = ctx.student_logits("adv")
    return LossOutput(
        loss,
        {"lb": lb_loss(bound), "ce_adv": F.cross_entropy(logits_adv, ctx.y), "acc_adv": accuracy(logits_adv, ctx.y)},
    )

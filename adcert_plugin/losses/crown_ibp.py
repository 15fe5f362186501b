"""CROWN-IBP loss: L = L_lb(κ·z̲_IBP + (1−κ)·z̲_CROWN-IBP).

Zhang et al. 2020, "Towards stable and efficient training of verifiably robust neural
networks", arXiv 1906.06316. κ follows a schedule from 1 to 0 during the ε ramp: the trainer
sets it each step with ``loss.config = dataclasses.replace(loss.config, kappa=k)``. The default
(0) is the end of that schedule, pure CROWN-IBP. With κ = 1 the CROWN-IBP pass is skipped.
BN statistics while bounding: the clean batch (no attack).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import LossContext, LossOutput, check_config, lb_loss
from .registry import register_loss


@dataclass(frozen=True)
class CrownIbpConfig:
    kappa: float = 0.0  # weight of the IBP bound, in [0, 1]; scheduled 1 -> 0 by the trainer

    def __post_init__(self):
        check_config(self, kappa=(0.0, 1.0))


@register_loss(
    "crown-ibp",
    config=CrownIbpConfig,
    needs={"bounds"},
    description="CROWN-IBP: L_lb(kappa*z_IBP + (1-kappa)*z_CROWN-IBP) (Zhang et al. 2020)",
)
def crown_ibp(ctx: LossContext, cfg: CrownIbpConfig) -> LossOutput:
    """L_lb(κ·z̲_IBP + (1−κ)·z̲_CROWN-IBP)."""
    # CROWN-IBP first (auto_LiRPA's first call must precede the step's other forwards; see context.py).
    crown = ctx.margin_lower("CROWN-IBP") if cfg.kappa < 1.0 else None  # [B, K-1]
    bound = ctx.margin_lower("IBP")
    if crown is not None:
        bound = cfg.kappa * bound + (1.0 - cfg.kappa) * crown
    robust = lb_loss(bound)
    ce_clean = F.cross_entropy(ctx.student_logits("clean"), ctx.y)
    return LossOutput(robust, {"lb": robust, "ce_clean": ce_clean})

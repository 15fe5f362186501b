"""IBP loss: L = L_lb(z̲), z̲ the IBP lower bounds of the margins over the ε box.

Gowal et al. 2018, "On the effectiveness of interval bound propagation for training verifiably
robust models", arXiv 1810.12715; training recipe of Shi et al. 2021, "Fast certified robust
training with short warmup", arXiv 2103.17268 (its warm-up regularisers are added by the
trainer under the ``reg`` part). BN statistics while bounding: the clean batch (no attack).
"""

from __future__ import annotations

import torch.nn.functional as F

from .base import LossContext, LossOutput, NoConfig, lb_loss
from .registry import register_loss


@register_loss(
    "ibp", config=NoConfig, needs={"bounds"}, description="IBP loss L_lb(z_lower) (Gowal et al. 2018; Shi et al. 2021)"
)
def ibp(ctx: LossContext, cfg: NoConfig) -> LossOutput:
    """L_lb(z̲): cross-entropy over [0, −z̲] with label 0."""
    robust = lb_loss(ctx.margin_lower("IBP"))  # [B, K-1] -> scalar
    ce_clean = F.cross_entropy(ctx.student_logits("clean"), ctx.y)  # same pass as the bound
    return LossOutput(robust, {"lb": robust, "ce_clean": ce_clean})

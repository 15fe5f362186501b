"""MTL-IBP: L = α·L_lb(z̲) + (1−α)·CE(f(x_adv), y).

De Palma et al. 2024, "Expressive losses for verified robustness via convex combinations",
ICLR 2024, arXiv 2305.13991. α = 1 is the IBP loss, α = 0 adversarial training on the
student's own PGD point. BN statistics while bounding: the adversarial batch (its train-mode
forward is the one just before the bound, as in the reference code). Default α = 0.01 is the
MNIST ε = 0.1 value (methods.md §4.2); set it per benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import LossContext, LossOutput, accuracy, check_config, lb_loss
from .registry import register_loss


@dataclass(frozen=True)
class MtlIbpConfig:
    alpha: float = 0.01  # weight of the IBP loss, in [0, 1]

    def __post_init__(self):
        check_config(self, alpha=(0.0, 1.0))


@register_loss(
    "mtl-ibp",
    config=MtlIbpConfig,
    needs={"attack", "bounds"},
    description="MTL-IBP: alpha*L_lb(z_lower) + (1-alpha)*CE(f(x_adv), y) (De Palma et al. 2024)",
)
def mtl_ibp(ctx: LossContext, cfg: MtlIbpConfig) -> LossOutput:
    """α·L_lb(z̲) + (1−α)·CE(f(x_adv), y)."""
    robust = lb_loss(ctx.margin_lower("IBP"))  # fused with the adversarial forward
    logits_adv = ctx.student_logits("adv")
    ce_adv = F.cross_entropy(logits_adv, ctx.y)
    loss = cfg.alpha * robust + (1.0 - cfg.alpha) * ce_adv
    return LossOutput(loss, {"lb": robust, "ce_adv": ce_adv, "acc_adv": accuracy(logits_adv, ctx.y)})

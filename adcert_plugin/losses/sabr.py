"""SABR: L = L_lb(z̲ over B_{λε}(x̂)), x̂ = x_adv projected so the small box stays in the ε box.

Müller et al. 2023, "Certified training: small boxes are all you need", ICLR 2023,
arXiv 2210.04871 (as re-implemented in expressive-losses' ``compute_sabr_perturbation``).
The small box has pixel radius λ·ε (λ·ε/σ_c normalised, capped at the clipped box's half-width)
and is re-centred with ``InputBox.shrink_around``, so it lies inside the ε box. Not a sound
bound: λ = 1 is IBP, λ → 0 adversarial training. x_adv is the context's PGD point (attack box
``eps * attack.eps_factor``). BN statistics while bounding: the adversarial batch. Default λ = 0.4
is the MNIST ε = 0.1 value (methods.md §3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .base import LossContext, LossOutput, accuracy, check_config, lb_loss
from .registry import register_loss


@dataclass(frozen=True)
class SabrConfig:
    lam: float = 0.4  # λ: small-box radius as a fraction of ε, in (0, 1]

    def __post_init__(self):
        check_config(self, lam=(0.0, 1.0))
        if self.lam <= 0.0:
            raise ConfigError(f"SabrConfig.lam={self.lam}: must be > 0 (use pgd for plain adversarial training)")


def small_box(ctx: LossContext, lam: float):
    """The SABR box of pixel radius λ·ε around the projected x_adv (normalised ``InputBox``)."""
    std = torch.as_tensor(ctx.spec.std, dtype=ctx.x.dtype, device=ctx.x.device)
    radius_norm = (lam * ctx.eps / std).view(1, -1, *[1] * (ctx.x.dim() - 2)).expand_as(ctx.x)
    return ctx.box.shrink_around(ctx.x_adv, radius_norm)


@register_loss(
    "sabr",
    config=SabrConfig,
    needs={"attack", "bounds"},
    description="SABR: L_lb(z_lower over a lambda*eps box around x_adv) (Mueller et al. 2023)",
)
def sabr(ctx: LossContext, cfg: SabrConfig) -> LossOutput:
    """L_lb(z̲(B_{λε}(x̂)))."""
    robust = lb_loss(ctx.margin_lower("IBP", box=small_box(ctx, cfg.lam)))  # fused with the adv forward
    logits_adv = ctx.student_logits("adv")
    return LossOutput(
        robust, {"lb": robust, "ce_adv": F.cross_entropy(logits_adv, ctx.y), "acc_adv": accuracy(logits_adv, ctx.y)}
    )

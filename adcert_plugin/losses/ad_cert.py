"""AD-CERT: L = α·L_lb(z̲) + (1−α)·L_AD + γ·CE(f(x_adv), y), L_AD = τ²·KL(p_T(x_t; τ) ‖ p_S(x_adv; τ)).

"Improving certified robustness via adversarial distillation", arXiv 2606.31653 (formulation
inferred, methods.md §6.2), with ARD (Goldblum et al. 2020, arXiv 1905.09747) and RSLAD
(Zi et al. 2021, arXiv 2108.07969) as the adversarial-distillation term. KL is ``batchmean``.
Options: ``teacher_input`` x_t = x_adv (default) or the clean x (ARD); ``attack_objective``
``ce`` (PGD on the student's CE) or ``kl`` (maximise KL to the teacher's clean soft labels,
RSLAD); ``combination``:

- ``loss``:  α·L_lb(z̲) + (1−α)·L_AD (MTL-style);
- ``logit``: τ²·KL(softmax(z_T/τ) ‖ softmax(ẑ/τ)) with pseudo-logits ẑ_y = 0,
  ẑ_j = −[α·z̲_j + (1−α)·(z_S(x_adv)_y − z_S(x_adv)_j)] (CC-style, §6.2);
- ``exp``:   L_lb(z̲)^α · L_AD^(1−α).

BN statistics while bounding: the adversarial batch. Default α = 0.01 is the MTL-IBP MNIST
ε = 0.1 value (methods.md Part A: start from the MTL-IBP α of the benchmark).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from .base import LossContext, LossOutput, accuracy, check_config, kl_distill, lb_loss
from .exp_ibp import geometric_mix
from .registry import register_loss


@dataclass(frozen=True)
class AdCertConfig:
    alpha: float = 0.01  # weight of the certified term, in [0, 1]
    tau: float = 1.0  # distillation temperature, > 0
    teacher_input: Literal["adv", "clean"] = "adv"
    attack_objective: Literal["ce", "kl"] = "ce"
    combination: Literal["loss", "logit", "exp"] = "loss"
    hard_label_weight: float = 0.0  # γ, >= 0

    def __post_init__(self):
        check_config(self, alpha=(0.0, 1.0), tau=(1e-6, None), hard_label_weight=(0.0, None))


def pseudo_logits(margin_mix: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Logits ``[B, K]`` with ẑ_y = 0 and ẑ_j = −v_j for the margins v ``[B, K-1]`` (j ≠ y, in order)."""
    batch = y.shape[0]
    classes = torch.arange(num_classes, device=y.device).expand(batch, num_classes)
    others = classes[classes != y.unsqueeze(1)].view(batch, num_classes - 1)
    return margin_mix.new_zeros(batch, num_classes).scatter(1, others, -margin_mix)


@register_loss("ad-cert", config=AdCertConfig, needs={"attack", "bounds", "teacher"},
               description="AD-CERT: alpha*L_lb(z_lower) + (1-alpha)*tau^2*KL(p_T || p_S(x_adv)) (arXiv 2606.31653)")
def ad_cert(ctx: LossContext, cfg: AdCertConfig) -> LossOutput:
    """α·L_lb(z̲) + (1−α)·τ²·KL(p_T(x_t; τ) ‖ p_S(x_adv; τ)) (+ γ·CE(f(x_adv), y))."""
    ctx.adversarial(cfg.attack_objective, target="teacher")  # must come before any x_adv access
    bound = ctx.margin_lower("IBP")  # [B, K-1], fused with the adversarial forward
    logits_s = ctx.student_logits("adv")  # [B, K]
    logits_t = ctx.teacher_logits(cfg.teacher_input)  # [B, K], detached
    robust = lb_loss(bound)
    distill = kl_distill(logits_t, logits_s, cfg.tau)
    if cfg.combination == "loss":
        loss = cfg.alpha * robust + (1.0 - cfg.alpha) * distill
    elif cfg.combination == "exp":
        loss = geometric_mix(robust, distill, cfg.alpha)
    else:
        mix = cfg.alpha * bound + (1.0 - cfg.alpha) * ctx.margins("adv")
        loss = kl_distill(logits_t, pseudo_logits(mix, ctx.y, logits_s.shape[1]), cfg.tau)
    ce_adv = F.cross_entropy(logits_s, ctx.y)
    if cfg.hard_label_weight > 0:
        loss = loss + cfg.hard_label_weight * ce_adv
    return LossOutput(loss, {"lb": robust, "distill": distill, "ce_adv": ce_adv, "acc_adv": accuracy(logits_s, ctx.y)})

"""CC-Dist: L = L_lb(α·z̲ + (1−α)·d(x_adv)) + β·D(P φ_S(x_f), sg φ_T(x_f)).

De Palma 2026, "Learning better certified models from empirically-robust teachers",
arXiv 2602.02626 (formulation inferred, methods.md §5.2). φ are penultimate (post-ReLU,
pre-final-linear) features, sg stops the gradient (frozen teacher), x_f is x_adv
(``feature_point: adv``) or the clean x. D is ``mse`` (mean over batch and features) or
``cosine`` (1 − cos, batch mean). P is a training-only ``nn.Linear`` (student width → teacher
width) created in ``prepare`` when the widths differ or ``projection: always``; it lives in
``loss.modules`` and is never part of the student. BN statistics while bounding: the
adversarial batch. Default α = 0.1 is the CC-IBP MNIST ε = 0.1 value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..models import feature_width
from .base import Loss, LossOutput, accuracy, check_config, lb_loss
from .registry import register_loss


@dataclass(frozen=True)
class CcDistConfig:
    alpha: float = 0.1  # weight of the IBP bound in the margin combination, in [0, 1]
    beta: float = 1.0  # weight of the feature distance, >= 0
    distance: Literal["mse", "cosine"] = "mse"
    feature_point: Literal["adv", "clean"] = "adv"
    projection: Literal["auto", "always"] = "auto"  # auto: only when widths differ

    def __post_init__(self):
        check_config(self, alpha=(0.0, 1.0), beta=(0.0, None))


def feature_distance(student: torch.Tensor, teacher: torch.Tensor, kind: str) -> torch.Tensor:
    """D(φ_S, φ_T) for ``[B, F]`` features: mean squared error, or batch-mean 1 − cosine."""
    if kind == "mse":
        return F.mse_loss(student, teacher)
    return (1.0 - F.cosine_similarity(student, teacher, dim=1)).mean()


@register_loss("cc-dist", config=CcDistConfig, needs={"attack", "bounds", "teacher", "features"},
               description="CC-Dist: CC-IBP + beta*D(student features, teacher features) (De Palma 2026)")
class CcDist(Loss):
    """L_lb(α·z̲ + (1−α)·d(x_adv)) + β·D(P φ_S(x_f), sg φ_T(x_f))."""

    def prepare(self, student: nn.Module, teacher=None) -> None:
        """Create the projection head when the student's and teacher's feature widths differ."""
        if teacher is None:
            raise ConfigError("cc-dist needs a teacher; set teacher: <checkpoint path> in the config")
        width_s = feature_width(student)
        width_t = feature_width(getattr(teacher, "model", teacher))
        self._widths = (width_s, width_t)
        if width_s != width_t or self.config.projection == "always":
            param = next(student.parameters())
            self.modules["projection"] = nn.Linear(width_s, width_t).to(param.device, param.dtype)

    def compute(self, ctx) -> LossOutput:
        cfg = self.config
        bound = ctx.margin_lower("IBP")  # [B, K-1], fused with the adversarial forward
        features_s = ctx.student_features(cfg.feature_point)  # [B, F_S]
        features_t = ctx.teacher_features(cfg.feature_point)  # [B, F_T], detached
        if "projection" in self.modules:
            features_s = self.modules["projection"](features_s)
        elif features_s.shape[1] != features_t.shape[1]:
            raise ConfigError(f"cc-dist: student features are {features_s.shape[1]}-d, teacher's "
                              f"{features_t.shape[1]}-d; call loss.prepare(student, teacher) before training")
        distill = feature_distance(features_s, features_t, cfg.distance)
        certified = lb_loss(cfg.alpha * bound + (1.0 - cfg.alpha) * ctx.margins("adv"))
        logits_adv = ctx.student_logits("adv")
        return LossOutput(certified + cfg.beta * distill,
                          {"lb": lb_loss(bound), "distill": distill, "ce_adv": F.cross_entropy(logits_adv, ctx.y),
                           "acc_adv": accuracy(logits_adv, ctx.y)})

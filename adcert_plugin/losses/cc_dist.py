"""CC-Dist: L = L_lb(α·z̲ + (1−α)·d(x_adv)) + (β/F)·mean_b Σ_i max((φ̲_i − φ_T(x)_i)², (φ̄_i − φ_T(x)_i)²).

De Palma 2026, "Learning better certified models from empirically-robust teachers" (arXiv
2602.02626), as the AD-CERT authors re-implemented it (`matteo-melis/ad-cert`,
`CTBench/model_wrapper.py::CCDistModelWrapper`) and the ICLR 2026 reviews describe it; restated
in methods.md §5.2. With φ the student's penultimate features (every layer but the last) and
[l_φ, u_φ] their IBP bounds over the ε box (the same native pass whose head gives z̲):

- the α-interpolated feature box φ̲ = (1−α)·φ_S(x_adv) + α·l_φ, φ̄ = (1−α)·φ_S(x_adv) + α·u_φ;
- the worst-case squared distance to the teacher's features at the **clean** x over that box is
  attained at an endpoint (a convex function of each coordinate), so the term sums
  max((φ̲_i − t_i)², (φ̄_i − t_i)²) over features, averages over the batch, and weighs it β/F
  (β = 5: the reference's 5/F). At α = 0 the box is the point φ_S(x_adv): β·MSE.

``distance="box"`` is that default. adcert's earlier point distances stay as options, NOT the
paper's: ``mse`` (mean over batch and features) or ``cosine`` (batch-mean 1 − cos) between the
student's features at ``feature_point`` and the teacher's at ``teacher_point``. A training-only
``nn.Linear`` P (student → teacher width) is created in ``prepare`` when the widths differ or
``projection: always``; the box goes through P by interval arithmetic (centre P c + b,
radius |P| r), so its endpoints remain a sound box.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    alpha: float = 0.1  # weight of the IBP bound in the margin and feature interpolation, in [0, 1]
    beta: float = 5.0  # the distance's weight β (on the per-feature mean: the reference's 5/F on the sum)
    distance: Literal["box", "mse", "cosine"] = "box"  # mse/cosine: adcert's point distances
    teacher_point: Literal["clean", "adv"] = "clean"
    feature_point: Literal["adv", "clean"] = "adv"  # the student's point for mse/cosine (box: always x_adv)
    projection: Literal["auto", "always"] = field(default="auto", metadata={"extension": True})

    def __post_init__(self):
        check_config(self, alpha=(0.0, 1.0), beta=(0.0, None))
        if self.distance == "box" and self.feature_point != "adv":
            raise ConfigError(
                "CcDistConfig.feature_point: the box distance interpolates around x_adv; "
                "feature_point='clean' needs distance 'mse' or 'cosine'"
            )


def feature_distance(student: torch.Tensor, teacher: torch.Tensor, kind: str) -> torch.Tensor:
    """D(φ_S, φ_T) for ``[B, F]`` features: mean squared error, or batch-mean 1 − cosine."""
    if kind == "mse":
        return F.mse_loss(student, teacher)
    return (1.0 - F.cosine_similarity(student, teacher, dim=1)).mean()


def interpolated_box(
    adv: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(φ̲, φ̄) = (1−α)·φ_adv + α·(l_φ, u_φ)."""
    return (1.0 - alpha) * adv + alpha * lower, (1.0 - alpha) * adv + alpha * upper


def box_distance(lower: torch.Tensor, upper: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(1/F)·Σ_i max((l_i − t_i)², (u_i − t_i)²), batch mean: the largest mean squared distance
    from ``target`` to any point of the box [lower, upper] ``[B, F]``."""
    worst = torch.maximum((lower - target).square(), (upper - target).square())
    return worst.sum(dim=1).mean() / lower.shape[1]


def project_box(linear: nn.Linear, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The interval image of [lower, upper] under ``linear`` (centre/radius arithmetic)."""
    centre, radius = (upper + lower) / 2, (upper - lower) / 2
    mid, rad = linear(centre), F.linear(radius, linear.weight.abs())
    return mid - rad, mid + rad


@register_loss(
    "cc-dist",
    config=CcDistConfig,
    needs={"attack", "bounds", "teacher", "features"},
    description="CC-Dist (De Palma 2026): CC-IBP + beta/F * worst-case squared distance of the "
    "alpha-interpolated IBP feature box to the teacher's clean features; mse/cosine "
    "point distances are adcert options",
)
class CcDist(Loss):
    """L_lb(α·z̲ + (1−α)·d(x_adv)) + β·D, D the box distance (default) or a point distance."""

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

    def _check_widths(self, student_width: int, teacher_width: int) -> None:
        if "projection" not in self.modules and student_width != teacher_width:
            raise ConfigError(
                f"cc-dist: student features are {student_width}-d, teacher's {teacher_width}-d; "
                "call loss.prepare(student, teacher) before training"
            )

    def compute(self, ctx) -> LossOutput:
        cfg = self.config
        # The feature box first: it comes out of the IBP pass with z̲ (and, under the expressive-losses
        # convention, with the adversarial forward), so nothing is bounded twice.
        feature_box = ctx.feature_bounds() if cfg.distance == "box" and cfg.alpha > 0 else None
        bound = ctx.margin_lower("IBP")  # [B, K-1]
        features_t = ctx.teacher_features(cfg.teacher_point)  # [B, F_T], detached
        distill = self._distill(ctx, feature_box, features_t)
        certified = lb_loss(cfg.alpha * bound + (1.0 - cfg.alpha) * ctx.margins("adv"))
        logits_adv = ctx.student_logits("adv")
        return LossOutput(
            certified + cfg.beta * distill,
            {
                "lb": lb_loss(bound),
                "distill": distill,
                "ce_adv": F.cross_entropy(logits_adv, ctx.y),
                "acc_adv": accuracy(logits_adv, ctx.y),
            },
        )

    def _distill(self, ctx, feature_box, features_t: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        projection = self.modules["projection"] if "projection" in self.modules else None  # noqa: SIM401 (ModuleDict has no get)
        if cfg.distance != "box":
            features_s = ctx.student_features(cfg.feature_point)
            features_s = projection(features_s) if projection is not None else features_s
            self._check_widths(features_s.shape[1], features_t.shape[1])
            return feature_distance(features_s, features_t, cfg.distance)
        adv = ctx.student_features("adv")
        if feature_box is None:  # α = 0: the box is the point φ_S(x_adv)
            lower = upper = adv
        else:
            box_lower, box_upper = feature_box
            lower, upper = interpolated_box(adv, box_lower, box_upper, cfg.alpha)
        if projection is not None:
            lower, upper = project_box(projection, lower, upper)
        self._check_widths(lower.shape[1], features_t.shape[1])
        return box_distance(lower, upper, features_t)

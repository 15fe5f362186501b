"""A third-party adcert loss, shipped as its own package: a hinge on the IBP margin bounds.

    L = mean_j ReLU(κ − z̲_j) mixed with the adversarial CE:  α·hinge + (1−α)·CE(f(x_adv), y)

Installing this package (``pip install examples/custom_loss_plugin``) makes ``ibp-hinge``
available to ``adcert-train --loss ibp-hinge`` and ``create_loss("ibp-hinge")`` without any
change to adcert: ``setup.py`` declares it in the ``adcert.losses`` entry-point group.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from adcert_plugin.errors import ConfigError
from adcert_plugin.losses import register_loss
from adcert_plugin.losses.base import LossContext, LossOutput


@dataclass(frozen=True)
class IbpHingeConfig:
    alpha: float = 0.5  # weight of the certified hinge, in [0, 1]
    kappa: float = 1.0  # target margin

    def __post_init__(self):
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"ibp-hinge alpha={self.alpha}: must be in [0, 1]")


def ibp_hinge(ctx: LossContext, cfg: IbpHingeConfig) -> LossOutput:
    """α·mean_j ReLU(κ − z̲_j) + (1−α)·CE(f(x_adv), y)."""
    hinge = F.relu(cfg.kappa - ctx.margin_lower("IBP")).mean()
    ce_adv = F.cross_entropy(ctx.student_logits("adv"), ctx.y)
    return LossOutput(cfg.alpha * hinge + (1 - cfg.alpha) * ce_adv, {"lb": hinge, "ce_adv": ce_adv})


def register() -> None:
    """Entry point: called once by adcert's registry."""
    register_loss(
        "ibp-hinge",
        config=IbpHingeConfig,
        needs={"attack", "bounds"},
        description="IBP hinge: alpha*mean ReLU(kappa - z_lower) + (1-alpha)*CE(x_adv)",
    )(ibp_hinge)

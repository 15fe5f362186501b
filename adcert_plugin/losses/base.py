"""What every loss plugin shares: ``LossOutput``, ``lb_loss``, ``kl_distill``, ``Loss`` and config checks.

The per-step context a loss reads from (``LossContext``) lives in ``context.py`` and is
re-exported here, so a plugin needs only ``from adcert_plugin.losses.base import ...``.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

NEEDS = frozenset({"attack", "bounds", "teacher", "features"})
RESERVED_PARTS = frozenset({"reg"})  # written by the trainer, never by a loss


@dataclass
class LossOutput:
    """A scalar training loss plus detached monitoring values.

    Attributes:
        loss: 0-dim tensor carrying the gradient.
        parts: named 0-dim detached float tensors; fixed names ``ce_clean``, ``ce_adv``, ``lb``
            (the bound loss L_lb(z̲)), ``distill``, ``acc_adv``; ``reg`` is reserved for the trainer.
    """

    loss: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.loss, torch.Tensor) or self.loss.dim() != 0:
            raise ValueError(f"a loss must return a 0-dim tensor, got {getattr(self.loss, 'shape', self.loss)!r}")
        clash = RESERVED_PARTS & set(self.parts)
        if clash:
            raise ValueError(f"part name(s) {sorted(clash)} are reserved for the trainer")
        self.parts = {k: torch.as_tensor(v).detach().float().reshape(()) for k, v in self.parts.items()}


def lb_loss(margin_lower: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """L_lb(v) = CE([0, −v], label 0) = log(1 + Σ_j exp(−v_j)) for v ``[B, K-1]``.

    With exact margins v = C_y z this is CE(z, y); with IBP lower bounds it is the IBP loss.
    ``reduction``: ``"mean"`` (scalar) or ``"none"`` (``[B]``).
    """
    zeros = margin_lower.new_zeros(margin_lower.shape[0], 1)
    per_sample = torch.logsumexp(torch.cat([zeros, -margin_lower], dim=1), dim=1)
    return _reduce(per_sample, reduction)


def kl_distill(
    logits_t: torch.Tensor, logits_s: torch.Tensor, tau: float = 1.0, reduction: str = "batchmean"
) -> torch.Tensor:
    """τ²·KL(softmax(z_T/τ) ‖ softmax(z_S/τ)), ``batchmean`` (sum over classes, mean over batch).

    ``reduction="none"`` gives the per-sample values ``[B]``.
    """
    log_t = F.log_softmax(logits_t / tau, dim=1)
    log_s = F.log_softmax(logits_s / tau, dim=1)
    per_sample = (log_t.exp() * (log_t - log_s)).sum(dim=1) * tau**2
    return _reduce(per_sample, "mean" if reduction == "batchmean" else reduction)


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "none":
        return values
    raise ValueError(f"unknown reduction {reduction!r}; use 'mean' or 'none'")


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Batch accuracy as a detached 0-dim float."""
    return (logits.detach().argmax(1) == y).float().mean()


# -- config checks ------------------------------------------------------------------------


def check_config(cfg: Any, **ranges: tuple[float | None, float | None]) -> None:
    """Type-check a frozen config dataclass and its numeric ranges; raise ConfigError.

    Fields typed ``float`` accept ints (converted), ``Literal[...]`` fields must be one of
    the choices, ``int``/``bool``/``str`` must match. ``ranges`` maps a field to inclusive
    (low, high) bounds, either of which may be None.
    """
    hints = typing.get_type_hints(type(cfg))
    name = type(cfg).__name__
    for f in dataclasses.fields(cfg):
        value, kind = getattr(cfg, f.name), hints.get(f.name)
        if typing.get_origin(kind) is typing.Literal:
            if value not in typing.get_args(kind):
                choices = ", ".join(repr(c) for c in typing.get_args(kind))
                raise ConfigError(f"{name}.{f.name}={value!r}: choose one of {choices}")
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name}.{f.name}={value!r}: expected a number")
            object.__setattr__(cfg, f.name, float(value))
        elif kind in (int, bool, str) and not (
            isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        ):
            raise ConfigError(f"{name}.{f.name}={value!r}: expected {kind.__name__}")
    for key, (low, high) in ranges.items():
        value = getattr(cfg, key)
        if value != value or (low is not None and value < low) or (high is not None and value > high):
            span = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
            raise ConfigError(f"{name}.{key}={value!r}: must be in {span}")


@dataclass(frozen=True)
class NoConfig:
    """Config of a loss without parameters."""


# -- the Loss object ----------------------------------------------------------------------

LossFn = Callable[["LossContext", Any], LossOutput]


class Loss:
    """A configured loss: ``loss(ctx) -> LossOutput``.

    Attributes:
        name: registry name.
        config: the frozen config dataclass instance. Change it between steps with
            ``loss.config = dataclasses.replace(loss.config, kappa=k)`` (re-validated).
        needs: subset of {"attack", "bounds", "teacher", "features"}.
        modules: ``nn.ModuleDict`` of training-only trainable modules (empty by default). The
            trainer adds their parameters to the optimizer and checkpoints them under
            ``state["loss_modules"]``; they are never part of the exported student.

    Simple losses are functions ``fn(ctx, cfg)``; losses with modules subclass ``Loss``,
    override ``prepare`` and ``compute``, and are registered as classes.
    """

    def __init__(self, name: str, config: Any, needs: frozenset[str], fn: LossFn | None = None, description: str = ""):
        self.name = name
        self.needs = frozenset(needs)
        self.description = description
        self._config_type = type(config)
        self._config = config
        self._fn = fn
        self.modules = nn.ModuleDict()

    @property
    def config(self):
        return self._config

    @config.setter
    def config(self, value):
        if type(value) is not self._config_type:
            raise ConfigError(f"loss {self.name!r} takes a {self._config_type.__name__}, got {type(value).__name__}")
        self._config = value

    def prepare(self, student: nn.Module, teacher=None) -> None:
        """Hook called once by the trainer before the optimizer is built (create ``modules`` here)."""

    def compute(self, ctx) -> LossOutput:
        if self._fn is None:
            raise NotImplementedError(f"loss {self.name!r} defines neither a function nor compute()")
        return self._fn(ctx, self._config)

    def __call__(self, ctx) -> LossOutput:
        if "teacher" in self.needs and ctx.teacher is None:
            raise ConfigError(f"loss {self.name!r} needs a teacher; set teacher: <checkpoint path> in the config")
        ctx.bind(self.needs)
        out = self.compute(ctx)
        if not isinstance(out, LossOutput):
            raise TypeError(f"loss {self.name!r} returned {type(out).__name__}, not LossOutput")
        return out

    def __repr__(self) -> str:
        return f"Loss({self.name!r}, {self._config!r})"


from .context import LossContext  # noqa: E402  (re-export; context imports nothing from here)

__all__ = [
    "NEEDS",
    "Loss",
    "LossContext",
    "LossOutput",
    "NoConfig",
    "accuracy",
    "check_config",
    "kl_distill",
    "lb_loss",
]

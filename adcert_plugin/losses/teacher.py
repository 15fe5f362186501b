"""The frozen teacher of distillation losses (methods.md Part A, shared rules).

A ``Teacher`` wraps any ``nn.Sequential`` ending in ``nn.Linear`` (features are the input of
that final layer). It is frozen for good: eval mode (its BN uses running statistics and never
updates them), ``requires_grad_(False)``, every forward under ``no_grad`` with detached
outputs. ``Teacher.train()`` is a no-op and eval mode is re-asserted at every call, so a
parent module's ``.train()`` or a stray ``teacher.model.train()`` cannot switch its BN to
batch statistics. The teacher is never part of the bounded (verified) network.
``load_teacher`` (training) reads one from a checkpoint.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models import split_head


class Teacher(nn.Module):
    """Frozen wrapper: ``logits(x_norm)`` ``[B, K]`` and ``features(x_norm)`` ``[B, F]``, both detached.

    Args:
        model: the teacher network (takes normalised input, like the student). It is frozen
            in place (eval, requires_grad False).
    """

    model: nn.Module

    def __init__(self, model: nn.Module):
        super().__init__()
        if isinstance(model, Teacher):
            model = model.model
        self.model = model
        self.model.requires_grad_(False)
        super().train(False)
        self.model.eval()

    def train(self, mode: bool = True) -> Teacher:
        """No-op: a teacher always stays in eval mode."""
        super().train(False)
        self.model.eval()
        return self

    def requires_grad_(self, requires_grad: bool = True) -> Teacher:
        """No-op: teacher parameters never require gradients."""
        self.model.requires_grad_(False)
        return self

    def _frozen(self) -> nn.Module:
        if self.model.training:
            self.model.eval()
        return self.model

    def _device_input(self, x_norm: torch.Tensor) -> torch.Tensor:
        param = next(self.model.parameters(), None)
        return x_norm if param is None else x_norm.to(param.device, param.dtype)

    def logits(self, x_norm: torch.Tensor) -> torch.Tensor:
        """Teacher logits at normalised input ``[B, C, H, W]``, on the input's device."""
        with torch.no_grad():
            return self._frozen()(self._device_input(x_norm.detach())).detach().to(x_norm.device)

    def features(self, x_norm: torch.Tensor) -> torch.Tensor:
        """Teacher penultimate (input of the final linear layer) features ``[B, F]``."""
        body, _ = split_head(self._frozen())
        with torch.no_grad():
            return body(self._device_input(x_norm.detach())).detach().to(x_norm.device)

    @property
    def feature_width(self) -> int:
        return split_head(self.model)[1].in_features

    def forward(self, x_norm: torch.Tensor) -> torch.Tensor:
        return self.logits(x_norm)

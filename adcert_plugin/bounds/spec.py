"""The threat model: ε boxes in pixel space, and the margin specification C_y.

ε is always pixel-space. ``InputBox`` clips the pixel box to [0, 1] and only then
normalises per channel (ε/σ_c), so nothing downstream ever converts ε again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class InputBox:
    """A normalised input batch and its clipped ℓ∞ box, all ``[B, C, H, W]``."""

    x_norm: torch.Tensor
    lower_norm: torch.Tensor
    upper_norm: torch.Tensor

    @staticmethod
    def from_pixels(x: torch.Tensor, eps: float, mean: Sequence[float], std: Sequence[float]) -> InputBox:
        """Box [x − ε, x + ε] ∩ [0, 1] in pixel space, then normalised per channel."""
        lower = (x - eps).clamp(0.0, 1.0)
        upper = (x + eps).clamp(0.0, 1.0)
        return InputBox(normalize(x, mean, std), normalize(lower, mean, std), normalize(upper, mean, std))

    @property
    def half_width(self) -> torch.Tensor:
        return (self.upper_norm - self.lower_norm) / 2

    def contains(self, x_norm: torch.Tensor, tol: float = 1e-6) -> torch.Tensor:
        """Per-sample bool ``[B]``: every coordinate of ``x_norm`` lies in the box."""
        inside = (x_norm >= self.lower_norm - tol) & (x_norm <= self.upper_norm + tol)
        return inside.flatten(1).all(dim=1)

    def shrink_around(self, centre: torch.Tensor, radius_norm: torch.Tensor) -> InputBox:
        """Sub-box of half-width ``radius_norm`` around ``centre``, re-centred to stay inside (SABR)."""
        radius = torch.minimum(radius_norm, self.half_width)
        centre = torch.maximum(torch.minimum(centre, self.upper_norm - radius), self.lower_norm + radius)
        return InputBox(centre, centre - radius, centre + radius)

    def detach(self) -> InputBox:
        return InputBox(self.x_norm.detach(), self.lower_norm.detach(), self.upper_norm.detach())


def _channel_view(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    shape = [1, len(values)] + [1] * (like.dim() - 2)
    return torch.as_tensor(values, dtype=like.dtype, device=like.device).view(shape)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(x − μ_c) / σ_c per channel; x is pixel-space ``[B, C, ...]``."""
    return (x - _channel_view(mean, x)) / _channel_view(std, x)


def denormalize(x_norm: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    return x_norm * _channel_view(std, x_norm) + _channel_view(mean, x_norm)


def margin_matrix(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """C_y ``[B, K-1, K]`` with rows e_y − e_j for j ≠ y, so (C_y z)_j = z_y − z_j."""
    batch = y.shape[0]
    eye = torch.eye(num_classes, device=y.device)
    rows = eye[y].unsqueeze(1) - eye.unsqueeze(0)  # [B, K, K]: row j = e_y - e_j
    keep = torch.arange(num_classes, device=y.device).unsqueeze(0) != y.unsqueeze(1)  # [B, K]
    return rows[keep].view(batch, num_classes - 1, num_classes)


def margins(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exact margins z_y − z_j, j ≠ y: ``[B, K-1]`` (same order as ``margin_matrix``)."""
    num_classes = logits.shape[1]
    true = logits.gather(1, y.unsqueeze(1))
    keep = torch.arange(num_classes, device=y.device).unsqueeze(0) != y.unsqueeze(1)
    return (true - logits)[keep].view(logits.shape[0], num_classes - 1)

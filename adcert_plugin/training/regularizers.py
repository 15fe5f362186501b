"""Warm-up regularisers of Shi et al. 2021 and the L1 penalty (methods.md B.2.2, B.2.5).

Shi, Wang, Zhang, Yi, Hsieh, "Fast certified robust training with short warmup",
NeurIPS 2021, arXiv 2103.17268. Both warm-up terms read the IBP bounds [l, u] of every ReLU's
input (``IntervalTrace.relu_inputs``) and the input box's half-width; the trainer weights their
sum by λ·(1 − ε_t/ε_max) (``schedules.reg_weight_at``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

Bounds = Sequence[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class WarmupTerms:
    """The two unweighted warm-up terms (0-dim tensors, differentiable)."""

    tightness: torch.Tensor
    relu: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        return self.tightness + self.relu


def tightness_loss(relu_inputs: Bounds, input_half_width: torch.Tensor, tolerance: float = 0.5) -> torch.Tensor:
    """L_tight = mean_ℓ ReLU(τ − t₀/t_ℓ)/τ, t = mean half-width (input box: t₀; ReLU input ℓ: t_ℓ).

    It penalises a layer whose bounds are more than 1/τ times looser than the input box.
    """
    t0 = input_half_width.mean()
    terms = [
        F.relu(tolerance - t0 / ((upper - lower) / 2).mean().clamp(min=1e-12)) / tolerance
        for lower, upper in relu_inputs
    ]
    return torch.stack(terms).mean() if terms else t0.new_zeros(())


def relu_balance_loss(relu_inputs: Bounds, tolerance: float = 0.5) -> torch.Tensor:
    """L_relu = mean_ℓ [ReLU(τ − mean_ratio) + ReLU(τ − var_ratio)]/τ.

    With centre c = (u + l)/2, A = {l > 0} (stably active), I = {u < 0} (stably inactive):
    mean_ratio = mean(c·1_A)/(−mean(c·1_I)), var_ratio = Σ_A (c − c̄)²/Σ_I (c − c̄)², each r
    replaced by min(r, 1/r). A layer whose term is NaN or inf (no stable neuron on one side) is
    skipped but still counted in the mean, as in the reference code.
    """
    total, count = None, 0
    for lower, upper in relu_inputs:
        count += 1
        centre = (upper + lower) / 2
        active, inactive = (lower > 0).to(centre.dtype), (upper < 0).to(centre.dtype)
        mean_ratio = (centre * active).mean() / -(centre * inactive).mean()
        delta = (centre - centre.mean()) ** 2
        var_ratio = (delta * active).sum() / (delta * inactive).sum()
        mean_ratio = torch.minimum(mean_ratio, 1 / mean_ratio.clamp(min=1e-12))
        var_ratio = torch.minimum(var_ratio, 1 / var_ratio.clamp(min=1e-12))
        term = (F.relu(tolerance - mean_ratio) + F.relu(tolerance - var_ratio)) / tolerance
        if torch.isfinite(term):
            total = term if total is None else total + term
    if total is None:
        device = relu_inputs[0][0].device if relu_inputs else None
        return torch.zeros((), device=device)
    return total / count


def warmup_terms(relu_inputs: Bounds, input_half_width: torch.Tensor, tolerance: float = 0.5) -> WarmupTerms:
    """Both warm-up terms from one set of ReLU-input bounds."""
    return WarmupTerms(
        tightness_loss(relu_inputs, input_half_width, tolerance), relu_balance_loss(relu_inputs, tolerance)
    )


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Σ|W| over the weights of every Conv and Linear layer (biases and BN excluded)."""
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]
    if not weights:
        return torch.zeros(())
    return torch.stack([w.abs().sum() for w in weights]).sum()

"""Frozen batch statistics: forward any batch with the BN statistics of another (the ctbench convention).

CTBench (methods.md §9, the AD-CERT paper's framework) forwards the clean batch first in train
mode, then freezes the BatchNorm statistics that batch produced: the attack (in train mode),
the adversarial forward and the IBP bound all normalise with the clean batch's mean and biased
variance, and the running statistics move once per step, with the clean batch. The statistics
are not detached there, so the robust loss's gradient also flows through them; so it does here.

``batch_statistics(model, x)`` computes the per-BN (mean, biased variance) of ``x`` (no running
update); ``forward_with_statistics(model, x, stats)`` is the train-mode forward of ``x`` with those
statistics frozen, and returns the penultimate features too. The interval pass reaches the same
statistics by taking the clean batch as its ``stats_input``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

_BN = nn.modules.batchnorm._BatchNorm


@dataclass(frozen=True)
class BatchStatistics:
    """(mean, biased variance) per BatchNorm of a chain, in order; differentiable unless detached."""

    moments: tuple[tuple[torch.Tensor, torch.Tensor], ...]

    def detach(self) -> BatchStatistics:
        return BatchStatistics(tuple((m.detach(), v.detach()) for m, v in self.moments))


def _reduce_dims(x: torch.Tensor) -> list[int]:
    return [0] + list(range(2, x.dim()))


def _normalise(bn: Any, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    shape = [1, -1] + [1] * (x.dim() - 2)
    out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + bn.eps)
    if bn.affine:
        out = out * bn.weight.view(shape) + bn.bias.view(shape)
    return out


def _layers(model: nn.Module) -> list[nn.Module]:
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"frozen batch statistics need an nn.Sequential chain, got {type(model).__name__}")
    return list(model)


def batch_statistics(model: nn.Module, x: torch.Tensor) -> BatchStatistics:
    """Per-BN statistics of the batch ``x`` as a train-mode forward computes them (running stats untouched)."""
    moments = []
    for layer in _layers(model):
        if isinstance(layer, _BN):
            var, mean = torch.var_mean(x, _reduce_dims(x), correction=0)
            moments.append((mean, var))
            x = _normalise(layer, x, mean, var)
        else:
            x = layer(x)
    return BatchStatistics(tuple(moments))


def forward_with_statistics(
    model: nn.Module, x: torch.Tensor, stats: BatchStatistics
) -> tuple[torch.Tensor, torch.Tensor]:
    """(penultimate features, logits) of ``x``, every BN normalising with ``stats`` (frozen)."""
    layers = _layers(model)
    moments = iter(stats.moments)
    for layer in layers[:-1]:
        if isinstance(layer, _BN):
            try:
                mean, var = next(moments)
            except StopIteration:
                raise ValueError("the statistics were computed on a chain with fewer BatchNorm layers") from None
            x = _normalise(layer, x, mean, var)
        else:
            x = layer(x)
    return x, layers[-1](x)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, _BN) for m in model.modules())

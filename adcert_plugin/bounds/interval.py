"""Native interval bound propagation for plain sequential ReLU networks.

auto_LiRPA's general graph machinery costs more than the arithmetic for a chain of
Conv/Linear/BN/ReLU/Flatten layers, so ``lirpa.py`` routes IBP on such chains here. The
result is tested to agree with auto_LiRPA's IBP and to contain sampled outputs.

Bounds are carried in centre/radius form: an affine map W sends (c, r) to (Wc + b, |W| r),
which is exact interval arithmetic for one layer and needs one pass for each of c and r.
A batch of "statistics inputs" (the batch BN normalises with in train mode, as in
auto_LiRPA) rides along with the centre, so its logits come out of the same pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.Flatten, nn.Identity)


def supports(model: nn.Module) -> bool:
    """True when ``model`` is a chain this module bounds exactly like auto_LiRPA's IBP."""
    return isinstance(model, nn.Sequential) and all(isinstance(m, SUPPORTED) for m in model)


@dataclass
class IntervalTrace:
    """Everything one propagation yields.

    Attributes:
        lower, upper: output bounds ``[B, K]`` (or margin bounds when a spec was applied).
        stats_out: the network's output at the statistics input ``[B, K]`` (None if none given).
        relu_inputs: (lower, upper) of every ReLU's input, in order, for the warm-up regularisers.
    """

    lower: torch.Tensor
    upper: torch.Tensor
    stats_out: torch.Tensor | None = None
    relu_inputs: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)


def _affine(layer: nn.Module, centre: torch.Tensor, radius: torch.Tensor):
    if isinstance(layer, nn.Linear):
        return F.linear(centre, layer.weight, layer.bias), F.linear(radius, layer.weight.abs())
    conv = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
    return F.conv2d(centre, layer.weight, layer.bias, **conv), F.conv2d(radius, layer.weight.abs(), None, **conv)


def _bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm, stats: torch.Tensor | None, track: bool):
    """Per-channel (scale, shift) of the BN affine map, and the normalised stats batch.

    In train mode the batch statistics of ``stats`` are used (biased variance, as torch
    normalises); with ``track`` the running statistics are updated as a train-mode forward would.
    """
    if bn.training:
        dims = [0] + list(range(2, stats.dim()))
        mean = stats.mean(dims)
        var = stats.var(dims, unbiased=False)
        running = (bn.running_mean, bn.running_var) if track else (None, None)
        normed = F.batch_norm(stats, *running, bn.weight, bn.bias, True,
                              bn.momentum if bn.momentum is not None else 0.1, bn.eps)
    else:
        mean, var = bn.running_mean, bn.running_var
        normed = None if stats is None else F.batch_norm(stats, mean, var, bn.weight, bn.bias, False, 0.0, bn.eps)
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -mean * scale + (bn.bias if bn.bias is not None else 0.0)
    return scale, shift, normed


def _channel(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view([1, -1] + [1] * (like.dim() - 2))


def propagate(model: nn.Sequential, lower: torch.Tensor, upper: torch.Tensor,
              stats_input: torch.Tensor | None = None, spec: torch.Tensor | None = None,
              keep_relu_inputs: bool = False, track_running_stats: bool = False) -> IntervalTrace:
    """Interval bounds of ``model`` over the box [lower, upper] (normalised input space).

    Args:
        model: a chain for which ``supports(model)`` holds.
        lower, upper: the input box ``[B, C, H, W]``.
        stats_input: the batch whose statistics train-mode BN uses (required when a BN layer is
            in train mode); its output is returned as ``stats_out``.
        spec: optional C ``[B, S, K]`` folded into the last linear layer, so the bounds are on
            C·z directly (tighter than bounding z first).
        keep_relu_inputs: also return the bounds of every ReLU's input.
        track_running_stats: let train-mode BN update its running statistics from
            ``stats_input`` (when its output stands in for the model's own forward).
    """
    centre, radius = (upper + lower) / 2, (upper - lower) / 2
    stats = stats_input
    relu_inputs = []
    last = len(model) - 1
    for index, layer in enumerate(model):
        if index == last and spec is not None and isinstance(layer, nn.Linear):
            return _final_spec(layer, centre, radius, stats, spec, relu_inputs)
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            centre, radius = _affine(layer, centre, radius)
            if stats is not None:
                stats = layer(stats)
        elif isinstance(layer, nn.modules.batchnorm._BatchNorm):
            scale, shift, stats = _bn_scale_shift(layer, stats, track_running_stats)
            centre = centre * _channel(scale, centre) + _channel(shift, centre)
            radius = radius * _channel(scale.abs(), radius)
        elif isinstance(layer, nn.ReLU):
            low, up = centre - radius, centre + radius
            if keep_relu_inputs:
                relu_inputs.append((low, up))
            low, up = low.clamp(min=0), up.clamp(min=0)
            centre, radius = (up + low) / 2, (up - low) / 2
            if stats is not None:
                stats = torch.relu(stats)
        elif isinstance(layer, nn.Flatten):
            centre, radius = layer(centre), layer(radius)
            if stats is not None:
                stats = layer(stats)
        elif not isinstance(layer, nn.Identity):
            raise TypeError(f"interval.propagate does not support {type(layer).__name__}")
    if spec is not None:
        centre, radius = (torch.einsum("bsk,bk->bs", spec, centre), torch.einsum("bsk,bk->bs", spec.abs(), radius))
        stats = None if stats is None else torch.einsum("bsk,bk->bs", spec, stats)
    return IntervalTrace(centre - radius, centre + radius, stats, relu_inputs)


def _final_spec(layer: nn.Linear, centre, radius, stats, spec, relu_inputs) -> IntervalTrace:
    """Bounds of C·(W h + b) over the box of h, with C·W formed first (per sample)."""
    weight = torch.einsum("bsk,kf->bsf", spec, layer.weight)  # [B, S, F]
    bias = torch.einsum("bsk,k->bs", spec, layer.bias) if layer.bias is not None else 0.0
    mid = torch.einsum("bsf,bf->bs", weight, centre) + bias
    rad = torch.einsum("bsf,bf->bs", weight.abs(), radius)
    stats_out = None if stats is None else layer(stats)
    return IntervalTrace(mid - rad, mid + rad, stats_out, relu_inputs)

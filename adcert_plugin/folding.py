"""Eval-mode BatchNorm as an affine map, and a BN-folded forward for attacks.

In eval mode BN is y = scale·x + shift per channel (running statistics). Folded into the
Conv2d before it, it costs nothing: no BN pass forward, none backward. PGD runs the student
in eval mode once or more per training step, so ``folded_eval_forward`` gives it that
network. On the CPU it also runs wide convolutions (64 channels and more, as in CNN7) in
channels-last layout, which oneDNN computes faster there (CNN7 attack: about 0.51 s instead
of 0.54 s per batch of 100 on one thread); for narrow ones (the 16/32 channels of small-cnn)
that layout is about 20% slower, so they keep theirs. The result is the same function as
``model.eval()`` up to float rounding; callers that judge robustness re-check points on the
model itself.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .errors import UnsupportedModelError

Forward = Callable[[torch.Tensor], torch.Tensor]


def bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm,
                   dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) of an eval-mode BN, y = scale·x + shift (detached).

    ``dtype``: compute in this precision (export folds in float64); default the BN's own.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise UnsupportedModelError(f"{bn} has no running statistics (track_running_stats=False); "
                                    "its eval mode is not an affine map and cannot be folded")
    cast = (lambda t: t.detach().to(dtype)) if dtype is not None else (lambda t: t.detach())
    scale = torch.rsqrt(cast(bn.running_var) + bn.eps)
    shift = -cast(bn.running_mean) * scale
    if bn.affine:
        scale = scale * cast(bn.weight)
        shift = shift * cast(bn.weight) + cast(bn.bias)
    return scale, shift


def folded_eval_forward(model: nn.Module, channels_last: bool | None = None) -> Forward:
    """A function computing ``model.eval()(x)`` with every BN folded, on detached weights.

    The weights are read now: build it again after the model changes. Gradients flow to the
    input only. A ``Conv2d`` followed by a BN gets the folded weights; a ``Linear`` followed by
    a BN gets the affine map on its (small) output; any other child, and any model that is not
    an ``nn.Sequential``, runs as itself, so the caller must put the model in eval mode.

    Args:
        model: the network (adcert models are ``nn.Sequential``).
        channels_last: run convolutions in channels-last layout; default: on the CPU when every
            convolution has at least ``WIDE_CONV`` output channels.
    """
    if not isinstance(model, nn.Sequential) or not _plain_batchnorms(model):
        return model
    if channels_last is None:
        channels_last = _prefers_channels_last(model)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    ops: list[Forward] = []
    children = list(model)
    with torch.no_grad():
        i = 0
        while i < len(children):
            layer, after = children[i], children[i + 1] if i + 1 < len(children) else None
            bn = after if _folds_into(layer) and isinstance(after, nn.modules.batchnorm._BatchNorm) else None
            ops.append(_folded_op(layer, bn, layout))
            i += 1 if bn is None else 2
    return _chain(ops, layout)


WIDE_CONV = 64


def _prefers_channels_last(model: nn.Sequential) -> bool:
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    on_cpu = all(c.weight.device.type == "cpu" for c in convs)
    return bool(convs) and on_cpu and all(c.out_channels >= WIDE_CONV for c in convs)


def _plain_batchnorms(model: nn.Sequential) -> bool:
    """Every BN child has running statistics (otherwise eval mode is not affine): fold them."""
    return all(m.running_mean is not None for m in model if isinstance(m, nn.modules.batchnorm._BatchNorm))


def _folds_into(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Linear) or (isinstance(layer, nn.Conv2d) and layer.padding_mode == "zeros")


def _folded_op(layer: nn.Module, bn, layout) -> Forward:
    """The op for ``layer`` (and the ``bn`` right after it, when given)."""
    if isinstance(layer, nn.Conv2d) and layer.padding_mode == "zeros":
        return _conv_op(layer, bn, layout)
    if isinstance(layer, nn.Linear):
        return _linear_op(layer, bn)
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):  # a BN after anything else: affine
        return _affine_op(*bn_scale_shift(layer))
    return layer


def _conv_op(conv: nn.Conv2d, bn, layout) -> Forward:
    weight = conv.weight.detach()
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(weight[:, 0, 0, 0])
    if bn is not None:
        scale, shift = bn_scale_shift(bn)
        weight, bias = weight * scale.view(-1, 1, 1, 1), bias * scale + shift
    weight = weight.contiguous(memory_format=layout)
    args = (conv.stride, conv.padding, conv.dilation, conv.groups)
    return lambda x: F.conv2d(x, weight, bias, *args)


def _linear_op(linear: nn.Linear, bn) -> Forward:
    # Scaling the output [B, F] is cheaper than rescaling a large weight matrix every step.
    weight = linear.weight.detach()
    bias = linear.bias.detach() if linear.bias is not None else None
    if bn is None:
        return lambda x: F.linear(x, weight, bias)
    scale, shift = bn_scale_shift(bn)
    return lambda x: torch.addcmul(shift, F.linear(x, weight, bias), scale)


def _affine_op(scale: torch.Tensor, shift: torch.Tensor) -> Forward:
    def affine(x):
        view = [1, -1] + [1] * (x.dim() - 2)
        return torch.addcmul(shift.view(view), x, scale.view(view))
    return affine


def _chain(ops: list[Forward], layout) -> Forward:
    def forward(x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.contiguous(memory_format=layout)
        for op in ops:
            x = op(x)
        return x
    return forward

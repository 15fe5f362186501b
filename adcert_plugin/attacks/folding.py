"""Eval-mode BatchNorm as an affine map, and a BN-folded forward for attacks.

In eval mode BN is y = scale·x + shift per channel (running statistics). Folded into the
Conv2d before it, it costs nothing: no BN pass forward, none backward. PGD runs the student
in eval mode once or more per training step, so ``folded_eval_forward`` gives it that
network. On the CPU it also runs the convolutions in channels-last layout, which oneDNN
computes faster (CNN7 attack: 0.86x the NCHW time; small-cnn PGD-1 0.86x, PGD-10 0.96x,
``benchmarks/attack_cost.py``). For wide convolutions (64 channels and more, as in CNN7) a
conv followed by a ReLU runs as one oneDNN kernel with the ReLU as its post-op, without a
separate pass over the activation (CNN7 attack about 5% faster; small-cnn's is slower fused).
A one-channel first conv gets its input gradient by matmul + col2im (``_conv_input_grad``),
which oneDNN computes slowly for that shape (small-cnn PGD-10 0.81x the time). The result is the same
function as ``model.eval()`` up to float rounding; callers that judge robustness re-check
points on the model itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from ..bounds.layout import (  # noqa: F401
    WIDE_CONV,
    in_layout as _in_layout,
    prefers_channels_last as _prefers_channels_last,
    wide_convolutions,
)
from ..errors import UnsupportedModelError

Forward = Callable[[torch.Tensor], torch.Tensor]


def bn_scale_shift(
    bn: nn.modules.batchnorm._BatchNorm, dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) of an eval-mode BN, y = scale·x + shift (detached).

    ``dtype``: compute in this precision (export folds in float64); default the BN's own.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise UnsupportedModelError(
            f"{bn} has no running statistics (track_running_stats=False); "
            "its eval mode is not an affine map and cannot be folded"
        )
    cast = (lambda t: t.detach().to(dtype)) if dtype is not None else (lambda t: t.detach())
    scale = torch.rsqrt(cast(bn.running_var) + bn.eps)
    shift = -cast(bn.running_mean) * scale
    if bn.affine:
        scale = scale * cast(bn.weight)
        shift = shift * cast(bn.weight) + cast(bn.bias)
    return scale, shift


def folded_eval_forward(model: nn.Module, channels_last: bool | None = None, fuse_relu: bool | None = None) -> Forward:
    """A function computing ``model.eval()(x)`` with every BN folded, on detached weights.

    The weights are read now: build it again after the model changes. Gradients flow to the
    input only. A ``Conv2d`` followed by a BN gets the folded weights; a ``Linear`` followed by
    a BN gets the affine map on its (small) output; any other child, and any model that is not
    an ``nn.Sequential``, runs as itself, so the caller must put the model in eval mode.

    Args:
        model: the network (adcert models are ``nn.Sequential``).
        channels_last: run convolutions in channels-last layout; default: on the CPU
            (``layout.prefers_channels_last``).
        fuse_relu: run each conv + ReLU as one kernel where this torch build can (see
            ``fused_conv_relu_available``); default: with channels-last when every convolution has
            at least ``WIDE_CONV`` output channels. For narrow ones it measured slower (small-cnn's
            attack 5-15%), and in NCHW too (about 17%: oneDNN reorders the activations for it).
    """
    if not isinstance(model, nn.Sequential) or not _plain_batchnorms(model):
        return model
    if channels_last is None:
        channels_last = _prefers_channels_last(model)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    fuse_relu = channels_last and wide_convolutions(model) if fuse_relu is None else fuse_relu
    ops: list[Forward] = []
    children = list(model)
    with torch.no_grad():
        i = 0
        while i < len(children):
            layer, after = children[i], children[i + 1] if i + 1 < len(children) else None
            bn = after if _folds_into(layer) and isinstance(after, nn.modules.batchnorm._BatchNorm) else None
            i += 1 if bn is None else 2
            relu = fuse_relu and _fuses_relu(layer, children[i] if i < len(children) else None)
            ops.append(_folded_op(layer, bn, layout, relu))
            if relu:
                i += 1  # the ReLU ran inside the conv's kernel
    return _chain(ops, layout)


def _plain_batchnorms(model: nn.Sequential) -> bool:
    """Every BN child has running statistics (otherwise eval mode is not affine): fold them."""
    return all(m.running_mean is not None for m in model if isinstance(m, nn.modules.batchnorm._BatchNorm))


def _folds_into(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Linear) or (isinstance(layer, nn.Conv2d) and layer.padding_mode == "zeros")


def _fuses_relu(layer: nn.Module, after: nn.Module | None) -> bool:
    """A zero-padded CPU float32 conv (with its folded BN) followed by a ReLU can run fused."""
    return (
        isinstance(after, nn.ReLU)
        and isinstance(layer, nn.Conv2d)
        and layer.padding_mode == "zeros"
        and layer.groups == 1
        and layer.weight.device.type == "cpu"
        and layer.weight.dtype == torch.float32
        and fused_conv_relu_available()
    )


def _folded_op(layer: nn.Module, bn, layout, relu: bool = False) -> Forward:
    """The op for ``layer`` (and the ``bn`` right after it, when given; and the ReLU after, if ``relu``)."""
    if isinstance(layer, nn.Conv2d) and layer.padding_mode == "zeros":
        return _conv_op(layer, bn, layout, relu)
    if isinstance(layer, nn.Linear):
        return _linear_op(layer, bn)
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):  # a BN after anything else: affine
        return _affine_op(*bn_scale_shift(layer))
    return layer


def _conv_op(conv: nn.Conv2d, bn, layout, relu: bool = False) -> Forward:
    weight = conv.weight.detach()
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(weight[:, 0, 0, 0])
    if bn is not None:
        scale, shift = bn_scale_shift(bn)
        weight, bias = weight * scale.view(-1, 1, 1, 1), bias * scale + shift
    weight = weight.contiguous(memory_format=layout)
    args = (conv.stride, conv.padding, conv.dilation, conv.groups)
    if relu:
        return lambda x: _ConvReLU.apply(x, weight, bias, *args)
    if _folds_input_grad(weight, conv.groups):
        return lambda x: _InputConv.apply(x, weight, bias, *args)
    return lambda x: F.conv2d(x, weight, bias, *args)


# -- the input gradient of a one-channel conv (CPU) --------------------------------------
# An attack differentiates the network with respect to its input, so the first conv's input
# gradient is a transposed convolution back to ONE channel; oneDNN computes that shape slowly
# (small-cnn's 1→16 conv: 8.3 ms against a 3.4 ms forward, batch 100, one thread; CNN7's 1→64:
# 48 ms against 12 ms). As one matmul and a col2im (``F.fold``) it takes 3.4 ms and 15 ms.


def _folds_input_grad(weight: torch.Tensor, groups: int) -> bool:
    return weight.shape[1] == 1 and groups == 1 and weight.device.type == "cpu"


def _conv_input_grad(grad_out, x, weight, stride, padding, dilation, groups):
    """d(conv2d(x, weight))/dx applied to ``grad_out``: matmul + col2im for one input channel."""
    if _folds_input_grad(weight, groups):
        batch, channels = grad_out.shape[:2]
        columns = torch.matmul(weight.reshape(channels, -1).t(), grad_out.reshape(batch, channels, -1))
        return F.fold(columns, x.shape[-2:], weight.shape[-2:], dilation=dilation, padding=padding, stride=stride)
    (grad_x, _, _) = torch.ops.aten.convolution_backward(
        grad_out,
        x,
        weight,
        None,
        list(stride),
        list(padding),
        list(dilation),
        False,
        [0, 0],
        groups,
        [True, False, False],
    )
    return grad_x


class _InputConv(torch.autograd.Function):
    """conv2d(x, w, b) with constant w, b: the backward gives the gradient of ``x`` only."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight)
        ctx.conv_args = (stride, padding, dilation, groups)
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        return _conv_input_grad(grad_out, x, weight, *ctx.conv_args), None, None, None, None, None, None


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
            x = _in_layout(x, layout)
        for op in ops:
            x = op(x)
        return x

    return forward


# -- conv + ReLU in one oneDNN kernel (CPU) ---------------------------------------------
# The ReLU after a conv is a separate pass over a large activation; oneDNN can apply it as
# the conv's post-op (torch's own CPU compiler does the same). Its op is private to torch, so
# it is used only after a one-time check that it exists and computes relu(conv2d(x)).


def _fused_conv_relu(x, weight, bias, stride, padding, dilation, groups):
    return torch.ops.mkldnn._convolution_pointwise(
        x, weight, bias, list(padding), list(stride), list(dilation), groups, "relu", [], ""
    )


class _ConvReLU(torch.autograd.Function):
    """relu(conv2d(x, w, b)), fused forward; backward gives the gradient of ``x`` only (w, b are constants)."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        out = _fused_conv_relu(x, weight, bias, stride, padding, dilation, groups)
        ctx.save_for_backward(x, weight, out)
        ctx.conv_args = (stride, padding, dilation, groups)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, weight, out = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv_args
        grad_pre = torch.ops.aten.threshold_backward(grad_out, out, 0)
        grad_x = _conv_input_grad(grad_pre, x, weight, stride, padding, dilation, groups)
        return grad_x, None, None, None, None, None, None


@functools.lru_cache(maxsize=1)
def fused_conv_relu_available() -> bool:
    """This torch build has the fused kernel, and ``_ConvReLU`` matches conv2d + ReLU on a probe
    (values and input gradient, both layouts, an odd stride and padding)."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")):
        return False
    with torch.enable_grad():  # the first caller may be inside no_grad (folded_eval_forward is)
        return _probe_fused_conv_relu()


def _probe_fused_conv_relu() -> bool:
    gen = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(*shape, generator=gen) for shape in ((2, 3, 7, 7), (5, 3, 3, 3), (5,)))
    args = ((2, 1), (1, 0), (1, 1), 1)
    expected = F.conv2d(x.requires_grad_(True), w, b, *args).relu()
    (expected_grad,) = torch.autograd.grad(expected.sum(), x)
    try:
        for layout in (torch.contiguous_format, torch.channels_last):
            xl = x.detach().contiguous(memory_format=layout).requires_grad_(True)
            got = _ConvReLU.apply(xl, w.contiguous(memory_format=layout), b, *args)
            (got_grad,) = torch.autograd.grad(got.sum(), xl)
            if not (
                torch.allclose(got, expected, rtol=1e-4, atol=1e-5)
                and torch.allclose(got_grad, expected_grad, rtol=1e-4, atol=1e-5)
            ):
                return False
    except (RuntimeError, TypeError):  # the private op's signature changed in this build
        return False
    return True

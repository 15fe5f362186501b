"""Native interval bound propagation for plain sequential ReLU networks.

auto_LiRPA's general graph machinery costs more than the arithmetic for a chain of
Conv/Linear/BN/ReLU/Flatten layers, so ``lirpa.py`` routes IBP on such chains here. The
result is tested to agree with auto_LiRPA's IBP and to contain sampled outputs.

Bounds are carried in centre/radius form: an affine map W sends (c, r) to (Wc + b, |W| r),
which is exact interval arithmetic for one layer and needs one pass for each of c and r.
A batch of "statistics inputs" (the batch BN normalises with in train mode, as in
auto_LiRPA) rides along with the centre, so its logits come out of the same pass.

This pass is most of an IBP-family training step, and on the CPU its elementwise work and
fresh allocations cost about as much as its convolutions, so (each tested against the plain
layer-by-layer form, ``tests/test_interval_fast_paths.py``):
- a BN after a conv is folded into that conv's weights for centre and radius (``_conv_bn``);
- train-mode BN statistics and their gradients come from one batch-norm kernel (``_BatchStats``,
  behind a probe; the autograd form is the fallback);
- the interval ReLU is one autograd function with a short backward (``_IntervalReLU``), on
  large CPU tensors one compiled loop each way (``fused.py``);
- a linear layer's three products share one weight-gradient buffer (``_IntervalLinear``);
- CPU convolutions run channels-last, as the attack's do (``_layout``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from . import fused
from .layout import in_layout as _in_layout, prefers_channels_last as _prefers_channels_last

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
        head_input: (lower, upper) of the final linear layer's input (the penultimate features
            ``[B, F]``), when asked for: the feature box CC-Dist distils, from the same pass.
        head_stats: the final layer's input at the statistics input (the penultimate features there).
    """

    lower: torch.Tensor
    upper: torch.Tensor
    stats_out: torch.Tensor | None = None
    relu_inputs: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    head_input: tuple[torch.Tensor, torch.Tensor] | None = None
    head_stats: torch.Tensor | None = None


def _conv_args(conv: nn.Conv2d):
    return conv.stride, conv.padding, conv.dilation, conv.groups


def _affine(layer: nn.Module, centre: torch.Tensor, radius: torch.Tensor):
    if isinstance(layer, nn.Linear):
        return F.linear(centre, layer.weight, layer.bias), F.linear(radius, layer.weight.abs())
    args = _conv_args(layer)
    return F.conv2d(centre, layer.weight, layer.bias, *args), F.conv2d(radius, layer.weight.abs(), None, *args)


class _IntervalLinear(torch.autograd.Function):
    """(centre, radius, stats) through a linear layer: (W c + b, |W| r, W s + b) in one function.

    Autograd would form d|W| = sgn(W)·g as a fresh weight-sized tensor and add three weight-sized
    gradients (centre, radius, stats) one after another; CNN7's first linear layer has 12.8M
    weights, so those passes and allocations cost more than its small matmuls' arithmetic. Here
    the radius term is formed in one buffer, signed in place, and the centre and stats terms are
    accumulated into it by ``addmm_``. Same gradients (sgn(0) = 0, as autograd's abs).
    """

    @staticmethod
    def forward(ctx, centre, radius, stats, weight, bias):
        abs_weight = weight.abs()
        ctx.save_for_backward(centre, radius, stats, weight, abs_weight)
        ctx.has_stats, ctx.has_bias = stats is not None, bias is not None
        out_stats = None if stats is None else F.linear(stats, weight, bias)
        return F.linear(centre, weight, bias), radius.matmul(abs_weight.t()), out_stats

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_centre, grad_radius, grad_stats):
        centre, radius, stats, weight, abs_weight = ctx.saved_tensors
        grads = [(grad_centre, centre), (grad_stats, stats)] if ctx.has_stats else [(grad_centre, centre)]
        grads = [(g, x) for g, x in grads if g is not None]
        need = ctx.needs_input_grad
        grad_w = grad_b = None
        if need[3]:
            grad_w = (
                grad_radius.t().matmul(radius).mul_(weight.sgn())
                if grad_radius is not None
                else torch.zeros_like(weight)
            )
            for g, x in grads:
                grad_w.addmm_(g.t(), x)
        if ctx.has_bias and need[4]:
            grad_b = sum(g.sum(0) for g, _ in grads) if grads else None
        return (
            grad_centre.matmul(weight) if need[0] and grad_centre is not None else None,
            grad_radius.matmul(abs_weight) if need[1] and grad_radius is not None else None,
            grad_stats.matmul(weight) if ctx.has_stats and need[2] and grad_stats is not None else None,
            grad_w,
            grad_b,
        )


def _folds_bn(layer: nn.Module, after: nn.Module | None) -> bool:
    """A zero-padded conv followed by a BN: the BN's per-channel affine map goes into the conv's
    weights, which are far smaller than its output (CNN7: 147k against 3.2M values), so the
    centre and radius skip two elementwise passes each way and the tensors they would save."""
    return (
        isinstance(layer, nn.Conv2d)
        and layer.padding_mode == "zeros"
        and isinstance(after, nn.modules.batchnorm._BatchNorm)
    )


def _conv_bn(conv: nn.Conv2d, bn, centre, radius, stats, track: bool):
    """conv then BN on (centre, radius, stats), the BN folded into the conv for centre and radius.

    BN·conv is the affine map (scale·W, scale·b + shift) and its radius map |scale·W| = |scale|·|W|:
    the same interval arithmetic as the two layers one after the other, up to float rounding.
    Train-mode BN takes its statistics from the stats batch, so that batch's conv runs first.
    """
    if stats is not None:
        stats = conv(stats)
    scale, shift, stats = _bn_scale_shift(bn, stats, track)
    weight = conv.weight * scale.view(-1, 1, 1, 1)
    bias = shift if conv.bias is None else torch.addcmul(shift, conv.bias, scale)
    args = _conv_args(conv)
    return F.conv2d(centre, weight, bias, *args), F.conv2d(radius, weight.abs(), None, *args), stats


def _bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm, stats: torch.Tensor | None, track: bool):
    """Per-channel (scale, shift) of the BN affine map, and the normalised stats batch.

    In train mode the batch statistics of ``stats`` are used (biased variance, as torch
    normalises); with ``track`` the running statistics are updated as a train-mode forward would.
    """
    if bn.training:
        if stats is None:
            raise ValueError("a train-mode BatchNorm needs stats_input (the batch it normalises with)")
        running = (bn.running_mean, bn.running_var) if track else (None, None)
        momentum = bn.momentum if bn.momentum is not None else 0.1
        if fused_batch_stats_available():
            normed, mean, invstd = _BatchStats.apply(stats, bn.weight, bn.bias, *running, momentum, bn.eps)
        else:
            normed, mean, invstd = _batch_stats_autograd(
                stats,
                bn.weight,
                bn.bias,
                *running,
                momentum,  # type: ignore[call-arg]
                bn.eps,
            )
    else:
        mean, invstd = bn.running_mean, torch.rsqrt(bn.running_var + bn.eps)
        normed = (
            None
            if stats is None
            else F.batch_norm(stats, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        )
    scale = invstd if bn.weight is None else invstd * bn.weight
    shift = -mean * scale + (bn.bias if bn.bias is not None else 0.0)
    return scale, shift, normed


def _batch_stats_autograd(x, weight, bias, running_mean, running_var, momentum, eps):
    """(BN(x), batch mean, 1/sqrt(batch var + eps)), all differentiable: the reference form."""
    var, mean = torch.var_mean(x, [0] + list(range(2, x.dim())), correction=0)
    normed = F.batch_norm(x, running_mean, running_var, weight, bias, True, momentum, eps)
    return normed, mean, torch.rsqrt(var + eps)


class _BatchStats(torch.autograd.Function):
    """``_batch_stats_autograd`` from ONE train-mode batch-norm kernel, which already computes the
    batch mean and 1/std it returns; a separate var_mean pass (measured 2-4x that kernel's time on
    CNN7 activations) and its autograd chain are gone. The backward adds the mean's and 1/std's
    gradients to batch norm's own: d mean/dx = 1/n, d (1/std)/dx = -(x - mean)/(n std^3)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
        normed, mean, invstd = torch.native_batch_norm(x, weight, bias, running_mean, running_var, True, momentum, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps, ctx.has_weight, ctx.has_bias = eps, weight is not None, bias is not None
        return normed, mean, invstd

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_normed, grad_mean, grad_invstd):
        x, weight, mean, invstd = ctx.saved_tensors
        grad_x, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
            grad_normed, x, weight, None, None, mean, invstd, True, ctx.eps, [True, ctx.has_weight, ctx.has_bias]
        )
        n = x.numel() // x.shape[1]
        per_x = -grad_invstd * invstd.pow(3) / n  # the 1/std term is per_x·(x − mean)
        constant = grad_mean / n - mean * per_x
        grad_x.addcmul_(x, _channel(per_x, x)).add_(_channel(constant, x))
        return grad_x, grad_w, grad_b, None, None, None, None


@functools.lru_cache(maxsize=1)
def fused_batch_stats_available() -> bool:
    """``_BatchStats`` matches ``_batch_stats_autograd`` on a probe (values, running statistics and
    the gradients of x, weight and bias; NCHW, channels-last and 2-d); else the reference form runs."""
    try:
        with torch.enable_grad():
            return all(
                _probe_batch_stats(shape, layout)
                for shape, layout in (
                    ((5, 3, 4, 3), torch.contiguous_format),
                    ((5, 3, 4, 3), torch.channels_last),
                    ((6, 4), None),
                )
            )
    except (RuntimeError, TypeError):  # an aten signature changed in this build
        return False


def _probe_batch_stats(shape, layout) -> bool:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=gen) * 3 + 1
    x = x if layout is None else x.contiguous(memory_format=layout)
    channels = shape[1]
    params = [torch.rand(channels, generator=gen) + 0.5, torch.randn(channels, generator=gen)]
    weights = [torch.randn(shape, generator=gen) for _ in range(3)]
    results = []
    for fn in (_BatchStats.apply, _batch_stats_autograd):
        leaves = [t.detach().clone().requires_grad_(True) for t in (x, *params)]
        running = [torch.zeros(channels), torch.ones(channels)]
        normed, mean, invstd = fn(*leaves, *running, 0.1, 1e-5)  # type: ignore[call-arg]  # lists: 3 + 2
        objective = (
            (normed * weights[0]).sum()
            + (mean * weights[1][0, :, ...].flatten()[:channels]).sum()
            + (invstd * weights[2][0, :, ...].flatten()[:channels]).sum()
        )
        results.append([normed, mean, invstd, *running, *torch.autograd.grad(objective, leaves)])
    return all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(*results))


def _channel(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view([1, -1] + [1] * (like.dim() - 2))


class _IntervalReLU(torch.autograd.Function):
    """(centre, radius) through a ReLU: [c − r, c + r] clamped at 0, back in centre/radius form.

    With h = max((c + r) / 2, 0) the result is c' = max(c, h), r' = min(r, h) for r ≥ 0 (which every
    radius here is): c ≥ r (the ReLU passes the box) gives (c, r), |c| < r gives (h, h), c + r ≤ 0
    gives (0, 0) — the same interval as ``_relu_autograd``'s ((u⁺ + l⁺)/2, (u⁺ − l⁺)/2), with one
    rounding where that form has three. The gradient is that form's (clamp passes it at ≥ 0), from
    byte masks instead of saved float tensors. On large CPU tensors both directions run as one
    compiled loop each (``fused.py``); the eager form below is the same arithmetic.
    """

    @staticmethod
    def forward(ctx, centre, radius):
        ctx.fused = fused.applies(centre, radius)
        if ctx.fused:
            centre, radius, code = fused.relu_forward(centre, radius)
            ctx.save_for_backward(code)
            return centre, radius
        half_up = torch.add(centre, radius).mul_(0.5)
        up_off, low_on = half_up < 0, centre >= radius  # where clamp(min=0) stops/passes the gradient
        half_up.clamp_(min=0)
        ctx.save_for_backward(up_off, low_on)
        return torch.maximum(centre, half_up), torch.minimum(radius, half_up)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_centre, grad_radius):
        if ctx.fused:
            return fused.relu_backward(*ctx.saved_tensors, grad_centre, grad_radius)
        up_off, low_on = ctx.saved_tensors
        # Where c ≥ r the ReLU is the identity; where only c + r ≥ 0 both outputs are (c + r)/2.
        straddle = torch.add(grad_centre, grad_radius).mul_(0.5).masked_fill_(up_off, 0)
        return torch.where(low_on, grad_centre, straddle), torch.where(low_on, grad_radius, straddle)


def _relu_autograd(centre, radius):
    """The reference form; used when the ReLU-input bounds themselves are returned (and differentiated)."""
    low, up = centre - radius, centre + radius
    lc, uc = low.clamp(min=0), up.clamp(min=0)
    return (uc + lc) / 2, (uc - lc) / 2, (low, up)


def _layout(model: nn.Sequential, lower: torch.Tensor, channels_last: bool | None):
    """The memory format of the pass. Channels-last on the CPU (``layout.prefers_channels_last``):
    oneDNN then runs every conv without reordering NCHW activations to its own blocked layout and
    back, forward and backward."""
    if lower.dim() != 4:
        return None
    if channels_last is None:
        channels_last = _prefers_channels_last(model)
    return torch.channels_last if channels_last else None


def _to_layout(t: torch.Tensor | None, layout):
    return t if t is None or layout is None else _in_layout(t, layout)


def propagate(
    model: nn.Sequential,
    lower: torch.Tensor,
    upper: torch.Tensor,
    stats_input: torch.Tensor | None = None,
    spec: torch.Tensor | None = None,
    keep_relu_inputs: bool = False,
    track_running_stats: bool = False,
    channels_last: bool | None = None,
    keep_head_input: bool = False,
) -> IntervalTrace:
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
        channels_last: run the convolutions in channels-last layout (default: see ``_layout``).
        keep_head_input: also return the bounds of the final linear layer's input (``head_input``).
    """
    layout = _layout(model, lower, channels_last)
    centre, radius = _to_layout((upper + lower) / 2, layout), _to_layout((upper - lower) / 2, layout)
    stats = _to_layout(stats_input, layout)
    relu_inputs: list = []
    layers = list(model)
    last, index = len(layers) - 1, 0
    while index <= last:
        layer = layers[index]
        after = layers[index + 1] if index < last else None
        index += 1
        if index - 1 == last and keep_head_input:
            head = (centre - radius, centre + radius), stats
        if index - 1 == last and spec is not None and isinstance(layer, nn.Linear):
            trace = _final_spec(layer, centre, radius, stats, spec, relu_inputs)
            if keep_head_input:
                trace.head_input, trace.head_stats = head
            return trace
        if _folds_bn(layer, after):
            centre, radius, stats = _conv_bn(layer, after, centre, radius, stats, track_running_stats)
            index += 1
        elif isinstance(layer, nn.Linear) and centre.dim() == 2:
            centre, radius, stats = _IntervalLinear.apply(centre, radius, stats, layer.weight, layer.bias)
        elif isinstance(layer, (nn.Linear, nn.Conv2d)):
            centre, radius = _affine(layer, centre, radius)
            if stats is not None:
                stats = layer(stats)
        elif isinstance(layer, nn.modules.batchnorm._BatchNorm):
            scale, shift, stats = _bn_scale_shift(layer, stats, track_running_stats)
            centre = torch.addcmul(_channel(shift, centre), centre, _channel(scale, centre))
            radius = radius * _channel(scale.abs(), radius)
        elif isinstance(layer, nn.ReLU):
            if keep_relu_inputs:
                centre, radius, bounds = _relu_autograd(centre, radius)
                relu_inputs.append(bounds)
            else:
                centre, radius = _IntervalReLU.apply(centre, radius)
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
    trace = IntervalTrace(centre - radius, centre + radius, stats, relu_inputs)
    if keep_head_input:
        trace.head_input, trace.head_stats = head
    return trace


def _final_spec(layer: nn.Linear, centre, radius, stats, spec, relu_inputs) -> IntervalTrace:
    """Bounds of C·(W h + b) over the box of h, with C·W formed first (per sample)."""
    weight = torch.einsum("bsk,kf->bsf", spec, layer.weight)  # [B, S, F]
    bias = torch.einsum("bsk,k->bs", spec, layer.bias) if layer.bias is not None else 0.0
    mid = torch.einsum("bsf,bf->bs", weight, centre) + bias
    rad = torch.einsum("bsf,bf->bs", weight.abs(), radius)
    stats_out = None if stats is None else layer(stats)
    return IntervalTrace(mid - rad, mid + rad, stats_out, relu_inputs)

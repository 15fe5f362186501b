"""The native interval pass's fast paths against its reference forms and auto_LiRPA.

``interval.propagate`` folds a BN into the conv before it, computes train-mode BN statistics with
one fused kernel (``_BatchStats``, behind a probe), runs the interval ReLU as one function and
runs CPU convolutions channels-last. Each must give the bounds, the statistics-batch logits,
the running statistics and the gradients of the plain layer-by-layer arithmetic (kept here as
``reference_propagate``), with and without channels-last, with the probe failing, and with the
interval ReLU compiled (``fused.py``) or eager. Comparisons are in float64 where they involve
gradients, so no kernel's float32 rounding decides a test.
"""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import tiny_net
from test_bounds import MEAN, STD, TOL, frozen_stats_clone, sample_box, worst_sampled_margin
from torch import nn

from adcert_plugin.bounds import InputBox, fused, interval, margin_matrix, wrap_model
from adcert_plugin.models import create_model


def reference_propagate(model, lower, upper, stats):
    """Layer-by-layer centre/radius IBP (the pass as it was before the fast paths), margins not folded."""
    centre, radius = (upper + lower) / 2, (upper - lower) / 2
    for layer in model:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            centre, radius = layer(centre), _radius_map(layer, radius)
            stats = layer(stats)
        elif isinstance(layer, nn.modules.batchnorm._BatchNorm):
            dims = [0] + list(range(2, stats.dim()))
            mean, var = (
                (stats.mean(dims), stats.var(dims, unbiased=False))
                if layer.training
                else (layer.running_mean, layer.running_var)
            )
            view = [1, -1] + [1] * (stats.dim() - 2)
            scale = (layer.weight / torch.sqrt(var + layer.eps)).view(view)
            shift = layer.bias.view(view) - mean.view(view) * scale
            centre, radius, stats = centre * scale + shift, radius * scale.abs(), stats * scale + shift
        elif isinstance(layer, nn.ReLU):
            low, up = (centre - radius).clamp(min=0), (centre + radius).clamp(min=0)
            centre, radius, stats = (up + low) / 2, (up - low) / 2, stats.relu()
        else:
            centre, radius, stats = layer(centre), layer(radius), layer(stats)
    return centre - radius, centre + radius, stats


def _radius_map(layer, radius):
    if isinstance(layer, nn.Linear):
        return nn.functional.linear(radius, layer.weight.abs())
    return nn.functional.conv2d(radius, layer.weight.abs(), None, layer.stride, layer.padding, layer.dilation)


def bn_net(in_shape=(1, 8, 8), width=4, seed=0) -> nn.Sequential:
    """A CNN7-shaped chain (conv+BN+ReLU blocks, linear+BN1d) small enough for float64 tests."""
    torch.manual_seed(seed)
    model = create_model("cnn7", in_shape, 4, width=width, linear_size=12)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture(params=[True, False], ids=["fused-stats", "probe-failed"])
def batch_stats_path(request, monkeypatch):
    """Run a test with the fused BN-statistics kernel, and again as if its probe had failed."""
    monkeypatch.setattr(interval, "fused_batch_stats_available", lambda: request.param)
    return request.param


@pytest.fixture(params=["fused", "eager"])
def relu_path(request, monkeypatch):
    """Run a test with the compiled kernels on every tensor (no size threshold), then without them."""
    if request.param == "fused":
        if not fused.available():
            pytest.skip("fused kernels unavailable here")
        monkeypatch.setattr(fused, "MIN_NUMEL", 0)
    else:
        monkeypatch.setattr(fused, "available", lambda *dtype: False)
    return request.param


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("keep_relu_inputs", [False, True])
def test_fast_paths_match_reference_values_and_gradients(
    mode, channels_last, keep_relu_inputs, batch_stats_path, relu_path
):
    model = bn_net().double().train(mode == "train")
    x = torch.rand(6, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    lower, upper, stats = x - 0.05, x + 0.05, x + 0.01 * torch.randn_like(x)
    fast = interval.propagate(
        model, lower, upper, stats, keep_relu_inputs=keep_relu_inputs, channels_last=channels_last
    )
    expected = reference_propagate(model, lower, upper, stats)
    for got, want in zip((fast.lower, fast.upper, fast.stats_out), expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    weights = [torch.randn_like(t) for t in expected]
    objective = lambda outs: sum((o * w).sum() for o, w in zip(outs, weights))
    got = torch.autograd.grad(objective((fast.lower, fast.upper, fast.stats_out)), list(model.parameters()))
    want = torch.autograd.grad(objective(expected), list(model.parameters()))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-8, atol=1e-8)


def test_interval_relu_matches_autograd_form_in_every_regime():
    gen = torch.Generator().manual_seed(0)
    centre = torch.randn(4000, dtype=torch.float64, generator=gen)
    radius = torch.rand(4000, dtype=torch.float64, generator=gen)
    radius[:100] = 0.0  # degenerate boxes
    got = [t.requires_grad_(True) for t in (centre.clone(), radius.clone())]
    want = [t.requires_grad_(True) for t in (centre.clone(), radius.clone())]
    out_fast = interval._IntervalReLU.apply(*got)
    out_ref = interval._relu_autograd(*want)[:2]
    for a, b in zip(out_fast, out_ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    grads = [torch.randn(4000, dtype=torch.float64, generator=gen) for _ in range(2)]
    torch.autograd.backward(out_fast, grads)
    torch.autograd.backward(out_ref, grads)
    for a, b in zip(got, want):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channels_last", [True, False])
def test_running_statistics_move_as_a_train_forward(channels_last, batch_stats_path):
    model = bn_net().train()
    twin = copy.deepcopy(model)
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    trace = interval.propagate(model, x - 0.1, x + 0.1, x, track_running_stats=True, channels_last=channels_last)
    logits = twin(x)
    torch.testing.assert_close(trace.stats_out, logits, rtol=1e-4, atol=1e-5)
    for a, b in zip(model.buffers(), twin.buffers()):
        if a.is_floating_point():
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("channels_last", [True, False])
def test_native_agrees_with_auto_lirpa_on_every_path(mode, channels_last, batch_stats_path, batch):
    x, y = batch
    model = bn_net().train(mode == "train")
    box = InputBox.from_pixels(x, 0.05, MEAN, STD)
    spec = margin_matrix(y, 4)
    native = interval.propagate(
        model, box.lower_norm, box.upper_norm, box.x_norm, spec=spec, channels_last=channels_last
    ).lower
    lirpa = wrap_model(model, x.shape[1:], use_native_ibp=False).margin_lower(box, y, "IBP", stats_input=box.x_norm)
    torch.testing.assert_close(native, lirpa, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["cnn-bn", "cnn7"])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("channels_last", [True, False])
def test_fast_paths_contain_sampled_margins(kind, mode, channels_last, batch_stats_path, batch):
    x, y = batch
    model = (tiny_net("cnn-bn", seed=5) if kind == "cnn-bn" else bn_net(seed=5)).train(mode == "train")
    box = InputBox.from_pixels(x, 0.1, MEAN, STD)
    lower = interval.propagate(
        model, box.lower_norm, box.upper_norm, box.x_norm, spec=margin_matrix(y, 4), channels_last=channels_last
    ).lower.detach()
    reference = frozen_stats_clone(model, box.x_norm) if mode == "train" else model
    worst = worst_sampled_margin(reference, sample_box(box, 1200, torch.Generator().manual_seed(0)), y)
    assert (worst >= lower - TOL * (1 + lower.abs())).all(), (worst - lower).min()


def test_batch_stats_probe_passes_where_torch_has_the_kernels():
    interval.fused_batch_stats_available.cache_clear()
    if hasattr(torch, "native_batch_norm") and hasattr(torch.ops.aten, "native_batch_norm_backward"):
        assert interval.fused_batch_stats_available()


def test_batch_stats_probe_fails_closed(monkeypatch):
    """A build whose kernel raises or disagrees makes the probe answer False (then the reference runs)."""
    interval.fused_batch_stats_available.cache_clear()
    monkeypatch.setattr(torch, "native_batch_norm", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("gone")))
    try:
        assert not interval.fused_batch_stats_available()
    finally:
        interval.fused_batch_stats_available.cache_clear()


def test_channels_last_default_follows_the_attack_rule():
    wide = create_model("cnn7", (1, 28, 28), 10)
    narrow = create_model("small-cnn", (1, 28, 28), 10)
    x = torch.zeros(2, 1, 28, 28)
    assert interval._layout(wide, x, None) == interval._layout(narrow, x, None) == torch.channels_last
    assert interval._layout(narrow, x, False) is None
    assert interval._layout(create_model("mlp", (1, 28, 28), 10), x.flatten(1), None) is None


@pytest.mark.parametrize("with_stats", [True, False])
def test_interval_linear_matches_autograd_including_zero_weights(with_stats):
    gen = torch.Generator().manual_seed(5)
    weight = torch.randn(7, 9, dtype=torch.float64, generator=gen)
    weight[0, :3] = 0.0  # |W|'s gradient at 0 is 0 in autograd; so must it be here
    bias = torch.randn(7, dtype=torch.float64, generator=gen)
    inputs = [torch.randn(4, 9, dtype=torch.float64, generator=gen) for _ in range(3)]
    inputs[1] = inputs[1].abs()  # a radius
    if not with_stats:
        inputs[2] = None
    leaves = lambda: [None if t is None else t.clone().requires_grad_(True) for t in (*inputs, weight, bias)]
    fast_in, ref_in = leaves(), leaves()
    fast = interval._IntervalLinear.apply(*fast_in)
    c, r, s, w, b = ref_in
    ref = (
        nn.functional.linear(c, w, b),
        nn.functional.linear(r, w.abs()),
        None if s is None else nn.functional.linear(s, w, b),
    )
    for got, want in zip(fast, ref):
        assert (got is None) == (want is None)
        if want is not None:
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    outs = [(o, torch.randn(o.shape, dtype=torch.float64, generator=gen)) for o in ref if o is not None]
    weights = [g for _, g in outs]
    objective = lambda results: sum((o * g).sum() for o, g in zip([o for o in results if o is not None], weights))
    got = torch.autograd.grad(objective(fast), [t for t in fast_in if t is not None])
    want = torch.autograd.grad(objective(ref), [t for t in ref_in if t is not None])
    for g, w_ in zip(got, want):
        torch.testing.assert_close(g, w_, rtol=1e-10, atol=1e-10)

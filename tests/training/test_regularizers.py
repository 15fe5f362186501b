"""Warm-up regularisers (Shi et al.) on hand-made bounds, and L1 on Conv/Linear weights only."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from adcert_plugin.training.regularizers import l1_penalty, relu_balance_loss, tightness_loss, warmup_terms


def _pair(lower, upper):
    return torch.tensor(lower, dtype=torch.float32), torch.tensor(upper, dtype=torch.float32)


def test_tightness_hand_computed():
    half_width = torch.full((2, 3), 0.1)  # t0 = 0.1
    layer_ok = _pair([[0.0, 0.0]], [[0.3, 0.3]])  # t = 0.15: t0/t = 2/3 > tau → 0
    layer_loose = _pair([[0.0, 0.0]], [[1.0, 1.0]])  # t = 0.5: t0/t = 0.2 → (0.5-0.2)/0.5 = 0.6
    assert tightness_loss([layer_ok], half_width).item() == pytest.approx(0.0)
    assert tightness_loss([layer_loose], half_width).item() == pytest.approx(0.6)
    assert tightness_loss([layer_ok, layer_loose], half_width).item() == pytest.approx(0.3)  # mean over layers


def test_relu_balance_hand_computed():
    # centres c = [2, 1, -1, -1] (l>0 for the first two, u<0 for the last two)
    lower, upper = _pair([[1.5, 0.5, -1.5, -1.5]], [[2.5, 1.5, -0.5, -0.5]])
    # mean_ratio = mean(c·1_A)/(-mean(c·1_I)) = (3/4)/(2/4) = 1.5 → min(1.5, 1/1.5) = 2/3 > 0.5 → 0
    # c̄ = 0.25; Σ_A (c-c̄)² = 1.75² + 0.75² = 3.625; Σ_I = 2·1.25² = 3.125; ratio 1.16 → 0.862 > 0.5 → 0
    assert relu_balance_loss([(lower, upper)]).item() == pytest.approx(0.0)
    # all inactive but one slightly active: mean_ratio = 0.1/(3·3/…) small → penalty
    lower, upper = _pair([[0.05, -4.0, -4.0, -4.0]], [[0.15, -2.0, -2.0, -2.0]])
    c = torch.tensor([0.1, -3.0, -3.0, -3.0])
    mean_ratio = (0.1 / 4) / (9.0 / 4)
    var_ratio = ((c[0] - c.mean()) ** 2 / (3 * (c[1] - c.mean()) ** 2)).item()
    var_ratio = min(var_ratio, 1 / var_ratio)
    expected = (max(0.5 - mean_ratio, 0) + max(0.5 - var_ratio, 0)) / 0.5
    assert relu_balance_loss([(lower, upper)]).item() == pytest.approx(expected, rel=1e-5)


def test_relu_balance_skips_nan_layers_but_counts_them():
    unstable = _pair([[-1.0, -1.0]], [[1.0, 1.0]])  # no stable neuron: 0/0 → NaN → skipped
    lower, upper = _pair([[0.05, -4.0, -4.0, -4.0]], [[0.15, -2.0, -2.0, -2.0]])
    alone = relu_balance_loss([(lower, upper)]).item()
    both = relu_balance_loss([unstable, (lower, upper)])
    assert math.isfinite(both.item()) and both.item() == pytest.approx(alone / 2)
    assert relu_balance_loss([unstable]).item() == 0.0


def test_warmup_terms_are_differentiable():
    lower = torch.tensor([[0.2, -1.0, 0.5]], requires_grad=True)
    upper = lower + torch.tensor([[2.0, 0.5, 1.0]])
    terms = warmup_terms([(lower, upper)], torch.full((1, 4), 0.01))
    terms.total.backward()
    assert lower.grad is not None and torch.isfinite(lower.grad).all()


def test_l1_only_conv_and_linear_weights():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(2, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(-1.0)
    expected = 2 * 1 * 3 * 3 + 3 * 2  # conv weight + linear weight; biases and BN excluded
    assert l1_penalty(net).item() == pytest.approx(expected)


def test_loss_context_hands_its_relu_bounds_to_the_regulariser(monkeypatch):
    """One IBP pass per step: the warm-up terms reuse the loss's ε-box trace, unchanged."""
    import torch

    from adcert_plugin.bounds import BoundedNet, wrap_model
    from adcert_plugin.data import DataSpec
    from adcert_plugin.losses import create_loss
    from adcert_plugin.losses.base import LossContext
    from adcert_plugin.models import create_model

    torch.manual_seed(0)
    model = create_model("small-cnn", (1, 8, 8), 4, width=4, linear_size=16, bn=True).train()
    spec = DataSpec("toy", (1, 8, 8), 4, (0.3,), (0.4,))
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 4, (6,))
    bounded = wrap_model(model, (1, 8, 8))
    calls = []
    original = BoundedNet.ibp_trace
    monkeypatch.setattr(BoundedNet, "ibp_trace", lambda self, *a, **k: calls.append(k) or original(self, *a, **k))
    ctx = LossContext(model, bounded, x, y, 0.05, spec, keep_relu_inputs=True)
    create_loss("ibp")(ctx)
    kept = ctx.relu_input_bounds()
    assert len(calls) == 1 and kept is not None and len(kept) == 3
    separate = original(bounded, ctx.box, y, keep_relu_inputs=True).relu_inputs  # stats: the clean batch
    for (lo_a, up_a), (lo_b, up_b) in zip(kept, separate):
        torch.testing.assert_close(lo_a, lo_b)
        torch.testing.assert_close(up_a, up_b)
    assert LossContext(model, bounded, x, y, 0.05, spec).relu_input_bounds() is None  # off by default

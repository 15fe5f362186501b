"""Soundness of every bound path: sampled outputs never fall below the bounds.

For an MLP, a CNN and a CNN with BN (eval and train mode), and for IBP (native and
auto_LiRPA), CROWN-IBP, CROWN and alpha-CROWN, ≥1000 points of each box (random vertices
included) are pushed through the network; every margin must be ≥ its lower bound.
"""

from __future__ import annotations

import copy
import zlib

import pytest
import torch
from conftest import tiny_net
from torch import nn

from adcert_plugin.bounds import METHODS, InputBox, margins, wrap_model

MEAN, STD = (0.3,), (0.4,)
TOL = 1e-5


def frozen_stats_clone(model: nn.Sequential, stats_input: torch.Tensor) -> nn.Sequential:
    """Eval-mode copy whose BN running statistics are the batch statistics of ``stats_input``.

    A train-mode bound treats the batch statistics as constants; this copy is the function
    such a bound is a bound of, so sampled points are evaluated through it.
    """
    clone = copy.deepcopy(model).eval()
    h = stats_input
    with torch.no_grad():
        for layer in clone:
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                dims = [0] + list(range(2, h.dim()))
                layer.running_mean.copy_(h.mean(dims))
                layer.running_var.copy_(h.var(dims, unbiased=False))
            h = layer(h)
    return clone


def sample_box(box: InputBox, n: int, generator: torch.Generator) -> torch.Tensor:
    """``[n, B, C, H, W]``: the centre, n//3 random vertices, the rest uniform in the box."""
    lower, upper = box.lower_norm, box.upper_norm
    n_vertices = n // 3
    shape = (n - n_vertices - 1, *lower.shape)
    uniform = lower + torch.rand(shape, generator=generator) * (upper - lower)
    pick = torch.rand((n_vertices, *lower.shape), generator=generator) < 0.5
    vertices = torch.where(pick, upper, lower)
    return torch.cat([box.x_norm[None], vertices, uniform])


def worst_sampled_margin(model, points, y) -> torch.Tensor:
    with torch.no_grad():
        flat = points.flatten(0, 1)
        margin = margins(model(flat), y.repeat(points.shape[0]))
        return margin.view(points.shape[0], len(y), -1).amin(0)


CASES = [(kind, mode) for kind in ("mlp", "cnn", "cnn-bn") for mode in ("eval", "train")]


@pytest.mark.parametrize("kind,mode", CASES)
@pytest.mark.parametrize("method", METHODS + ("IBP-auto_LiRPA",))
@pytest.mark.parametrize("eps", [0.01, 0.1])
def test_bounds_contain_sampled_margins(kind, mode, method, eps, batch):
    x, y = batch
    model = tiny_net(kind, seed=zlib.crc32(f"{kind}/{method}".encode()) % 1000)  # hash() varies per process
    model.train(mode == "train")
    box = InputBox.from_pixels(x, eps, MEAN, STD)
    bounded = wrap_model(model, x.shape[1:], use_native_ibp=(method == "IBP"))
    lower = bounded.margin_lower(box, y, method.split("-auto")[0]).detach()
    reference = frozen_stats_clone(model, box.x_norm) if mode == "train" else model
    points = sample_box(box, 1200, torch.Generator().manual_seed(0))
    worst = worst_sampled_margin(reference, points, y)
    assert torch.isfinite(lower).all()
    assert (worst >= lower - TOL * (1 + lower.abs())).all(), (worst - lower).min()
    assert model.training == (mode == "train")


def interval_layer(layer: nn.Module, l: torch.Tensor, u: torch.Tensor):
    """One layer of plain (lower, upper) interval arithmetic, written independently of adcert."""
    if isinstance(layer, (nn.Linear, nn.Conv2d)):
        wp, wn = layer.weight.clamp(min=0), layer.weight.clamp(max=0)
        if isinstance(layer, nn.Linear):
            apply, bias = (lambda t, w: t @ w.T), layer.bias
        else:
            apply = lambda t, w: nn.functional.conv2d(t, w, None, layer.stride, layer.padding)
            bias = layer.bias.view(1, -1, 1, 1)
        return apply(l, wp) + apply(u, wn) + bias, apply(u, wp) + apply(l, wn) + bias
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        shape = [1, -1] + [1] * (l.dim() - 2)
        scale = (layer.weight / torch.sqrt(layer.running_var + layer.eps)).view(shape)
        shift = layer.bias.view(shape) - layer.running_mean.view(shape) * scale
        return torch.minimum(l * scale, u * scale) + shift, torch.maximum(l * scale, u * scale) + shift
    if isinstance(layer, nn.ReLU):
        return l.clamp(min=0), u.clamp(min=0)
    if isinstance(layer, nn.Flatten):
        return l.flatten(1), u.flatten(1)
    raise TypeError(type(layer))


def reference_margin_lower(model: nn.Sequential, box: InputBox, y: torch.Tensor) -> torch.Tensor:
    """IBP through the body, then C_y folded into the last layer (auto_LiRPA's convention)."""
    l, u = box.lower_norm, box.upper_norm
    for layer in model[:-1]:
        l, u = interval_layer(layer, l, u)
    head = model[-1]
    keep = torch.arange(head.out_features)[None] != y[:, None]
    rows = torch.stack([head.weight[t] - head.weight for t in y])[keep].view(len(y), -1, head.in_features)
    bias = torch.stack([head.bias[t] - head.bias for t in y])[keep].view(len(y), -1)
    return (rows.clamp(min=0) @ l[..., None] + rows.clamp(max=0) @ u[..., None]).squeeze(-1) + bias


@pytest.mark.parametrize("kind", ["mlp", "cnn", "cnn-bn"])
@pytest.mark.parametrize("native", [True, False])
def test_ibp_equals_independent_interval_arithmetic(kind, native, batch):
    x, y = batch
    model = tiny_net(kind)
    box = InputBox.from_pixels(x, 0.05, MEAN, STD)
    lower = wrap_model(model, x.shape[1:], use_native_ibp=native).margin_lower(box, y, "IBP")
    torch.testing.assert_close(lower, reference_margin_lower(model, box, y), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["mlp", "cnn", "cnn-bn"])
def test_native_ibp_agrees_with_auto_lirpa_in_train_mode(kind, batch):
    x, y = batch
    model = tiny_net(kind).train()
    box = InputBox.from_pixels(x, 0.05, MEAN, STD)
    x_stats = box.lower_norm + 0.3 * (box.upper_norm - box.lower_norm)  # a batch other than the centre
    native = wrap_model(model, x.shape[1:]).margin_lower(box, y, "IBP", stats_input=x_stats)
    lirpa = wrap_model(model, x.shape[1:], use_native_ibp=False).margin_lower(box, y, "IBP", stats_input=x_stats)
    torch.testing.assert_close(native, lirpa, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["mlp", "cnn", "cnn-bn"])
def test_crown_at_least_as_tight_as_ibp_on_small_eps(kind, batch):
    x, y = batch
    model = tiny_net(kind)
    box = InputBox.from_pixels(x, 0.005, MEAN, STD)
    bounded = wrap_model(model, x.shape[1:])
    ibp = bounded.margin_lower(box, y, "IBP")
    crown = bounded.margin_lower(box, y, "CROWN")
    alpha = bounded.margin_lower(box, y, "alpha-CROWN")
    assert (crown >= ibp - 1e-5).all()
    assert (alpha >= crown - 1e-4).all()
    assert (crown - ibp).sum() > 0  # strictly tighter somewhere, not merely equal


def test_eps_zero_bounds_equal_exact_margins(batch):
    x, y = batch
    model = tiny_net("cnn-bn")
    box = InputBox.from_pixels(x, 0.0, MEAN, STD)
    exact = margins(model(box.x_norm), y)
    for method in METHODS:
        torch.testing.assert_close(
            wrap_model(model, x.shape[1:]).margin_lower(box, y, method), exact, atol=1e-4, rtol=1e-4
        )


def test_ibp_never_tightens_with_larger_eps(batch):
    x, y = batch
    bounded = wrap_model(tiny_net("cnn"), x.shape[1:])
    previous = None
    for eps in (0.0, 0.01, 0.05, 0.2):
        lower = bounded.margin_lower(InputBox.from_pixels(x, eps, MEAN, STD), y, "IBP")
        if previous is not None:
            assert (lower <= previous + 1e-6).all()
        previous = lower


@pytest.mark.parametrize("kind", ["mlp", "cnn-bn"])
@pytest.mark.parametrize("method", ["IBP", "CROWN-IBP"])
def test_gradients_reach_every_parameter_through_bound_loss(kind, method, batch):
    x, y = batch
    model = tiny_net(kind).train()
    box = InputBox.from_pixels(x, 0.05, MEAN, STD)
    lower = wrap_model(model, x.shape[1:]).margin_lower(box, y, method)
    loss = torch.logsumexp(torch.cat([torch.zeros(len(y), 1), -lower], 1), 1).mean()
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_bounding_does_not_move_running_statistics(batch):
    x, y = batch
    model = tiny_net("cnn-bn").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    box = InputBox.from_pixels(x, 0.05, MEAN, STD)
    for native in (True, False):
        bounded = wrap_model(model, x.shape[1:], use_native_ibp=native)
        for method in METHODS:
            bounded.margin_lower(box, y, method)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_eval_bounds_follow_updated_running_statistics(batch):
    """auto_LiRPA 0.3 copies BN buffers; the seam must re-sync them before every call."""
    x, y = batch
    model = tiny_net("cnn-bn")
    bounded = wrap_model(model, x.shape[1:], use_native_ibp=False)
    box = InputBox.from_pixels(x, 0.02, MEAN, STD)
    bounded.margin_lower(box, y, "CROWN")
    with torch.no_grad():
        model.train()
        model(torch.randn(32, 1, 8, 8) * 3)
        model.eval()
    expected = reference_margin_lower(model, box, y)
    torch.testing.assert_close(bounded.margin_lower(box, y, "IBP"), expected, atol=1e-5, rtol=1e-5)


def test_train_mode_alpha_crown_bounds_the_network_with_its_batch_statistics_frozen(batch):
    """Train-mode alpha-CROWN is alpha-CROWN on the eval network whose BN statistics are the batch's."""
    x, y = batch
    model = tiny_net("cnn-bn").train()
    box = InputBox.from_pixels(x, 0.05, MEAN, STD)
    x_stats = box.lower_norm + 0.3 * (box.upper_norm - box.lower_norm)
    train_mode = wrap_model(model, x.shape[1:]).margin_lower(box, y, "alpha-CROWN", stats_input=x_stats)
    frozen = frozen_stats_clone(model, x_stats)
    eval_mode = wrap_model(frozen, x.shape[1:]).margin_lower(box, y, "alpha-CROWN")
    torch.testing.assert_close(train_mode, eval_mode, atol=1e-4, rtol=1e-4)
    assert model.training


def test_an_auto_lirpa_failure_is_one_line_saying_what_to_do(batch, monkeypatch):
    from adcert_plugin.errors import UnsupportedModelError

    x, y = batch
    bounded = wrap_model(tiny_net("cnn-bn").train(), x.shape[1:], use_native_ibp=False)
    module = bounded._bounded_module()

    def broken(*args, **kwargs):
        raise RuntimeError("Trying to backward through the graph a second time\n(long explanation)")

    monkeypatch.setattr(module, "compute_bounds", broken)
    with pytest.raises(UnsupportedModelError, match="failed to compute CROWN bounds .* in train mode") as info:
        bounded.margin_lower(InputBox.from_pixels(x, 0.1, MEAN, STD), y, "CROWN")
    assert "\n" not in str(info.value) and "backward through the graph" in str(info.value)


def test_unknown_method_is_a_clear_error(batch):
    from adcert_plugin.errors import UnsupportedModelError

    x, y = batch
    with pytest.raises(UnsupportedModelError, match="choose one of"):
        wrap_model(tiny_net("mlp"), x.shape[1:]).margin_lower(InputBox.from_pixels(x, 0.1, MEAN, STD), y, "DeepPoly")


@pytest.mark.parametrize("order", ["forward-then-bound", "two-bounds"])
def test_auto_lirpa_bounds_keep_earlier_graphs_intact(order, batch):
    """Building auto_LiRPA's module must not write to parameters in place mid-step."""
    x, y = batch
    model = tiny_net("cnn-bn").train()
    box = InputBox.from_pixels(x, 0.05, MEAN, STD)
    bounded = wrap_model(model, x.shape[1:], use_native_ibp=False)
    first = model(box.x_norm).sum() if order == "forward-then-bound" else bounded.margin_lower(box, y, "IBP").sum()
    total = first + bounded.margin_lower(box, y, "IBP").sum() + bounded.margin_lower(box, y, "CROWN-IBP").sum()
    total.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert "load_state_dict" not in vars(model)

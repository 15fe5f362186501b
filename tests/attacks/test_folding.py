"""The BN-folded eval forward computes model.eval() and its input gradient, and PGD on it
finds the same points as PGD on the model itself."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_net
from torch import nn

from adcert_plugin.attacks import (
    AttackConfig,
    attack_objective,
    bn_scale_shift,
    folded_eval_forward,
    folding,
    pgd as attacks,
    pgd_attack,
)
from adcert_plugin.bounds import InputBox
from adcert_plugin.errors import UnsupportedModelError
from adcert_plugin.models import create_model


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Running statistics and affine parameters far from the identity, so folding matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen))
                m.running_var.copy_(torch.rand(n, generator=gen) * 3 + 0.2)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                    m.bias.copy_(torch.randn(n, generator=gen) * 0.3)
    return model.eval()


def _odd_sequential() -> nn.Sequential:
    """BNs that cannot fold (after a ReLU; after a reflect-padded conv, which runs as itself) become
    affine ops; a BN without affine parameters; a BN1d after a Linear."""
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.ReLU(),
        nn.BatchNorm2d(4),
        nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 3, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(3, affine=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 3 * 3, 8),
        nn.BatchNorm1d(8),
        nn.ReLU(),
        nn.Linear(8, 5),
    )


CASES = {
    "cnn7-mnist": lambda: (create_model("cnn7", (1, 12, 12), 10, width=4, linear_size=16), (1, 12, 12)),
    "cnn7-cifar": lambda: (create_model("cnn7", (3, 12, 12), 10, width=4, linear_size=16), (3, 12, 12)),
    "small-cnn-bn": lambda: (tiny_net("cnn-bn"), (1, 8, 8)),
    "mlp": lambda: (tiny_net("mlp"), (1, 8, 8)),
    "odd": lambda: (_odd_sequential(), (2, 6, 6)),
}


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("case", sorted(CASES))
def test_folded_forward_matches_eval_model_and_its_input_gradient(case, channels_last):
    model, shape = CASES[case]()
    model = _randomise_bn(model)
    x = torch.randn(6, *shape, requires_grad=True)
    expected = model(x)
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), x)
    forward = folded_eval_forward(model, channels_last=channels_last)
    got = forward(x)
    (got_grad,) = torch.autograd.grad(got.square().sum(), x)
    assert forward is not model
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got_grad, expected_grad, rtol=1e-4, atol=1e-4)


def test_folding_drops_every_batchnorm_pass():
    model = _randomise_bn(create_model("cnn7", (1, 12, 12), 10, width=4, linear_size=16))
    calls = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.register_forward_hook(lambda *_: calls.append(1))
    folded_eval_forward(model)(torch.randn(2, 1, 12, 12))
    assert calls == []
    model(torch.randn(2, 1, 12, 12))
    assert len(calls) == 6  # the hooks do fire on the model itself


def test_folded_forward_follows_the_model_when_rebuilt_and_leaves_it_alone():
    model = _randomise_bn(tiny_net("cnn-bn"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(3, 1, 8, 8)
    folded_eval_forward(model)(x)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    torch.testing.assert_close(folded_eval_forward(model)(x), model(x), rtol=1e-4, atol=1e-5)


def test_models_it_cannot_fold_run_as_themselves():
    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = tiny_net("cnn-bn")

        def forward(self, x):
            return self.net(x)

    wrapped = Wrapped()
    assert folded_eval_forward(wrapped) is wrapped
    no_stats = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.BatchNorm1d(3, track_running_stats=False))
    assert folded_eval_forward(no_stats) is no_stats


def test_bn_scale_shift_is_the_eval_affine_map_and_refuses_batch_statistics():
    bn = _randomise_bn(nn.Sequential(nn.BatchNorm2d(5)))[0]
    x = torch.randn(4, 5, 3, 3)
    scale, shift = bn_scale_shift(bn)
    torch.testing.assert_close(x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1), bn(x))
    assert bn_scale_shift(bn, torch.float64)[0].dtype == torch.float64
    with pytest.raises(UnsupportedModelError, match="running statistics"):
        bn_scale_shift(nn.BatchNorm1d(3, track_running_stats=False))


# -- PGD on the folded network against PGD on the model ---------------------------------------
# Two forwards that differ only in their kernels round differently, and on some CPUs a gradient
# coordinate within rounding of 0 then flips sign. After one step that flips one coordinate; after
# several steps it can send a whole trajectory elsewhere. So the checks are: one step agrees
# coordinate-wise except where the gradient is within rounding of 0; several steps and restarts
# reach the same objective value, averaged over the batch, within a fraction of what the attack
# gains over the clean point; every returned point lies in the box.

SINGLE_STEP, MULTI_STEP = AttackConfig(), AttackConfig(steps=5, step_size=0.5, restarts=2, objective="margin")
NEAR_ZERO = 1e-3  # of a sample's largest |gradient|: far above rounding, far below a real coordinate
OBJECTIVE_TOLERANCE = 0.05  # of the mean gain over the clean point


def _attack_setup():
    model = _randomise_bn(create_model("cnn7", (3, 12, 12), 10, width=8, linear_size=32))
    torch.manual_seed(0)
    x, y = torch.rand(32, 3, 12, 12), torch.randint(0, 10, (32,))
    return model, InputBox.from_pixels(x, 8 / 255, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)), y


def _pgd_with_forward(model, box, y, cfg, forward, monkeypatch, seed=1):
    monkeypatch.setattr(attacks, "folded_eval_forward", forward)
    return pgd_attack(model, box, y, cfg, generator=torch.Generator().manual_seed(seed))


def _model_gradient_at_start(model, box, y, cfg, seed=1):
    """The gradient PGD's first step follows, on the model itself (the same start as the attack)."""
    noise = torch.rand(box.lower_norm.shape, generator=torch.Generator().manual_seed(seed))
    x = (box.lower_norm + noise * (box.upper_norm - box.lower_norm)).requires_grad_(True)
    (grad,) = torch.autograd.grad(attack_objective(model.eval()(x), y, cfg.objective).sum(), x)
    return grad


def assert_single_step_agrees(model, box, y, fast, plain, cfg):
    assert box.contains(fast, tol=0.0).all() and box.contains(plain, tol=0.0).all()
    grad = _model_gradient_at_start(model, box, y, cfg)
    near_zero = grad.abs() <= NEAR_ZERO * grad.flatten(1).abs().amax(1).view(-1, 1, 1, 1)
    assert near_zero.float().mean() < 0.05  # the check below is not vacuous
    differs = fast != plain
    assert not (differs & ~near_zero).any(), f"{int((differs & ~near_zero).sum())} coordinates stepped the other way"


def assert_same_objective(model, box, y, fast, plain, cfg):
    assert box.contains(fast, tol=0.0).all() and box.contains(plain, tol=0.0).all()
    with torch.no_grad():
        value = {
            name: attack_objective(model.eval()(x), y, cfg.objective)
            for name, x in (("fast", fast), ("plain", plain), ("clean", box.x_norm))
        }
    gain = (value["plain"] - value["clean"]).mean()
    assert gain > 0
    gap = (value["fast"].mean() - value["plain"].mean()).abs()
    assert gap <= OBJECTIVE_TOLERANCE * gain, f"objective {value['fast'].mean():.4f} vs {value['plain'].mean():.4f}"


@pytest.mark.parametrize("channels_last", [None, True])  # cnn7's width 8 keeps NCHW by default; True also fuses
@pytest.mark.parametrize(
    "cfg, check",
    [(SINGLE_STEP, assert_single_step_agrees), (MULTI_STEP, assert_same_objective)],
    ids=["one-step", "restarts"],
)
def test_pgd_on_the_folded_network_finds_the_points_pgd_on_the_model_finds(cfg, check, channels_last, monkeypatch):
    model, box, y = _attack_setup()
    fast = _pgd_with_forward(model, box, y, cfg, lambda m: folded_eval_forward(m, channels_last), monkeypatch)
    plain = _pgd_with_forward(model, box, y, cfg, lambda m: m, monkeypatch)  # the attack on the model itself
    assert fast.is_contiguous()
    check(model, box, y, fast, plain, cfg)


class _GradientMutant(torch.autograd.Function):
    """Identity forward; the backward hands back a wrong gradient (the kind of bug a hand-written
    backward such as the fused conv+ReLU's can have)."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad  # ascent becomes descent


def _mutant(kind):
    def forward_of(model):
        folded = folded_eval_forward(model, True)
        if kind == "gradient sign":
            return lambda x: folded(_GradientMutant.apply(x))
        return lambda x: folded(x.flip(-1))  # a layout bug: the image is read mirrored

    return forward_of


@pytest.mark.parametrize("kind", ["gradient sign", "mirrored input"])
@pytest.mark.parametrize(
    "cfg, check",
    [(SINGLE_STEP, assert_single_step_agrees), (MULTI_STEP, assert_same_objective)],
    ids=["one-step", "restarts"],
)
def test_the_attack_checks_fail_on_a_broken_folded_attack(kind, cfg, check, monkeypatch):
    model, box, y = _attack_setup()
    broken = _pgd_with_forward(model, box, y, cfg, _mutant(kind), monkeypatch)
    plain = _pgd_with_forward(model, box, y, cfg, lambda m: m, monkeypatch)
    with pytest.raises(AssertionError):
        check(model, box, y, broken, plain, cfg)


@pytest.mark.parametrize(
    "cfg, check, noise",
    [(SINGLE_STEP, assert_single_step_agrees, 1e-4), (MULTI_STEP, assert_same_objective, 1e-3)],
    ids=["one-step", "restarts"],
)
def test_the_attack_checks_hold_when_rounding_differs(cfg, check, noise, monkeypatch):
    """Another CPU, emulated and exaggerated: noise of ``noise`` x the largest |gradient| added to
    every gradient the attack follows (on one step it flips only coordinates within NEAR_ZERO of 0;
    on five steps it sends ~1 % of the coordinates elsewhere, where real CPUs differed in 0.3 %)."""

    class Jitter(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.view_as(x)

        @staticmethod
        def backward(ctx, grad):
            scale = grad.flatten(1).abs().amax(1).view(-1, 1, 1, 1)
            return grad + noise * scale * torch.randn(grad.shape, generator=torch.Generator().manual_seed(7))

    model, box, y = _attack_setup()
    jittered = _pgd_with_forward(model, box, y, cfg, lambda m: lambda x: m(Jitter.apply(x)), monkeypatch)
    plain = _pgd_with_forward(model, box, y, cfg, lambda m: m, monkeypatch)
    assert (jittered != plain).any()  # the emulation does change the attack
    check(model, box, y, jittered, plain, cfg)


def test_pgd_leaves_running_statistics_and_mode_alone():
    model = _randomise_bn(tiny_net("cnn-bn")).train()
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 4, (8,))
    pgd_attack(model, InputBox.from_pixels(x, 0.1, (0.5,), (0.25,)), y, AttackConfig(steps=2, step_size=0.5))
    assert model.training
    assert all(torch.equal(v, buffers[k]) for k, v in model.named_buffers())
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


def test_channels_last_is_chosen_for_cpu_convolutions_and_the_fused_relu_only_for_wide_ones(monkeypatch):
    from adcert_plugin.attacks.folding import WIDE_CONV, _prefers_channels_last, wide_convolutions

    cnn7, small = create_model("cnn7", (1, 28, 28), 10), create_model("small-cnn", (1, 28, 28), 10)
    assert _prefers_channels_last(cnn7) and _prefers_channels_last(small)
    assert not _prefers_channels_last(create_model("mlp", (1, 28, 28), 10))  # no convolution at all
    assert wide_convolutions(cnn7) and not wide_convolutions(small)  # 64/128 against 16/32 channels
    assert not wide_convolutions(create_model("cnn7", (1, 28, 28), 10, width=WIDE_CONV // 2))
    calls = []
    real = folding._fused_conv_relu
    monkeypatch.setattr(folding, "_fused_conv_relu", lambda *a: calls.append(1) or real(*a))
    folded_eval_forward(small.eval())(torch.rand(2, 1, 28, 28))
    assert calls == []  # narrow: channels-last, unfused
    folded_eval_forward(cnn7.eval())(torch.rand(2, 1, 28, 28))
    assert len(calls) == (5 if folding.fused_conv_relu_available() else 0)


# -- conv + ReLU fused (oneDNN post-op) -------------------------------------------------------

needs_fused_kernel = pytest.mark.skipif(
    not folding.fused_conv_relu_available(), reason="this torch build has no usable fused conv+ReLU kernel"
)


@needs_fused_kernel
@pytest.mark.parametrize(
    "case, conv_relus", [("cnn7-mnist", 5), ("cnn7-cifar", 5), ("odd", 2)]
)  # odd: its reflect-padded conv runs as itself
def test_fused_conv_relu_runs_and_matches_the_unfused_forward_and_gradient(case, conv_relus, monkeypatch):
    model, shape = CASES[case]()
    model = _randomise_bn(model)
    x = torch.randn(5, *shape, requires_grad=True)
    plain = folded_eval_forward(model, channels_last=True, fuse_relu=False)(x)
    (plain_grad,) = torch.autograd.grad(plain.square().sum(), x)
    calls = []
    real = folding._fused_conv_relu
    monkeypatch.setattr(folding, "_fused_conv_relu", lambda *a: calls.append(1) or real(*a))
    fused = folded_eval_forward(model, channels_last=True, fuse_relu=True)(x)
    (fused_grad,) = torch.autograd.grad(fused.square().sum(), x)
    assert len(calls) == conv_relus
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused_grad, plain_grad, rtol=1e-4, atol=1e-5)


def test_nchw_does_not_fuse_unless_asked(monkeypatch):
    calls = []
    monkeypatch.setattr(folding, "_fused_conv_relu", lambda *a: calls.append(1) / 0)
    model = _randomise_bn(tiny_net("cnn-bn"))
    folded_eval_forward(model, channels_last=False)(torch.randn(2, 1, 8, 8))
    assert calls == []


@pytest.mark.parametrize("broken", ["wrong values", "changed signature"])
def test_a_fused_kernel_that_fails_its_probe_is_not_used(broken, monkeypatch):
    def wrong(x, weight, bias, stride, padding, dilation, groups):
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)  # the ReLU is missing

    def changed(*args):
        raise TypeError("_convolution_pointwise() takes 9 arguments")

    monkeypatch.setattr(folding, "_fused_conv_relu", wrong if broken == "wrong values" else changed)
    folding.fused_conv_relu_available.cache_clear()
    try:
        assert not folding.fused_conv_relu_available()
        model = _randomise_bn(CASES["cnn7-mnist"]()[0])
        x = torch.randn(3, 1, 12, 12)
        torch.testing.assert_close(folded_eval_forward(model, channels_last=True)(x), model(x), rtol=1e-4, atol=1e-5)
    finally:
        folding.fused_conv_relu_available.cache_clear()


def test_a_single_channel_batch_gets_channels_last_strides_without_a_copy():
    x = torch.rand(8, 1, 6, 6)[4:]  # a slice: the view keeps its storage offset
    view = folding._in_layout(x, torch.channels_last)
    assert view.data_ptr() == x.data_ptr() and torch.equal(view, x)
    weight = torch.randn(8, 1, 3, 3).contiguous(memory_format=torch.channels_last)
    # why: oneDNN answers the first conv in the input's layout, and the next conv would copy it
    assert F.conv2d(view, weight, padding=1).is_contiguous(memory_format=torch.channels_last)


def test_the_fused_kernel_probe_answers_the_same_inside_no_grad():
    expected = folding.fused_conv_relu_available()
    folding.fused_conv_relu_available.cache_clear()
    try:
        with torch.no_grad():  # as folded_eval_forward first calls it
            assert folding.fused_conv_relu_available() == expected
    finally:
        folding.fused_conv_relu_available.cache_clear()


@pytest.mark.skipif(
    not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")),
    reason="this torch build has no fused conv+ReLU op",
)
def test_where_torch_has_the_fused_op_our_conv_relu_passes_its_probe():
    # why: a failing probe silently falls back (sound, but slower); here that would be our bug
    assert folding.fused_conv_relu_available()


@pytest.mark.parametrize(
    "kernel, stride, padding, dilation, side",
    [
        (3, 1, 1, 1, 12),
        (4, 2, 1, 1, 28),
        (4, 2, 1, 1, 9),
        (3, 2, 0, 1, 10),
        (5, 3, 2, 1, 11),
        (3, 1, 2, 2, 8),
        ((3, 2), (2, 1), (1, 0), 1, 7),
    ],
)
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_the_one_channel_input_gradient_is_the_transposed_convolution(kernel, stride, padding, dilation, side, layout):
    """matmul + col2im gives what convolution_backward gives, rows the stride skips included."""
    gen = torch.Generator().manual_seed(0)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = torch.randn(3, 1, side, side + 1, generator=gen, dtype=torch.float64)
    w = torch.randn(5, 1, kh, kw, generator=gen, dtype=torch.float64)
    pair = lambda v: (v, v) if isinstance(v, int) else v
    args = (pair(stride), pair(padding), pair(dilation), 1)
    out = F.conv2d(x, w, None, *args)
    grad = torch.randn(out.shape, generator=gen, dtype=torch.float64).contiguous(memory_format=layout)
    (expected, _, _) = torch.ops.aten.convolution_backward(
        grad, x, w, None, *map(list, args[:3]), False, [0, 0], 1, [True, False, False]
    )
    assert folding._folds_input_grad(w, 1)
    torch.testing.assert_close(folding._conv_input_grad(grad, x, w, *args), expected, rtol=1e-12, atol=1e-12)


def test_the_attack_takes_the_first_convs_input_gradient_by_col2im_and_the_others_by_convolution(monkeypatch):
    model = _randomise_bn(create_model("small-cnn", (1, 28, 28), 10))
    calls = []
    real = folding._conv_input_grad
    monkeypatch.setattr(folding, "_conv_input_grad", lambda g, x, w, *a: calls.append(w.shape[1]) or real(g, x, w, *a))
    x = torch.rand(4, 1, 28, 28, requires_grad=True)
    forward = folded_eval_forward(model, channels_last=False, fuse_relu=False)
    (got,) = torch.autograd.grad(forward(x).square().sum(), x)
    (expected,) = torch.autograd.grad(model(x).square().sum(), x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert calls == [1]  # the 1-channel conv only; the 16→32 conv keeps autograd's own backward

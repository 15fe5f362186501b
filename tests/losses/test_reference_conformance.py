"""AD-CERT and CC-Dist as their authors' code computes them (methods.md §5.2, §6.2, §9).

Each expected value is transcribed from methods.md's formulas by hand (the toy net of
test_losses.py, whose numbers a reader can check) or as plain tensor arithmetic written here,
never by calling the code under test. Mutants these tests were run against (and the test that
failed for each) are listed in the issue 34 note: the teacher queried at x_adv, the teacher's
features at x_adv, the feature box not interpolated, the BN statistics of the adversarial batch
under ctbench, the attack in eval mode under ctbench.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_net
from test_losses import D_ADV, X_ADV, Z_ADV, Z_LOWER, Z_T_CLEAN, X, approx, ce, hidden, kl, l_lb, logits, toy_ctx

from adcert_plugin.attacks import AttackConfig
from adcert_plugin.attacks.ctbench_pgd import ctbench_pgd, default_step_size, step_scale
from adcert_plugin.bounds import InputBox, wrap_model
from adcert_plugin.bounds.batch_stats import batch_statistics, forward_with_statistics
from adcert_plugin.data import DataSpec
from adcert_plugin.losses import create_loss
from adcert_plugin.losses.base import LossContext
from adcert_plugin.losses.cc_dist import box_distance

# The toy's penultimate features over the ε box [0.4, 0.6]²: both ReLUs stably active, so
# h1 = 2x1 + x2 + 1 ∈ [2.2, 2.8] and h2 = x1 − x2 + 1 ∈ [0.8, 1.2]; the teacher's features are x itself.
FEATURE_LOWER, FEATURE_UPPER = [2.2, 0.8], [2.8, 1.2]


def reference_box_term(alpha, adv, lower, upper, teacher):
    """(1/F)·Σ_i max((φ̲_i − t_i)², (φ̄_i − t_i)²) with φ̲/φ̄ = (1−α)·φ_adv + α·(l/u), one sample."""
    lo = [(1 - alpha) * a + alpha * l for a, l in zip(adv, lower)]
    hi = [(1 - alpha) * a + alpha * u for a, u in zip(adv, upper)]
    return sum(max((a - t) ** 2, (b - t) ** 2) for a, b, t in zip(lo, hi, teacher)) / len(adv)


# -- AD-CERT ----------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_ad_cert_default_is_kl_from_the_teacher_at_clean_x(alpha):
    out = create_loss("ad-cert", alpha=alpha)(toy_ctx())
    distill = kl(Z_T_CLEAN, Z_ADV)  # KL(p_T(x) ‖ p_S(x_adv)), τ = 1, batchmean over one sample
    assert out.parts["distill"].item() == approx(distill)
    assert out.loss.item() == approx(alpha * l_lb(Z_LOWER) + (1 - alpha) * distill)
    assert ("lb" in out.parts) == (alpha > 0)  # α = 0: no IBP term, as in the reference


def test_ad_cert_rslad_cert_uses_the_kl_attack_and_mixes_clean_and_adversarial_kl():
    ctx = toy_ctx()
    out = create_loss("ad-cert", alpha=0.3, variant="rslad-cert")(ctx)
    # The KL-to-teacher attack lands on (0.6, 0.6) (see test_ad_cert_kl_attack_and_hard_label_weight).
    assert ctx.x_adv.flatten().tolist() == approx([0.6, 0.6])
    distill = kl(Z_T_CLEAN, logits(list(X))) / 6 + 5 * kl(Z_T_CLEAN, logits([0.6, 0.6])) / 6
    assert out.loss.item() == approx(0.3 * l_lb(Z_LOWER) + 0.7 * distill)


def test_ad_cert_nat_kl_distils_the_clean_student():
    out = create_loss("ad-cert", alpha=0.3, variant="nat-kl")(toy_ctx())
    assert out.loss.item() == approx(0.3 * l_lb(Z_LOWER) + 0.7 * kl(Z_T_CLEAN, logits(list(X))))


def test_ad_cert_soft_label_attack_option_keeps_the_default_distillation():
    ctx = toy_ctx()
    out = create_loss("ad-cert", alpha=0.3, attack_objective="kl")(ctx)
    assert ctx.x_adv.flatten().tolist() == approx([0.6, 0.6])
    assert out.parts["distill"].item() == approx(kl(Z_T_CLEAN, logits([0.6, 0.6])))


def test_ad_cert_batchmean_on_a_batch_equals_torch_kl_div(batch):
    x, y = batch
    student, teacher = tiny_net("mlp").train(), tiny_net("mlp", seed=7).eval()
    spec = DataSpec("tiny", (1, 8, 8), 4, (0.5,), (0.25,))
    ctx = LossContext(
        student,
        wrap_model(student, (1, 8, 8)),
        x,
        y,
        0.05,
        spec,
        attack=AttackConfig(steps=3, step_size=0.5),
        teacher=teacher,
        generator=torch.Generator().manual_seed(0),
    )
    out = create_loss("ad-cert", alpha=0.0)(ctx)
    with torch.no_grad():
        t = F.log_softmax(teacher((x - 0.5) / 0.25), 1)
        s = F.log_softmax(student(ctx.x_adv), 1)
    expected = F.kl_div(s, t, log_target=True, reduction="batchmean")
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


# -- CC-Dist ------------------------------------------------------------------------------------


def test_toy_feature_bounds_are_the_hand_box():
    ctx = toy_ctx()
    lower, upper = ctx.feature_bounds()
    assert lower.flatten().tolist() == approx(FEATURE_LOWER) and upper.flatten().tolist() == approx(FEATURE_UPPER)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_cc_dist_default_is_the_interpolated_feature_box_against_clean_teacher_features(alpha):
    out = create_loss("cc-dist", alpha=alpha)(toy_ctx())
    term = reference_box_term(alpha, hidden(X_ADV), FEATURE_LOWER, FEATURE_UPPER, list(X))
    assert out.parts["distill"].item() == approx(term)
    assert out.loss.item() == approx(l_lb(alpha * Z_LOWER + (1 - alpha) * D_ADV) + 5.0 * term)


def test_cc_dist_at_alpha_zero_is_the_point_distance():
    box = create_loss("cc-dist", alpha=0.0, beta=2.0)(toy_ctx())
    point = create_loss("cc-dist", alpha=0.0, beta=2.0, distance="mse", teacher_point="clean")(toy_ctx())
    assert box.loss.item() == approx(point.loss.item())
    assert box.parts["distill"].item() == approx(sum((a - b) ** 2 for a, b in zip(hidden(X_ADV), X)) / 2)


def test_box_term_is_at_least_the_distance_of_every_point_in_the_box():
    gen = torch.Generator().manual_seed(0)
    lower = torch.randn(6, 9, generator=gen)
    upper = lower + torch.rand(6, 9, generator=gen)
    target = torch.randn(6, 9, generator=gen) * 2
    worst = box_distance(lower, upper, target)
    for _ in range(200):
        point = lower + torch.rand(6, 9, generator=gen) * (upper - lower)
        assert ((point - target) ** 2).sum(1).mean() / 9 <= worst + 1e-6
    # ... and attained: it is the maximum over the box, not just an upper bound
    corner = torch.where((lower - target).abs() > (upper - target).abs(), lower, upper)
    assert ((corner - target) ** 2).sum(1).mean() / 9 == pytest.approx(worst.item(), rel=1e-6)


@pytest.mark.parametrize("kind", ["cnn-bn", "cnn", "mlp"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_feature_bounds_contain_sampled_features(batch, kind, mode):
    x, y = batch
    student = tiny_net(kind)
    student.train(mode == "train")
    spec = DataSpec("tiny", (1, 8, 8), 4, (0.5,), (0.25,))
    ctx = LossContext(
        student,
        wrap_model(student, (1, 8, 8)),
        x,
        y,
        0.1,
        spec,
        teacher=tiny_net("mlp", seed=5),
        conventions="ctbench",
        generator=torch.Generator().manual_seed(0),
    )
    lower, upper = (b.detach() for b in ctx.feature_bounds())
    box = InputBox.from_pixels(x, 0.1, spec.mean, spec.std)
    stats = batch_statistics(student, box.x_norm).detach()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(50):
            point = box.lower_norm + torch.rand(box.x_norm.shape, generator=gen) * (box.upper_norm - box.lower_norm)
            features = forward_with_statistics(student, point, stats)[0] if mode == "train" else student[:-1](point)
            assert (features >= lower - 1e-5).all() and (features <= upper + 1e-5).all()


# -- ctbench conventions ----------------------------------------------------------------------


def bn_ctx(batch, conventions, teacher=True):
    x, y = batch
    student = tiny_net("cnn-bn").train()
    spec = DataSpec("tiny", (1, 8, 8), 4, (0.5,), (0.25,))
    ctx = LossContext(
        student,
        wrap_model(student, (1, 8, 8)),
        x,
        y,
        0.1,
        spec,
        attack=AttackConfig(steps=3, step_size=default_step_size(3), restarts=2),
        teacher=tiny_net("cnn-bn", seed=9) if teacher else None,
        generator=torch.Generator().manual_seed(0),
        conventions=conventions,
    )
    return ctx, student


def test_ctbench_uses_the_clean_batch_statistics_everywhere(batch):
    x, _ = batch
    ctx, student = bn_ctx(batch, "ctbench")
    reference = copy.deepcopy(student)
    out = create_loss("cc-dist", alpha=0.4)(ctx)
    x_norm = (x - 0.5) / 0.25
    stats = batch_statistics(reference, x_norm)
    with torch.no_grad():
        reference(x_norm)  # one clean train-mode forward: the running statistics move once, with x
    for ours, theirs in zip(student.buffers(), reference.buffers()):
        if ours.is_floating_point():  # running mean and variance (the fused pass leaves the batch counter)
            assert torch.allclose(ours, theirs, atol=1e-6)
    # the adversarial forward and the bound normalise with the clean batch's statistics
    features, logits_adv = forward_with_statistics(reference, ctx.x_adv, stats)
    assert torch.allclose(ctx.student_logits("adv"), logits_adv, atol=1e-5)
    assert torch.allclose(ctx.student_features("adv"), features, atol=1e-5)
    bound = wrap_model(reference, (1, 8, 8)).margin_lower(ctx.box, ctx.y, "IBP", stats_input=x_norm)
    assert torch.allclose(ctx.margin_lower("IBP"), bound, atol=1e-5)
    assert torch.isfinite(out.loss)


def test_ctbench_attack_runs_the_train_mode_student_with_clean_statistics(batch):
    ctx, student = bn_ctx(batch, "ctbench", teacher=False)
    reference = copy.deepcopy(student)
    stats = batch_statistics(reference, ctx.x_norm).detach()
    expected = ctbench_pgd(
        lambda v: forward_with_statistics(reference, v, stats)[1],
        ctx.attack_box,
        ctx.y,
        3,
        default_step_size(3),
        2,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.allclose(ctx.x_adv, expected, atol=1e-6)


def test_expressive_losses_bounds_with_the_adversarial_batch_statistics(batch):
    ctx, student = bn_ctx(batch, "expressive-losses", teacher=False)
    reference = copy.deepcopy(student)
    bound = ctx.bind({"attack", "bounds"}).margin_lower("IBP")
    expected = wrap_model(reference, (1, 8, 8)).margin_lower(ctx.box, ctx.y, "IBP", stats_input=ctx.x_adv)
    assert torch.allclose(bound, expected, atol=1e-5)


def test_ctbench_pgd_step_rule_and_schedule():
    assert default_step_size(1) == 2.0 and default_step_size(10) == 0.25 and default_step_size(4) == 0.5
    assert [step_scale(k, 10) for k in (0, 9)] == [1.0, 1.0] and step_scale(10, 15) == pytest.approx(0.2)
    assert step_scale(13, 20) == 1.0 and step_scale(14, 20) == pytest.approx(0.1)
    assert [round(step_scale(k, 100), 6) for k in (49, 50, 80, 90)] == [1.0, 0.1, 0.01, 0.001]


def test_ctbench_pgd_keeps_the_best_point_and_lands_on_the_toy_vertex():
    ctx = toy_ctx(attack=AttackConfig(steps=1, step_size=2.0, restarts=3))
    ctx.conventions = "ctbench"
    assert ctx.x_adv.flatten().tolist() == approx(X_ADV)
    # a zero-step attack returns its random start, inside the box and not the clean point
    box = ctx.box
    start = ctbench_pgd(ctx.student, box, ctx.y, 0, 2.0, 1, generator=torch.Generator().manual_seed(4))
    assert (start >= box.lower_norm).all() and (start <= box.upper_norm).all() and not torch.equal(start, box.x_norm)
    value = ce(logits(start.flatten().tolist()))
    assert value <= ce(Z_ADV) + 1e-6

"""Each loss against a hand computation on a 2→2→2 ReLU net, and the expressive limits.

The toy student: h = ReLU(W1 x + b1), z = W2 h, with W1 = [[2, 1], [1, −1]], b1 = [1, 1],
W2 = [[1, −1], [−1, 2]]; x = (0.5, 0.5), y = 0, ε = 0.1 (mean 0, std 1). Both ReLUs are
stably active on the box [0.4, 0.6]², so the margin is z0 − z1 = 2h1 − 3h2 = x1 + 5x2 − 1.
The CE gradient w.r.t. x has the constant sign (−, −) on the box (K = 2, active ReLUs), so a
1-step η = 10 PGD lands on the vertex (0.4, 0.4) whatever the random start.
The toy teacher is Flatten → Linear(diag(1, 2)): logits (x1, 2·x2), features x.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import tiny_net
from torch import nn

from adcert_plugin.attacks import AttackConfig
from adcert_plugin.bounds import margins, wrap_model
from adcert_plugin.data import DataSpec
from adcert_plugin.losses import create_loss, kl_distill, lb_loss
from adcert_plugin.losses.ad_cert import pseudo_logits
from adcert_plugin.losses.base import LossContext

TOY_SPEC = DataSpec("toy", (1, 1, 2), 2, (0.0,), (1.0,))
W1, B1, W2 = [[2.0, 1.0], [1.0, -1.0]], [1.0, 1.0], [[1.0, -1.0], [-1.0, 2.0]]
X, EPS = (0.5, 0.5), 0.1
ONE_STEP = AttackConfig(steps=1, step_size=10.0)


def toy_student() -> nn.Sequential:
    # The last layer keeps a (zero) bias: auto_LiRPA 0.3 cannot fold C into a bias-free Linear (MatMul).
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor(W1))
        model[1].bias.copy_(torch.tensor(B1))
        model[3].weight.copy_(torch.tensor(W2))
        model[3].bias.zero_()
    return model.train()


def toy_teacher() -> nn.Sequential:
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    return model


def toy_ctx(attack=ONE_STEP, teacher=True, seed=0) -> LossContext:
    student = toy_student()
    return LossContext(
        student,
        wrap_model(student, (1, 1, 2)),
        torch.tensor([[[list(X)]]]),
        torch.tensor([0]),
        EPS,
        TOY_SPEC,
        attack=attack,
        teacher=toy_teacher() if teacher else None,
        generator=torch.Generator().manual_seed(seed),
    )


# -- hand arithmetic --------------------------------------------------------------------------


def hidden(x):
    return [max(0.0, sum(w * v for w, v in zip(row, x)) + b) for row, b in zip(W1, B1)]


def logits(x):
    h = hidden(x)
    return [sum(w * v for w, v in zip(row, h)) for row in W2]


def ibp_margin_lower(lo, hi):
    """Interval arithmetic: layer 1 and ReLU, then the margin row C_y W2 = (2, −3) (spec folded in)."""
    h_lo, h_hi = [], []
    for row, b in zip(W1, B1):
        h_lo.append(max(0.0, b + sum(w * (l if w > 0 else u) for w, l, u in zip(row, lo, hi))))
        h_hi.append(max(0.0, b + sum(w * (u if w > 0 else l) for w, l, u in zip(row, lo, hi))))
    row = [W2[0][i] - W2[1][i] for i in range(2)]
    return sum(c * (l if c > 0 else u) for c, l, u in zip(row, h_lo, h_hi))


def l_lb(v):
    return math.log1p(math.exp(-v))


def softmax(z, tau=1.0):
    e = [math.exp(v / tau) for v in z]
    return [v / sum(e) for v in e]


def kl(z_t, z_s, tau=1.0):
    p, q = softmax(z_t, tau), softmax(z_s, tau)
    return tau**2 * sum(a * math.log(a / b) for a, b in zip(p, q))


def ce(z, y=0):
    return math.log(sum(math.exp(v) for v in z)) - z[y]


LO, HI = [v - EPS for v in X], [v + EPS for v in X]
X_ADV = [0.4, 0.4]
Z_LOWER = ibp_margin_lower(LO, HI)  # 0.8
Z_ADV = logits(X_ADV)  # (1.2, -0.2)
D_ADV = Z_ADV[0] - Z_ADV[1]  # 1.4
Z_T_ADV, Z_T_CLEAN = [X_ADV[0], 2 * X_ADV[1]], [X[0], 2 * X[1]]


def test_toy_hand_values_are_what_the_docstring_says():
    assert pytest.approx(0.8) == Z_LOWER and pytest.approx(1.4) == D_ADV
    ctx = toy_ctx()
    assert ctx.x_adv.flatten().tolist() == pytest.approx(X_ADV)
    assert ctx.margin_lower("IBP").item() == pytest.approx(Z_LOWER, abs=1e-6)


def approx(value):
    return pytest.approx(value, rel=1e-5, abs=1e-6)


def test_ibp_matches_hand():
    out = create_loss("ibp")(toy_ctx(teacher=False))
    assert out.loss.item() == approx(l_lb(Z_LOWER))
    assert out.parts["ce_clean"].item() == approx(ce(logits(X)))


@pytest.mark.parametrize("kappa", [0.0, 0.25, 1.0])
def test_crown_ibp_matches_hand(kappa):
    crown_ibp_lower = 1.4  # active ReLUs: the linear relaxation is exact, min of x1 + 5x2 − 1 on the box
    out = create_loss("crown-ibp", kappa=kappa)(toy_ctx(teacher=False))
    assert out.loss.item() == pytest.approx(l_lb(kappa * Z_LOWER + (1 - kappa) * crown_ibp_lower), rel=1e-4)


def test_pgd_matches_hand():
    out = create_loss("pgd")(toy_ctx(teacher=False))
    assert out.loss.item() == approx(ce(Z_ADV))
    assert out.parts["acc_adv"].item() == 1.0


def test_trades_matches_formula_at_its_kl_vertex():
    ctx = toy_ctx(teacher=False)
    out = create_loss("trades", beta=6.0)(ctx)
    x_adv = ctx.x_adv.flatten().tolist()
    # The KL gradient is ±(−1, −5): the attack lands on one of the two diagonal vertices.
    assert x_adv == approx([0.4, 0.4]) or x_adv == approx([0.6, 0.6])
    expected = ce(logits(X)) + 6.0 * kl(logits(X), logits(x_adv))
    assert out.loss.item() == approx(expected)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_mtl_cc_exp_ibp_match_hand(alpha):
    mtl = create_loss("mtl-ibp", alpha=alpha)(toy_ctx(teacher=False)).loss.item()
    cc = create_loss("cc-ibp", alpha=alpha)(toy_ctx(teacher=False)).loss.item()
    exp = create_loss("exp-ibp", alpha=alpha)(toy_ctx(teacher=False)).loss.item()
    assert mtl == approx(alpha * l_lb(Z_LOWER) + (1 - alpha) * ce(Z_ADV))
    assert cc == approx(l_lb(alpha * Z_LOWER + (1 - alpha) * D_ADV))
    assert exp == approx(l_lb(Z_LOWER) ** alpha * ce(Z_ADV) ** (1 - alpha))


def test_sabr_matches_hand():
    # λ = 0.5: radius 0.05, x_adv = (0.4, 0.4) is re-centred to (0.45, 0.45); box [0.4, 0.5]².
    out = create_loss("sabr", lam=0.5)(toy_ctx(teacher=False))
    small_lower = ibp_margin_lower([0.4, 0.4], [0.5, 0.5])
    assert small_lower == pytest.approx(1.1)
    assert out.loss.item() == approx(l_lb(small_lower))


@pytest.mark.parametrize("distance, point", [("mse", "adv"), ("cosine", "adv"), ("mse", "clean")])
def test_cc_dist_matches_hand(distance, point):
    # adcert's point distances (not the paper's): the teacher at the same point as the student
    loss = create_loss("cc-dist", alpha=0.3, beta=2.0, distance=distance, feature_point=point, teacher_point=point)
    ctx = toy_ctx()
    loss.prepare(ctx.student, ctx.teacher)
    assert len(loss.modules) == 0  # equal widths: no projection
    out = loss(ctx)
    x_f = X_ADV if point == "adv" else list(X)
    phi_s, phi_t = hidden(x_f), x_f
    if distance == "mse":
        dist = sum((a - b) ** 2 for a, b in zip(phi_s, phi_t)) / 2
    else:
        dot = sum(a * b for a, b in zip(phi_s, phi_t))
        dist = 1 - dot / (math.hypot(*phi_s) * math.hypot(*phi_t))
    assert out.parts["distill"].item() == approx(dist)
    assert out.loss.item() == approx(l_lb(0.3 * Z_LOWER + 0.7 * D_ADV) + 2.0 * dist)


def test_cc_dist_projection_always_is_used():
    loss = create_loss("cc-dist", alpha=0.3, projection="always", distance="mse", teacher_point="adv")
    ctx = toy_ctx()
    loss.prepare(ctx.student, ctx.teacher)
    with torch.no_grad():
        loss.modules["projection"].weight.copy_(2 * torch.eye(2))
        loss.modules["projection"].bias.zero_()
    dist = sum((2 * a - b) ** 2 for a, b in zip(hidden(X_ADV), X_ADV)) / 2
    assert loss(ctx).parts["distill"].item() == approx(dist)


@pytest.mark.parametrize("combination", ["loss", "logit", "exp"])
@pytest.mark.parametrize("teacher_input", ["adv", "clean"])
def test_ad_cert_matches_hand(combination, teacher_input):
    alpha, tau = 0.3, 2.0
    out = create_loss("ad-cert", alpha=alpha, tau=tau, combination=combination, teacher_input=teacher_input)(toy_ctx())
    z_t = Z_T_ADV if teacher_input == "adv" else Z_T_CLEAN
    distill = kl(z_t, Z_ADV, tau)
    expected = {
        "loss": alpha * l_lb(Z_LOWER) + (1 - alpha) * distill,
        "exp": l_lb(Z_LOWER) ** alpha * distill ** (1 - alpha),
        "logit": kl(z_t, [0.0, -(alpha * Z_LOWER + (1 - alpha) * D_ADV)], tau),
    }[combination]
    assert out.loss.item() == approx(expected)
    assert out.parts["distill"].item() == approx(distill)
    assert out.parts["lb"].item() == approx(l_lb(Z_LOWER))


def test_ad_cert_kl_attack_and_hard_label_weight():
    # The KL-to-teacher attack: p_T(x)_1 = 0.62 > p_S(x')_1 everywhere, so the step is +(1, 5): vertex (0.6, 0.6).
    ctx = toy_ctx()
    out = create_loss("ad-cert", alpha=0.3, attack_objective="kl", hard_label_weight=0.5, teacher_input="adv")(ctx)
    assert ctx.x_adv.flatten().tolist() == approx([0.6, 0.6])
    z_s = logits([0.6, 0.6])
    expected = 0.3 * l_lb(Z_LOWER) + 0.7 * kl([0.6, 1.2], z_s) + 0.5 * ce(z_s)
    assert out.loss.item() == approx(expected)


def test_pseudo_logits_put_margins_back_in_class_order():
    mix = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    z = pseudo_logits(mix, torch.tensor([2, 0]), 4)
    assert z.tolist() == [[-1.0, -2.0, 0.0, -3.0], [0.0, -4.0, -5.0, -6.0]]
    assert margins(z, torch.tensor([2, 0])).tolist() == mix.tolist()


def test_lb_loss_is_ce_on_exact_margins_and_kl_distill_is_batchmean():
    torch.manual_seed(0)
    logits_s, logits_t, y = torch.randn(5, 4), torch.randn(5, 4), torch.randint(0, 4, (5,))
    assert lb_loss(margins(logits_s, y)).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits_s, y).item(), rel=1e-6
    )
    assert lb_loss(margins(logits_s, y), reduction="none").shape == (5,)
    ref = (
        torch.nn.functional.kl_div(
            torch.log_softmax(logits_s / 3, 1), torch.softmax(logits_t / 3, 1), reduction="batchmean"
        )
        * 9
    )
    assert kl_distill(logits_t, logits_s, 3.0).item() == pytest.approx(ref.item(), rel=1e-5)


# -- expressive limits on a 4-class MLP (no BN: bounds do not depend on the statistics batch) ---


def mlp_ctx(batch, teacher=None, seed=3, student=None):
    x, y = batch
    student = tiny_net("mlp").train() if student is None else student
    spec = DataSpec("tiny", (1, 8, 8), 4, (0.5,), (0.25,))
    return LossContext(
        student,
        wrap_model(student, (1, 8, 8)),
        x,
        y,
        0.05,
        spec,
        attack=AttackConfig(steps=3, step_size=0.5),
        teacher=teacher,
        generator=torch.Generator().manual_seed(seed),
    )


@pytest.mark.parametrize("name", ["mtl-ibp", "cc-ibp", "exp-ibp"])
def test_alpha_limits_give_adversarial_and_ibp_losses(batch, name):
    adversarial = create_loss("pgd")(mlp_ctx(batch)).loss
    certified = create_loss("ibp")(mlp_ctx(batch)).loss
    assert create_loss(name, alpha=0.0)(mlp_ctx(batch)).loss.item() == pytest.approx(adversarial.item(), rel=1e-6)
    assert create_loss(name, alpha=1.0)(mlp_ctx(batch)).loss.item() == pytest.approx(certified.item(), rel=1e-6)


@pytest.mark.parametrize("combination", ["loss", "logit", "exp"])
def test_ad_cert_alpha_limits(batch, combination):
    teacher = tiny_net("mlp", seed=7)
    certified = create_loss("ibp")(mlp_ctx(batch)).loss.item()
    zero = create_loss("ad-cert", alpha=0.0, combination=combination)(mlp_ctx(batch, teacher))
    assert zero.loss.item() == pytest.approx(zero.parts["distill"].item(), rel=1e-5)
    if combination != "logit":  # logit at α = 1 distils onto the IBP pseudo-logits instead
        one = create_loss("ad-cert", alpha=1.0, combination=combination)(mlp_ctx(batch, teacher))
        assert one.loss.item() == pytest.approx(certified, rel=1e-6)


@pytest.mark.parametrize("alpha", [0.05, 0.3, 0.7])
def test_cc_ibp_never_above_mtl_ibp(batch, alpha):
    cc = create_loss("cc-ibp", alpha=alpha)(mlp_ctx(batch)).loss.item()
    mtl = create_loss("mtl-ibp", alpha=alpha)(mlp_ctx(batch)).loss.item()
    assert cc <= mtl + 1e-6


def test_ad_cert_with_student_copy_as_teacher_has_zero_distillation(batch):
    student = tiny_net("mlp").train()
    ctx = mlp_ctx(batch, teacher=copy.deepcopy(student), student=student)
    out = create_loss("ad-cert", alpha=0.0, teacher_input="adv")(ctx)
    assert out.parts["distill"].item() == pytest.approx(0.0, abs=1e-6)
    assert out.loss.item() == pytest.approx(0.0, abs=1e-6)


def test_ibp_at_zero_eps_is_clean_cross_entropy(batch):
    ctx = mlp_ctx(batch)
    ctx.eps = 0.0
    out = create_loss("ibp")(ctx)
    assert out.loss.item() == pytest.approx(out.parts["ce_clean"].item(), rel=1e-5)

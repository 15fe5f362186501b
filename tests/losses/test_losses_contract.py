"""Contract tests over every registered loss, the context's sharing rules, and a short MNIST run."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import tiny_net

from adcert_plugin import losses as losses_pkg
from adcert_plugin.attacks import AttackConfig
from adcert_plugin.bounds import wrap_model
from adcert_plugin.data import DataSpec, load_split, subset
from adcert_plugin.errors import ConfigError
from adcert_plugin.losses import create_loss, list_losses, loss_needs
from adcert_plugin.losses.base import LossContext
from adcert_plugin.losses.sabr import small_box
from adcert_plugin.losses.teacher import Teacher
from adcert_plugin.models import create_model

SPEC = DataSpec("tiny", (1, 8, 8), 4, (0.5,), (0.25,))
PART_NAMES = {"ce_clean", "ce_adv", "lb", "distill", "acc_adv"}
BUILTIN = ["ad-cert", "cc-dist", "cc-ibp", "crown-ibp", "exp-ibp", "ibp", "mtl-ibp", "pgd", "sabr", "trades"]


def setup(name, batch, student=None, teacher=None, eps=0.05, seed=0, attack=AttackConfig(), native=True, **params):
    x, y = batch
    student = tiny_net("cnn-bn").train() if student is None else student
    loss = create_loss(name, **params)
    if "teacher" in loss.needs and teacher is None:
        teacher = Teacher(tiny_net("cnn-bn", seed=1))
    loss.prepare(student, teacher)
    ctx = LossContext(
        student,
        wrap_model(student, (1, 8, 8), use_native_ibp=native),
        x,
        y,
        eps,
        SPEC,
        attack=attack,
        teacher=teacher,
        generator=torch.Generator().manual_seed(seed),
    )
    return loss, ctx


def test_all_builtin_losses_registered():
    assert set(BUILTIN) <= set(list_losses())


@pytest.mark.parametrize("name", list_losses())
def test_contract_finite_scalar_grads_on_student_only_detached_parts(name, batch):
    loss, ctx = setup(name, batch)
    out = loss(ctx)
    assert out.loss.dim() == 0 and math.isfinite(out.loss.item())
    assert set(out.parts) <= PART_NAMES
    for key, value in out.parts.items():
        assert not value.requires_grad and value.dim() == 0 and math.isfinite(value.item()), key
    out.loss.backward()
    grads = [p.grad for p in ctx.student.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)
    if ctx.teacher is not None:
        assert all(p.grad is None for p in ctx.teacher.parameters())
        assert not ctx.teacher.model.training
    assert all(p.grad is not None for p in loss.modules.parameters())


@pytest.mark.parametrize("name", list_losses())
@pytest.mark.parametrize("training", [True, False])
def test_contract_student_mode_unchanged(name, training, batch):
    student = tiny_net("cnn-bn").train(training)
    loss, ctx = setup(name, batch, student=student)
    loss(ctx)
    assert student.training is training
    assert all(m.training is training for m in student.modules())


@pytest.mark.parametrize("name", list_losses())
def test_contract_seed_reproducible(name, batch):
    student = tiny_net("cnn-bn").train()
    first = setup(name, batch, student=copy.deepcopy(student), seed=5)
    second = setup(name, batch, student=copy.deepcopy(student), seed=5)
    for loss in (first[0], second[0]):  # identical projection heads, if any
        torch.manual_seed(0)
        for p in loss.modules.parameters():
            torch.nn.init.normal_(p)
    a, b = first[0](first[1]), second[0](second[1])
    assert a.loss.item() == b.loss.item()
    assert {k: v.item() for k, v in a.parts.items()} == {k: v.item() for k, v in b.parts.items()}


@pytest.mark.parametrize("name", list_losses())
def test_contract_tiny_eps_stays_finite(name, batch):
    loss, ctx = setup(name, batch, eps=1e-7)
    out = loss(ctx)
    out.loss.backward()
    assert math.isfinite(out.loss.item())
    assert all(torch.isfinite(p.grad).all() for p in ctx.student.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", [n for n in BUILTIN if "teacher" in loss_needs(n)])
def test_teacher_losses_refuse_to_run_without_teacher(name, batch):
    student = tiny_net("cnn-bn").train()
    ctx = LossContext(student, wrap_model(student, (1, 8, 8)), *batch, 0.05, SPEC)
    loss = create_loss(name)
    with pytest.raises(ConfigError, match="teacher"):
        loss(ctx)


# -- the context: sharing, BN statistics, the attack box --------------------------------------


def count_attacks(monkeypatch):
    calls = []
    real = losses_pkg.context.pgd_attack

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(losses_pkg.context, "pgd_attack", counting)
    return calls


@pytest.mark.parametrize("name", BUILTIN)
def test_one_pgd_run_per_step_and_none_without_attack(name, batch, monkeypatch):
    calls = count_attacks(monkeypatch)
    loss, ctx = setup(name, batch)
    loss(ctx)
    assert len(calls) == (1 if "attack" in loss.needs else 0)


def bn_stats(model):
    return [b.clone() for n, b in model.named_buffers() if "running" in n]


@pytest.mark.parametrize("native", [True, False])
def test_fused_pass_is_the_adversarial_forward(batch, native):
    """mtl-ibp: logits at x_adv = a train-mode forward; BN running stats move exactly once, by x_adv."""
    student = tiny_net("cnn-bn").train()
    reference = copy.deepcopy(student)
    loss, ctx = setup("mtl-ibp", batch, student=student, native=native)
    loss(ctx)
    expected_logits = reference(ctx.x_adv)
    assert torch.allclose(ctx.student_logits("adv"), expected_logits, atol=1e-5)
    for ours, theirs in zip(bn_stats(student), bn_stats(reference)):
        assert torch.allclose(ours, theirs, atol=1e-6)
    bound = wrap_model(copy.deepcopy(reference), (1, 8, 8)).margin_lower(ctx.box, ctx.y, stats_input=ctx.x_adv)
    assert torch.allclose(ctx.margin_lower("IBP"), bound, atol=1e-4)


def test_ibp_uses_clean_statistics_and_moves_them_once(batch):
    student = tiny_net("cnn-bn").train()
    reference = copy.deepcopy(student)
    loss, ctx = setup("ibp", batch, student=student)
    loss(ctx)
    assert torch.allclose(ctx.student_logits("clean"), reference(ctx.x_norm), atol=1e-5)
    for ours, theirs in zip(bn_stats(student), bn_stats(reference)):
        assert torch.allclose(ours, theirs, atol=1e-6)


def test_native_and_auto_lirpa_paths_agree(batch):
    student = tiny_net("cnn-bn").train()
    native = setup("cc-ibp", batch, student=copy.deepcopy(student), seed=2)
    lirpa = setup("cc-ibp", batch, student=copy.deepcopy(student), seed=2, native=False)
    assert native[0](native[1]).loss.item() == pytest.approx(lirpa[0](lirpa[1]).loss.item(), rel=1e-4)


def test_attack_box_uses_eps_factor(batch):
    loss, ctx = setup("pgd", batch, attack=AttackConfig(steps=1, step_size=10.0, eps_factor=2.0))
    loss(ctx)
    assert ctx.attack_box.contains(ctx.x_adv).all()
    assert not ctx.box.contains(ctx.x_adv).all()


def test_trades_attacks_the_kl_and_a_second_objective_is_refused(batch):
    loss, ctx = setup("trades", batch)
    loss(ctx)
    assert ctx._memo["x_adv_request"] == ("kl", "student")
    with pytest.raises(RuntimeError, match="one PGD run"):
        ctx.adversarial("ce")


def test_sabr_small_box_lies_inside_eps_box():
    torch.manual_seed(0)
    spec = DataSpec("rgb", (3, 8, 8), 4, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    student = create_model("small-cnn", (3, 8, 8), 4, width=4, linear_size=16).train()
    x = torch.rand(6, 3, 8, 8)
    x[:2] = x[:2].round()  # pixels at 0 and 1: a clipped box
    eps, lam = 8 / 255, 0.3
    ctx = LossContext(
        student,
        wrap_model(student, (3, 8, 8)),
        x,
        torch.arange(6) % 4,
        eps,
        spec,
        attack=AttackConfig(eps_factor=2.1),
        generator=torch.Generator().manual_seed(0),
    )
    ctx.bind(create_loss("sabr").needs)
    box = small_box(ctx, lam)
    assert ctx.box.contains(box.lower_norm, tol=1e-6).all() and ctx.box.contains(box.upper_norm, tol=1e-6).all()
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    assert (box.half_width <= lam * eps / std + 1e-6).all()
    assert torch.isclose(box.half_width, (lam * eps / std).expand_as(x), atol=1e-6)[2:].float().mean() > 0.9
    out = create_loss("sabr", lam=lam)(ctx)
    assert math.isfinite(out.loss.item())


def test_cc_dist_projection_is_training_only(batch):
    student = tiny_net("cnn-bn").train()
    keys = set(student.state_dict())
    teacher = Teacher(create_model("small-cnn", (1, 8, 8), 4, width=4, linear_size=24))
    loss, ctx = setup("cc-dist", batch, student=student, teacher=teacher)
    assert isinstance(loss.modules["projection"], torch.nn.Linear)
    assert loss.modules["projection"].weight.shape == (24, 16)
    assert set(student.state_dict()) == keys
    assert not any(t.data_ptr() == loss.modules["projection"].weight.data_ptr() for t in student.state_dict().values())
    loss(ctx).loss.backward()
    assert loss.modules["projection"].weight.grad is not None


def test_cc_dist_without_prepare_refuses_mismatched_widths(batch):
    student = tiny_net("cnn-bn").train()
    teacher = Teacher(create_model("small-cnn", (1, 8, 8), 4, width=4, linear_size=24))
    ctx = LossContext(student, wrap_model(student, (1, 8, 8)), *batch, 0.05, SPEC, teacher=teacher)
    with pytest.raises(ConfigError, match="prepare"):
        create_loss("cc-dist")(ctx)


# -- a few real training steps on MNIST -------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_subset(data_dir):
    x, y = load_split("mnist", "train", data_dir)
    return subset(x, y, 256, seed=0)


@pytest.mark.parametrize("name", BUILTIN)
def test_each_loss_trains_a_small_cnn_on_mnist_without_nan(name, mnist_subset):
    from adcert_plugin.data import get_data_spec

    spec = get_data_spec("mnist")
    x_all, y_all = mnist_subset
    torch.manual_seed(0)
    student = create_model("small-cnn", spec.shape, 10, width=4, linear_size=16, bn=True).train()
    teacher = Teacher(create_model("small-cnn", spec.shape, 10, width=4, linear_size=24, bn=True))
    loss = create_loss(name)
    loss.prepare(student, teacher)
    bounded = wrap_model(student, spec.shape)
    params = list(student.parameters()) + list(loss.modules.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    before = [p.detach().clone() for p in student.parameters()]
    gen = torch.Generator().manual_seed(0)
    for step in range(3):
        x, y = x_all[step * 32 : (step + 1) * 32], y_all[step * 32 : (step + 1) * 32]
        ctx = LossContext(student, bounded, x, y, 0.1, spec, teacher=teacher, generator=gen)
        out = loss(ctx)
        assert math.isfinite(out.loss.item()), (name, step)
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
    assert all(torch.isfinite(p).all() for p in student.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))
    assert student.training and not teacher.model.training

"""The frozen teacher: eval mode for good, no gradients, untouched BN statistics, safe loading."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import tiny_net
from torch import nn

from adcert_plugin.attacks import AttackConfig
from adcert_plugin.bounds import wrap_model
from adcert_plugin.data import DataSpec
from adcert_plugin.errors import CheckpointError, ConfigError
from adcert_plugin.losses import create_loss
from adcert_plugin.losses.base import LossContext
from adcert_plugin.losses.teacher import Teacher
from adcert_plugin.models import create_model, penultimate_features
from adcert_plugin.training import arch_record, load_teacher, save_checkpoint

SPEC = DataSpec("tiny", (1, 8, 8), 4, (0.5,), (0.25,))


def test_teacher_is_frozen_and_outputs_are_detached(batch):
    net = tiny_net("cnn-bn").train()
    teacher = Teacher(net)
    assert not net.training and all(not p.requires_grad for p in net.parameters())
    x = torch.randn(4, 1, 8, 8, requires_grad=True)
    logits, features = teacher.logits(x), teacher.features(x)
    assert not logits.requires_grad and not features.requires_grad
    assert torch.allclose(logits, net(x).detach()) and torch.allclose(features, penultimate_features(net, x).detach())
    assert teacher.feature_width == 16


def test_teacher_stays_in_eval_under_train_calls():
    net = tiny_net("cnn-bn")
    teacher = Teacher(net)
    parent = nn.ModuleDict({"teacher": teacher, "other": nn.BatchNorm1d(3)})
    parent.train()
    assert parent["other"].training and not teacher.training and not net.training
    teacher.requires_grad_(True)
    assert all(not p.requires_grad for p in net.parameters())
    net.train()  # a stray direct call: eval is re-asserted at the next forward
    stats = [b.clone() for b in net.buffers()]
    teacher.logits(torch.randn(8, 1, 8, 8))
    assert not net.training
    assert all(torch.equal(a, b) for a, b in zip(stats, net.buffers()))


@pytest.mark.parametrize("name", ["ad-cert", "cc-dist"])
def test_training_steps_leave_teacher_untouched(name, batch):
    """Several optimizer steps with a BN teacher: no grad, eval mode, running stats unchanged."""
    x, y = batch
    student = tiny_net("cnn-bn").train()
    teacher_net = tiny_net("cnn-bn", seed=1)
    before = copy.deepcopy(teacher_net.state_dict())
    teacher = Teacher(teacher_net)
    loss = create_loss(name, alpha=0.3, **({"attack_objective": "kl"} if name == "ad-cert" else {}))
    loss.prepare(student, teacher)
    bounded = wrap_model(student, (1, 8, 8))
    opt = torch.optim.Adam(list(student.parameters()) + list(loss.modules.parameters()), lr=1e-2)
    for step in range(3):
        ctx = LossContext(
            student,
            bounded,
            x,
            y,
            0.05,
            SPEC,
            attack=AttackConfig(steps=2, step_size=0.5),
            teacher=teacher,
            generator=torch.Generator().manual_seed(step),
        )
        opt.zero_grad()
        loss(ctx).loss.backward()
        opt.step()
    assert all(p.grad is None for p in teacher_net.parameters())
    assert not teacher_net.training and all(not m.training for m in teacher_net.modules())
    for key, value in teacher_net.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_context_wraps_a_plain_module_as_teacher(batch):
    student = tiny_net("mlp").train()
    raw = tiny_net("mlp", seed=2).train()
    ctx = LossContext(student, wrap_model(student, (1, 8, 8)), *batch, 0.05, SPEC, teacher=raw)
    assert isinstance(ctx.teacher, Teacher) and not raw.training


def test_load_teacher_from_adcert_checkpoint(tmp_path):
    net = create_model("small-cnn", (1, 8, 8), 4, width=4, linear_size=16, bn=True)
    path = save_checkpoint(
        tmp_path / "t.pt", net, arch_record("small-cnn", (1, 8, 8), 4, {"width": 4, "linear_size": 16, "bn": True})
    )
    teacher = load_teacher(path, expect_shape=(1, 8, 8), expect_classes=4)
    x = torch.randn(2, 1, 8, 8)
    assert torch.allclose(teacher.logits(x), net.eval()(x))
    assert not teacher.model.training


def test_load_teacher_from_plain_state_dict(tmp_path):
    net = create_model("mlp", (1, 4, 4), 3, hidden=(8,))
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    teacher = load_teacher(tmp_path / "sd.pt", arch="mlp", in_shape=(1, 4, 4), num_classes=3, hidden=(8,))
    x = torch.randn(2, 1, 4, 4)
    assert torch.allclose(teacher.logits(x), net(x))
    with pytest.raises(CheckpointError, match="arch"):
        load_teacher(tmp_path / "sd.pt")


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"expect_classes": 10}, r"4 classes but the student has 10"),
        ({"expect_shape": (3, 8, 8)}, r"\(1, 8, 8\) but the data are \(3, 8, 8\)"),
    ],
)
def test_load_teacher_refuses_mismatch_in_one_line(tmp_path, kwargs, fragment):
    net = create_model("mlp", (1, 8, 8), 4, hidden=(8,))
    path = save_checkpoint(tmp_path / "t.pt", net, arch_record("mlp", (1, 8, 8), 4, {"hidden": [8]}))
    with pytest.raises(ConfigError, match=fragment) as info:
        load_teacher(path, **kwargs)
    assert "\n" not in str(info.value) and "teacher trained on" in str(info.value)

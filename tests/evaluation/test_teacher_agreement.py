"""The distillation diagnostic: the teacher's answers at the student's training attack points."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO, tiny_net
from train_fixtures import write_fake_mnist

from adcert_plugin.attacks import AttackConfig
from adcert_plugin.bounds import InputBox
from adcert_plugin.evaluation import teacher_at_attack_points
from adcert_plugin.models import create_model
from adcert_plugin.training.checkpoint import arch_record, save_checkpoint

STRONG = AttackConfig(steps=10, step_size=0.25)


def _box(batch, eps):
    x, _ = batch
    return InputBox.from_pixels(x, eps, (0.5,), (0.5,))


class _Constant(torch.nn.Module):
    """Predicts ``label`` for every input, whatever it is."""

    def __init__(self, label: int, classes: int = 4):
        super().__init__()
        self.logits = torch.full((classes,), -5.0)
        self.logits[label] = 5.0

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1)


def test_a_student_compared_with_itself_agrees_everywhere(batch):
    net = tiny_net("cnn-bn")
    found = teacher_at_attack_points(net, net, _box(batch, 0.3), batch[1], STRONG, torch.Generator().manual_seed(0))
    assert found.n == 4 and found.agreement == 1.0
    assert found.teacher_accuracy == found.student_accuracy


def test_an_attack_that_breaks_the_student_does_not_break_a_teacher_that_ignores_its_input(batch):
    student = tiny_net("mlp")
    y = torch.zeros(4, dtype=torch.long)
    found = teacher_at_attack_points(
        _Constant(0), student, _box(batch, 1.0), y, STRONG, torch.Generator().manual_seed(0)
    )
    assert found.student_accuracy < 1.0  # ε = 1 covers the whole image space: the attack wins somewhere
    assert found.teacher_accuracy == 1.0 and found.teacher_true_class_probability > 0.99
    assert found.agreement == found.student_accuracy


def test_a_teacher_that_is_always_wrong_scores_zero(batch):
    found = teacher_at_attack_points(
        _Constant(3), tiny_net("mlp"), _box(batch, 0.1), torch.zeros(4, dtype=torch.long), STRONG
    )
    assert found.teacher_accuracy == 0.0 and found.teacher_true_class_probability < 0.01


def test_modes_are_restored_and_no_samples_is_an_error(batch):
    student, teacher = tiny_net("cnn-bn"), tiny_net("cnn-bn", seed=1)
    student.train()
    teacher_at_attack_points(teacher, student, _box(batch, 0.1), batch[1], STRONG)
    assert student.training and not teacher.training
    with pytest.raises(ValueError, match="no samples"):
        teacher_at_attack_points(teacher, student, _empty_box(), batch[1][:0], STRONG)


def _empty_box():
    x = torch.rand(0, 1, 8, 8)
    return InputBox(x, x, x)


def test_the_example_script_attacks_each_student_at_its_recorded_training_eps(tmp_path):
    data = write_fake_mnist(tmp_path / "data", n_train=8, n_test=16)
    arch = arch_record("mlp", (1, 28, 28), 10, {"hidden": [8]})
    paths = {}
    for name, mul in (("teacher", 1.0), ("student", 2.0)):
        torch.manual_seed(len(name))
        model = create_model("mlp", (1, 28, 28), 10, hidden=[8])
        config = {"schedule": {"eps": 0.1, "train_eps_mul": mul}, "attack": {"steps": 2, "step_size": 0.5}}
        paths[name] = save_checkpoint(tmp_path / name / "model.pt", model, arch, "mnist", config)
    out = tmp_path / "rows.json"
    cmd = [
        sys.executable,
        str(REPO / "examples" / "teacher_at_attack_points.py"),
        "--teacher",
        str(paths["teacher"]),
        "--student",
        str(paths["student"]),
        "--data-dir",
        str(data),
        "--n",
        "16",
        "--json",
        str(out),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads(out.read_text())
    assert row["n"] == 16 and row["eps"] == pytest.approx(0.2) and row["attack"]["steps"] == 2
    assert "| student | 0.2 | 2 step(s) |" in done.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO)
    assert again.returncode != 0 and "--force" in again.stderr and json.loads(out.read_text()) == [row]

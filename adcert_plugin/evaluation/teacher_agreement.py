"""Is the teacher right where the student is trained? A diagnostic for adversarial distillation.

Adversarial distillation (``ad-cert``, ``cc-dist``) asks the student to match the teacher at
x_adv, the student's own training attack point. That target is only useful where the teacher
labels x_adv correctly. A distilled student's attack points can transfer to its teacher (the
two are trained to agree), and a training ε above the teacher's robust radius makes such points
common. Then the distillation term pulls the student towards the teacher's wrong class.

``teacher_at_attack_points`` attacks the student exactly as training does (same box, same PGD
settings) and reports, on those points: the student's accuracy, the teacher's accuracy, the
teacher's mean probability of the true class, and how often the two predict the same class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..attacks import AttackConfig, pgd_attack
from ..bounds import InputBox


@dataclass(frozen=True)
class TeacherAgreement:
    """Fractions in [0, 1] over the ``n`` samples attacked."""

    n: int
    student_accuracy: float
    teacher_accuracy: float
    teacher_true_class_probability: float  # mean of p_T(y | x_adv)
    agreement: float  # argmax p_T(x_adv) == argmax p_S(x_adv)


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        return model(x).softmax(dim=1)
    finally:
        model.train(was_training)


def teacher_at_attack_points(
    teacher: nn.Module,
    student: nn.Module,
    box: InputBox,
    y: torch.Tensor,
    attack: AttackConfig,
    generator: torch.Generator | None = None,
) -> TeacherAgreement:
    """Attack ``student`` in ``box`` with ``attack`` and compare both networks at the points found."""
    if len(y) == 0:
        raise ValueError("no samples to attack; pass at least one image")
    x_adv = pgd_attack(student, box, y, attack, generator=generator)
    p_student, p_teacher = _predict(student, x_adv), _predict(teacher, x_adv)
    student_pred, teacher_pred = p_student.argmax(dim=1), p_teacher.argmax(dim=1)
    return TeacherAgreement(
        n=len(y),
        student_accuracy=(student_pred == y).float().mean().item(),
        teacher_accuracy=(teacher_pred == y).float().mean().item(),
        teacher_true_class_probability=p_teacher.gather(1, y[:, None]).mean().item(),
        agreement=(student_pred == teacher_pred).float().mean().item(),
    )

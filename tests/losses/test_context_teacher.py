"""``LossContext.teacher_logits`` runs the teacher BN-folded: the same logits as ``Teacher.logits``.

Both the folded path (teacher and batch share device and dtype) and the fallback (they do not)
are checked, to a float tolerance: folding changes the rounding, not the function.
"""

from __future__ import annotations

import torch
from conftest import tiny_net

from adcert_plugin.data import DataSpec
from adcert_plugin.losses.context import LossContext
from adcert_plugin.losses.teacher import Teacher
from adcert_plugin.models import create_model

SPEC = DataSpec("mnist", (1, 8, 8), 4, (0.3,), (0.4,))


def _context(teacher: Teacher, batch) -> LossContext:
    x, y = batch
    return LossContext(tiny_net("cnn"), None, x, y, 0.1, SPEC, teacher=teacher)


def _trained_bn_teacher(dtype=torch.float32) -> Teacher:
    model = create_model("cnn7", (1, 8, 8), 4, width=64, linear_size=16)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # non-trivial running statistics
            model(torch.randn(16, 1, 8, 8) * 2 + 0.5)
    return Teacher(model.to(dtype))


def test_folded_teacher_logits_match_teacher(batch):
    teacher = _trained_bn_teacher()
    ctx = _context(teacher, batch)
    got = ctx.teacher_logits("clean")
    torch.testing.assert_close(got, teacher.logits(ctx.x_norm), rtol=1e-4, atol=1e-5)
    assert not got.requires_grad and not teacher.model.training
    assert ctx.teacher_logits("clean") is got  # memoised


def test_teacher_of_another_dtype_takes_the_plain_path(batch):
    teacher = _trained_bn_teacher(torch.float64)
    ctx = _context(teacher, batch)
    got = ctx.teacher_logits(ctx.x_norm)
    torch.testing.assert_close(got, teacher.logits(ctx.x_norm), rtol=0, atol=0)  # the same call

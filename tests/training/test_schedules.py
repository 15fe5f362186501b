"""Schedules: the SmoothedScheduler eps shape, regulariser weight, κ and learning rate."""

from __future__ import annotations

import itertools

import pytest
import torch

from adcert_plugin.training import OptimConfig, ScheduleConfig, schedules as S


def _reference_eps(
    step: int, epoch_length: int, start: int, length: int, max_eps: float, mid: float = 0.25, beta: float = 4.0
) -> float:
    """auto_LiRPA 0.3 ``SmoothedScheduler.step_batch`` transcribed (eps of 0-based batch ``step``)."""
    init_step = (start - 1) * epoch_length
    final_step = (start + length - 1) * epoch_length
    mid_step = int((final_step - init_step) * mid) + init_step
    t = (mid_step - init_step) ** (beta - 1.0)
    alpha = max_eps / ((final_step - mid_step) * beta * t + (mid_step - init_step) * t)
    mid_value = alpha * (mid_step - init_step) ** beta
    is_ramp = float(step > init_step)
    is_linear = float(step >= mid_step)
    exp_value = alpha * float(step - init_step) ** beta
    linear_value = min(mid_value + (max_eps - mid_value) * (step - mid_step) / (final_step - mid_step), max_eps)
    return is_ramp * ((1.0 - is_linear) * exp_value + is_linear * linear_value)


@pytest.mark.parametrize("start,length,steps", [(1, 20, 7), (2, 80, 3), (3, 5, 11), (2, 1, 40)])
def test_eps_at_matches_smoothed_scheduler(start, length, steps):
    cfg = ScheduleConfig(epochs=start + length + 2, eps=0.3, eps_start_epoch=start, eps_length_epochs=length)
    for step in range((start + length + 1) * steps):
        assert S.eps_at(step, steps, cfg) == pytest.approx(_reference_eps(step, steps, start, length, 0.3), abs=1e-12)


def test_eps_shape_zero_before_start_max_at_end_monotone():
    cfg = ScheduleConfig(eps=0.1, eps_start_epoch=2, eps_length_epochs=4)
    steps = 10
    values = [S.eps_at(s, steps, cfg) for s in range(80)]
    assert all(v == 0.0 for v in values[:11])  # epoch 1 and the first batch of epoch 2 are natural
    assert values[11] > 0.0
    assert values[50] == pytest.approx(0.1) and all(v == pytest.approx(0.1) for v in values[50:])
    assert all(b >= a for a, b in itertools.pairwise(values))


def test_eps_continuity_and_slope_at_mid():
    cfg = ScheduleConfig(eps=1.0, eps_start_epoch=1, eps_length_epochs=8)
    steps = 100
    init_step, mid_step, final_step = S.ramp_steps(steps, cfg)
    assert (init_step, mid_step, final_step) == (0, 200, 800)
    left = S.eps_at(mid_step - 1, steps, cfg)
    at = S.eps_at(mid_step, steps, cfg)
    right = S.eps_at(mid_step + 1, steps, cfg)
    assert at - left == pytest.approx(right - at, rel=0.02)  # slope continuous
    assert right - at == pytest.approx((1.0 - at) / (final_step - mid_step))  # then linear to eps_max
    assert S.eps_at(final_step, steps, cfg) == 1.0


def test_zero_length_ramp_is_a_step():
    cfg = ScheduleConfig(eps=0.2, eps_start_epoch=2, eps_length_epochs=0)
    assert S.eps_at(4, 5, cfg) == 0.0 and S.eps_at(5, 5, cfg) == 0.2 and S.eps_at(6, 5, cfg) == 0.2


def test_train_eps_multiplier_and_reg_weight():
    cfg = ScheduleConfig(eps=0.1, train_eps_mul=2.0, eps_start_epoch=1, eps_length_epochs=2, reg_lambda=0.5)
    assert S.train_eps_at(1000, 10, cfg) == pytest.approx(0.2)
    assert S.reg_weight_at(0, 10, cfg) == 0.5  # natural batch: full weight
    mid = S.reg_weight_at(10, 10, cfg)
    assert mid == pytest.approx(0.5 * (1 - S.eps_at(10, 10, cfg) / 0.1))
    assert S.reg_weight_at(20, 10, cfg) == 0.0  # ramp over: off


def test_kappa_goes_from_one_to_zero_along_the_ramp():
    cfg = ScheduleConfig(eps_start_epoch=2, eps_length_epochs=2)
    assert S.kappa_at(0, 10, cfg) == 1.0 and S.kappa_at(10, 10, cfg) == 1.0
    assert S.kappa_at(20, 10, cfg) == pytest.approx(0.5)
    assert S.kappa_at(30, 10, cfg) == 0.0 and S.kappa_at(99, 10, cfg) == 0.0


def test_lr_at_matches_multistep_lr():
    cfg = OptimConfig(lr=1e-3, milestones=(2, 4), gamma=0.2)
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg.milestones), cfg.gamma)
    for epoch in range(1, 7):
        assert S.lr_at(epoch, cfg) == pytest.approx(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert S.lr_at(3, cfg) == pytest.approx(2e-4) and S.lr_at(5, cfg) == pytest.approx(4e-5)

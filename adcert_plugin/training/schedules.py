"""Training schedules as pure functions of the global batch index (methods.md B.2.4, B.2.5).

``step`` is the 0-based index of a batch over the whole run (epoch e, batch i →
``(e − 1)·steps_per_epoch + i``), exactly the counter auto_LiRPA's ``SmoothedScheduler``
keeps. With ``start`` = ``eps_start_epoch`` and ``length`` = ``eps_length_epochs``:

    init_step  = (start − 1)·E,   final_step = (start + length − 1)·E,
    mid_step   = init_step + int(mid·(final_step − init_step)),

eps is 0 up to and including ``init_step``, α·(step − init_step)^β up to ``mid_step`` and then
linear to ε_max at ``final_step`` (constant after); α makes the slope continuous at ``mid_step``.
A ramp of length 0 gives the full eps from the first batch of ``eps_start_epoch`` on.
"""

from __future__ import annotations

from .config import OptimConfig, RecipeConfig, ScheduleConfig


def ramp_steps(steps_per_epoch: int, cfg: ScheduleConfig) -> tuple[int, int, int]:
    """(init_step, mid_step, final_step) of the eps ramp."""
    init_step = (cfg.eps_start_epoch - 1) * steps_per_epoch
    final_step = (cfg.eps_start_epoch + cfg.eps_length_epochs - 1) * steps_per_epoch
    mid_step = int((final_step - init_step) * cfg.mid) + init_step
    return init_step, mid_step, final_step


def ramp_fraction(step: int, steps_per_epoch: int, cfg: ScheduleConfig) -> float:
    """ε_t / ε_max in [0, 1] for batch ``step`` (the SmoothedScheduler shape with ε_max = 1)."""
    init_step, mid_step, final_step = ramp_steps(steps_per_epoch, cfg)
    if final_step <= init_step:  # no ramp: full eps from the first batch of eps_start_epoch
        return 1.0 if step >= init_step else 0.0
    if step <= init_step:
        return 0.0
    if step >= final_step:
        return 1.0
    beta = cfg.beta
    if mid_step > init_step:
        t = (mid_step - init_step) ** (beta - 1.0)
        alpha = 1.0 / ((final_step - mid_step) * beta * t + (mid_step - init_step) * t)
        mid_value = alpha * (mid_step - init_step) ** beta
    else:
        alpha, mid_value = 0.0, 0.0
    if step < mid_step:
        return alpha * float(step - init_step) ** beta
    return min(mid_value + (1.0 - mid_value) * (step - mid_step) / (final_step - mid_step), 1.0)


def eps_at(step: int, steps_per_epoch: int, cfg: ScheduleConfig) -> float:
    """Scheduled eps (pixel space) at batch ``step``, ramping to the target ``cfg.eps``."""
    return cfg.eps * ramp_fraction(step, steps_per_epoch, cfg)


def train_eps_at(step: int, steps_per_epoch: int, cfg: ScheduleConfig) -> float:
    """The eps the loss trains with: the scheduled eps × ``train_eps_mul``."""
    return eps_at(step, steps_per_epoch, cfg) * cfg.train_eps_mul


def reg_weight_at(step: int, steps_per_epoch: int, cfg: ScheduleConfig) -> float:
    """Warm-up regulariser weight λ·(1 − ε_t/ε_max); 0 once the ramp has ended (B.2.2)."""
    return cfg.reg_lambda * (1.0 - ramp_fraction(step, steps_per_epoch, cfg))


def kappa_at(step: int, steps_per_epoch: int, cfg: ScheduleConfig) -> float:
    """CROWN-IBP κ: 1 up to the ramp start, linear to 0 at the ramp end (Zhang et al. 2020)."""
    init_step, _, final_step = ramp_steps(steps_per_epoch, cfg)
    if final_step <= init_step:
        return 0.0 if step >= init_step else 1.0
    if step <= init_step:
        return 1.0
    if step >= final_step:
        return 0.0
    return 1.0 - (step - init_step) / (final_step - init_step)


def lr_at(epoch: int, cfg: OptimConfig) -> float:
    """Learning rate during 1-based ``epoch``: ×gamma after each completed milestone epoch."""
    return cfg.lr * cfg.gamma ** sum(1 for m in cfg.milestones if m < epoch)


def is_natural(eps: float) -> bool:
    """A batch with eps = 0 is natural: clean CE plus the regulariser (bounds at ``MIN_EPS_REG``)."""
    return eps < 1e-50


MIN_EPS_REG = 1e-6  # eps of the bounds the regulariser uses on natural batches (Shi et al.)


def robust_weight_at(step: int, steps_per_epoch: int, cfg: RecipeConfig) -> float:
    """w of (1 − w)·CE + w·L_rob at batch ``step``: constant, or linear over ``robust_weight_epochs``
    (CTBench's linear Scheduler: the start value up to the first epoch's first batch, the end value
    from the last epoch's end on)."""
    if cfg.robust_weight_start is None:
        return cfg.robust_weight
    first, last = cfg.robust_weight_epochs
    begin, end = (first - 1) * steps_per_epoch, last * steps_per_epoch
    fraction = min(max((step - begin) / max(end - begin, 1), 0.0), 1.0)
    return cfg.robust_weight_start + fraction * (cfg.robust_weight - cfg.robust_weight_start)

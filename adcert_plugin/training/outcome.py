"""What a run reports: ``RunResult`` (its summary, described in words), which epoch ``best.pt``
keeps, how far the eps ramp got, and why a run that diverged most likely did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .config import ScheduleConfig

HUGE_WEIGHT = 1e4  # |w| no trained network here comes near; beyond it, the steps were too large


@dataclass(frozen=True)
class RunResult:
    """What ``train`` returns: the run directory and the contents of its summary.json."""

    run_dir: Path
    summary: dict
    is_main: bool = True  # False on torchrun ranks other than 0 (they write nothing)

    def describe(self) -> str:
        s, best = self.summary, self.summary.get("best", {})
        pct = lambda v: "n/a" if v is None else f"{100 * v:.2f}%"
        by = best.get("criterion", "ibp_cert_acc")
        split = s.get("selected_on", "test")
        lines = [
            f"run: {self.run_dir}",
            f"  {s['loss']} on {s['dataset']}, eval eps {s['eps']} (train eps reached "
            f"{s.get('eps_train_reached', 'n/a')}), {s['epochs']} epochs, {s['train_time_s']:.1f} s",
            f"  final, at eval eps on the first {s['n_test']} {split} images (PGD-{s.get('eval_pgd_steps', '?')}): "
            f"clean {pct(s['clean_acc'])}, PGD {pct(s['pgd_acc'])}, IBP-certified {pct(s['ibp_cert_acc'])}",
            f"  best epoch {best.get('epoch')} by {CRITERION_NAMES.get(by, by)} (best.pt), on {split} images: "
            f"{CRITERION_NAMES.get(by, by)} {pct(best.get(by))}, clean {pct(best.get('clean_acc'))}",
        ]
        if split == "test":
            lines.append(
                "  note: best.pt was picked on test images, so its test accuracy is optimistic: report "
                "model.pt (the final epoch), or hold out data.validation_size images to select on"
            )
        lines += [f"  warning: {w}" for w in s.get("warnings", [])]
        return "\n".join(lines)


def selected_on(cfg) -> str:
    """Which images the per-epoch check (and so best.pt) uses: a validation holdout, or test images."""
    return "validation" if cfg.data.validation_size else "test"


CRITERION_NAMES = {"ibp_cert_acc": "IBP-certified", "pgd_acc": "PGD", "clean_acc": "clean"}


def best_criterion(needs) -> str:
    """The per-epoch metric ``best.pt`` is chosen by: what the loss trains for.

    A certified loss (it needs bounds) by IBP-certified accuracy; an adversarial one
    (pgd, trades: attack, no bounds) by PGD accuracy, since its IBP-certified accuracy is
    about 0 in every epoch; anything else by clean accuracy. Ties go to clean accuracy.
    """
    if "bounds" in needs:
        return "ibp_cert_acc"
    return "pgd_acc" if "attack" in needs else "clean_acc"


def ramp_reached(final: dict, sched: ScheduleConfig) -> tuple[float | None, list[str]]:
    """The eps the schedule reached (target scale, before ``train_eps_mul``) at the last step,
    and a warning when the run stopped before the last epoch of its ramp."""
    if "eps_train" not in final:
        return None, []
    reached = float(final["eps_train"]) / sched.train_eps_mul
    if final["epoch"] >= sched.ramp_end_epoch:  # the ramp's last step is the next epoch's first: done
        return reached, []
    message = (
        f"the run stopped at epoch {final['epoch']}, before its eps ramp ends (epoch "
        f"{sched.ramp_end_epoch}): it trained up to eps {reached:.4g} of the target {sched.eps:g} "
        f"(train eps {final['eps_train']:.4g}); train for at least {sched.ramp_end_epoch} epochs "
        "(--epochs, then --resume) or shorten schedule.eps_length_epochs"
    )
    return reached, [message]


def divergence_cause(updates: int, params, lr: float) -> str:
    """What most likely made the loss non-finite (eps is checked finite and at most 1 beforehand).

    Before any update the learning rate cannot be the cause; weights that are non-finite or
    huge mean the updates were too large; ordinary weights mean the loss itself overflowed.
    """
    if updates == 0:
        return (
            "no update was made yet, so the learning rate is not the cause: check the loss parameters "
            "(loss.params), the data and schedule.eps"
        )
    largest = max((float(p.detach().abs().max()) for p in params if p.numel()), default=0.0)
    if not math.isfinite(largest) or largest > HUGE_WEIGHT:
        return (
            f"the weights blew up (largest |w| = {largest:.3g}), so the updates were too large: lower "
            f"optim.lr (now {lr:g}) or optim.grad_clip"
        )
    return (
        f"the weights are ordinary (largest |w| = {largest:.3g}), so the loss itself overflowed on this "
        "batch: check the loss parameters (loss.params) and the data; a longer eps ramp "
        "(schedule.eps_length_epochs) may help"
    )

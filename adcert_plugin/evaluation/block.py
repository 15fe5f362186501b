"""One block of the cascade: the clean prediction, the attack and the bound methods on a batch.

The order, by default: PGD on every correctly classified sample, then the bounds on those it did
not break, so every certified sample also faces the attack (a bound above an attack's margin is a
soundness error). With ``attack_certified=False`` (``--bounds-first``, the papers' order in
CTBench's and abCROWN's certification) the bounds run first on every correctly classified sample
and the attack only on those no bound certifies; a certified sample counts as PGD-robust (its
bound says no point of the box breaks it) and its ``attack_margin`` is the clean one. Every
bound is still checked against the clean point, and the attacked samples' bounds against the
attack's point. On a strong network most samples are certified, so this skips most of the attack.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from ..attacks import AttackConfig, attack_objective
from ..bounds import InputBox, margins
from ..data import DataSpec

_TOL = 1e-4  # bound ≤ margin + _TOL·(1 + |margin|): float32 slack between two computations


@dataclasses.dataclass
class Context:
    model: torch.nn.Module
    bounded: Any  # BoundedNet, or the native IBP path
    spec: DataSpec
    eps: float
    methods: tuple[str, ...]
    attack: AttackConfig
    seed: int
    device: torch.device
    attack_certified: bool = True  # False: bounds first, the attack only on what they leave open


@dataclasses.dataclass
class _Block:
    """What one block's stages share: the box, labels, margins found so far, per-sample records."""

    ctx: Context
    box: InputBox
    y: torch.Tensor
    indices: list[int]
    clean_margin: torch.Tensor
    attack_margin: torch.Tensor
    stage: dict[int, dict]
    errors: dict[int, list[dict]]
    attacked: torch.Tensor  # bool [B]: the attack ran on this sample
    checks: list = dataclasses.field(default_factory=list)  # (lower, todo, method): checked at the end


def evaluate_block(ctx: Context, x: torch.Tensor, y: torch.Tensor, indices: list[int]) -> list[dict]:
    """Clean, PGD and the bound cascade for one block of samples; returns one row per sample."""
    x, y = x.to(ctx.device), y.to(ctx.device)
    box = InputBox.from_pixels(x, ctx.eps, ctx.spec.mean, ctx.spec.std)
    size = len(indices)
    stage: dict[int, dict] = {i: {} for i in range(size)}
    tic = _now(ctx.device)
    with torch.no_grad():
        clean_logits = ctx.model(box.x_norm)
    clean_margin = margins(clean_logits, y)  # [B, K-1]
    prediction = clean_logits.argmax(1)
    correct = prediction == y
    _share(stage, range(size), "clean", _now(ctx.device) - tic)
    b = _Block(
        ctx,
        box,
        y,
        indices,
        clean_margin,
        clean_margin.clone(),  # misclassified samples: the clean point is their witness
        stage,
        {i: [] for i in range(size)},
        torch.zeros(size, dtype=torch.bool, device=y.device),
    )
    if ctx.attack_certified:
        _attack(b, correct)
        certified_by, lower_min = _bound(b, correct & (b.attack_margin.amin(1) > 0))
    else:
        certified_by, lower_min = _bound(b, correct)
        _attack(b, correct & torch.tensor([c is None for c in certified_by], device=y.device))
    worst = b.attack_margin.amin(1)
    robust = correct & (worst > 0)
    return _rows(b, prediction, correct, robust, worst, certified_by, lower_min)


def _attack(b: _Block, which: torch.Tensor) -> None:
    """PGD on the samples ``which``; their attack margins and the box check of their points."""
    attacked = which.nonzero().flatten()
    if not len(attacked):
        return
    tic = _now(b.ctx.device)
    sub = _take(b.box, attacked)
    seeds = [_sample_seed(b.ctx.seed, b.indices[int(i)]) for i in attacked]
    x_adv, adv_margin = pgd_margins(b.ctx.model, sub, b.y[attacked], b.ctx.attack, seeds)
    _share(b.stage, attacked.tolist(), "pgd", _now(b.ctx.device) - tic)
    b.attack_margin[attacked] = adv_margin
    b.attacked[attacked] = True
    for j in (~sub.contains(x_adv)).nonzero().flatten().tolist():
        b.errors[int(attacked[j])].append(
            {"kind": "adversarial-outside-box", "method": None, "detail": "the attack's point lies outside the eps box"}
        )


def _bound(b: _Block, undecided: torch.Tensor) -> tuple[list[str | None], list[dict]]:
    """The bound methods in cascade order on ``undecided``; (certifying method, lower bound per method).

    Every method's bound is sound, so on each margin the best of them so far is too: a sample is
    certified once the elementwise best proves every margin (as the reference verification's max of
    IBP and CROWN; CROWN alone is looser than IBP on IBP-trained networks). Each bound is checked
    against the clean point now, and against the attack's point once the sample has been attacked.
    """
    ctx, size = b.ctx, len(b.indices)
    undecided = undecided.clone()
    certified_by: list[str | None] = [None] * size
    lower_min: list[dict] = [{} for _ in range(size)]
    best = torch.full_like(b.clean_margin, -float("inf"))
    for method in ctx.methods:
        todo = undecided.nonzero().flatten()
        if not len(todo):
            break
        tic = _now(ctx.device)
        with torch.set_grad_enabled(method == "alpha-CROWN"):
            lower = ctx.bounded.margin_lower(_take(b.box, todo), b.y[todo], method).detach()  # [b, K-1]
        _share(b.stage, todo.tolist(), method, _now(ctx.device) - tic)
        b.checks.append((lower, todo, method))
        best[todo] = torch.maximum(best[todo], lower.to(best.dtype))
        ok = best[todo].amin(1) > 0
        for i, value, good in zip(todo.tolist(), lower.amin(1).tolist(), ok.tolist()):
            lower_min[i][method] = value
            if good:
                certified_by[i] = method
        undecided[todo[ok]] = False
    return certified_by, lower_min


def _rows(b: _Block, prediction, correct, robust, worst, certified_by, lower_min) -> list[dict]:
    for lower, todo, method in b.checks:  # after the attack: its points are known now
        _check_bounds(lower, b.clean_margin[todo], b.attack_margin[todo], b.attacked[todo], todo, method, b.errors)
    rows = []
    y, prediction, correct, robust, worst = (t.tolist() for t in (b.y, prediction, correct, robust, worst))
    for i, index in enumerate(b.indices):
        status = (
            "misclassified"
            if not correct[i]
            else "pgd-broken"
            if not robust[i]
            else "certified"
            if certified_by[i]
            else "unknown"
        )
        if certified_by[i] and not robust[i]:  # cannot happen by construction; checked, not assumed
            b.errors[i].append(
                {
                    "kind": "certified-but-broken",
                    "method": certified_by[i],
                    "detail": f"certified by {certified_by[i]} but the attack broke it",
                }
            )
        rows.append(
            {
                "index": int(index),
                "label": y[i],
                "prediction": prediction[i],
                "clean_correct": correct[i],
                "pgd_robust": robust[i],
                "attack_margin": worst[i],
                "margin_lower": lower_min[i],
                "certified_by": certified_by[i],
                "status": status,
                "seconds": sum(b.stage[i].values()),
                "stage_seconds": b.stage[i],
                "soundness_errors": b.errors[i],
            }
        )
    return rows


def _check_bounds(lower, clean_margin, attack_margin, attacked, todo, method, errors) -> None:
    """A lower bound above an exact margin at a point of the box is unsound: record it."""
    for name, observed, rows in (("clean", clean_margin, None), ("attack", attack_margin, attacked)):
        excess = lower - observed - _TOL * (1 + observed.abs())
        above = (excess > 0).any(1) if rows is None else (excess > 0).any(1) & rows
        for j in above.nonzero().flatten().tolist():
            k = int(excess[j].argmax())
            errors[int(todo[j])].append(
                {
                    "kind": "bound-above-margin",
                    "method": method,
                    "detail": f"{method} lower bound {float(lower[j, k]):.6g} exceeds the margin "
                    f"{float(observed[j, k]):.6g} at the {name} point (margin {k})",
                }
            )


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # time finished kernels, not launches
    return time.perf_counter()


def _share(stage: dict, members: Iterable[int], name: str, seconds: float) -> None:
    members = list(members)
    for i in members:
        stage[i][name] = seconds / len(members)


def _take(box: InputBox, idx: torch.Tensor) -> InputBox:
    return InputBox(box.x_norm[idx], box.lower_norm[idx], box.upper_norm[idx])


def _sample_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0])


# -- the evaluation attack -----------------------------------------------------------------
def pgd_margins(
    model: torch.nn.Module, box: InputBox, y: torch.Tensor, cfg: AttackConfig, seeds: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """PGD with per-sample random starts; returns the lowest-margin point found and its margins.

    The steps are those of ``attacks.pgd_attack`` (uniform start in the box, ascent on the
    objective by η·half-width·sign(∇), projection onto the box, ``restarts`` starts), but each
    sample's starts come from its own generator (``seeds[i]``), so a sample's attack does not
    depend on which batch it is in, and every iterate (the clean point included) is checked:
    the kept point is the one with the lowest min_j margin, the criterion robustness is judged by.

    Returns:
        x_adv ``[B, C, H, W]`` (normalised) and its margins z_y − z_j ``[B, K-1]``.
    """
    lower, upper = box.lower_norm, box.upper_norm
    step = cfg.step_size * (upper - lower) / 2
    best_x = box.x_norm.clone()
    with torch.no_grad():
        best_margin = margins(model(best_x), y)
    generators = [torch.Generator().manual_seed(s) for s in seeds]

    def keep(x, margin):
        nonlocal best_x, best_margin
        better = margin.amin(1) < best_margin.amin(1)
        best_x = torch.where(better.view(-1, *[1] * (x.dim() - 1)), x, best_x)
        best_margin = torch.where(better[:, None], margin, best_margin)

    for _ in range(cfg.restarts):
        noise = torch.stack([torch.rand(lower.shape[1:], generator=g) for g in generators]).to(lower)
        x = lower + noise * (upper - lower)
        for _ in range(cfg.steps):
            x.requires_grad_(True)
            with torch.enable_grad():
                logits = model(x)
                (grad,) = torch.autograd.grad(attack_objective(logits, y, cfg.objective).sum(), x)
            keep(x.detach(), margins(logits.detach(), y))
            x = torch.maximum(torch.minimum(x.detach() + step * grad.sign(), upper), lower)
        with torch.no_grad():
            keep(x, margins(model(x), y))
    return best_x, best_margin

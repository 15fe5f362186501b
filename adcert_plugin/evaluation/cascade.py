"""Certified-accuracy evaluation (methods.md B.4.3): clean → PGD → incomplete bounds, cascaded.

For every selected test sample: the clean prediction; PGD (40 steps, η = 0.035 of the box
half-width by default) on every correctly classified sample; then the selected bound methods
in cascade order IBP → CROWN-IBP → CROWN → alpha-CROWN, each on the batch of samples that are
still undecided (a misclassified, PGD-broken or already certified sample is not bounded again).
With ``complete`` set, the samples still undecided after the bounds go to a complete verifier
(complete.py; the verifiers come from vnncomp through the registry in verifiers.py), and the
report adds *certified (complete)*: bound-certified + verifier ``unsat``, timeouts not certified.

Soundness check, always on and on the path every sample takes: each attack's point must lie in
the box, every computed lower bound must lie below the exact margins at the clean and at the
adversarial point, and a certified sample must not be PGD-broken. Violations go into the report
(``soundness_errors``) and ``evaluate`` raises :class:`SoundnessError` after writing it.

Determinism: each sample's random PGD starts come from a generator seeded by (seed, index), and
samples are processed in fixed blocks of the selection, so a rerun, or a resume from a partial
``samples.jsonl`` (a partly written block is recomputed whole), gives identical numbers.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..attacks import AttackConfig, attack_objective
from ..bounds import InputBox, margins, wrap_model
from ..data import DataSpec, get_data_spec
from ..errors import ConfigError, OutputError
from ..io import FolderLock, read_json, sha256_file, write_json
from ..training import pick_device
from . import report as R
from .complete import CompleteConfig, CompleteInputs, run_complete, shard_dir_name
from .inputs import (
    _check_data,
    _check_fit,
    _check_numbers,
    _load,
    _load_eval_split,
    _ranges,
    check_eps,
    check_range,
    resolve_methods,
    select_indices,
    training_eps,
)
from .report import EvalReport
from .verifiers import create_verifier

log = logging.getLogger(__name__)


DEFAULT_ATTACK = AttackConfig(steps=40, step_size=0.035, restarts=1, objective="ce")
RESUME_KEYS = ("checkpoint_sha256", "dataset", "eps", "methods", "indices", "seed", "attack", "arch", "split")
_TOL = 1e-4  # bound ≤ margin + _TOL·(1 + |margin|): float32 slack between two computations


def evaluate(
    checkpoint: str | Path,
    dataset: str | None = None,
    data_dir: str | Path | None = None,
    eps: float | None = None,
    methods: Sequence[str] | str = ("IBP", "CROWN"),
    start: int | None = None,
    end: int | None = None,
    n: int | None = None,
    seed: int = 0,
    attack: AttackConfig = DEFAULT_ATTACK,
    batch_size: int = 256,
    out_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    arch: str | None = None,
    device: str | None = None,
    progress: bool | None = None,
    complete: CompleteConfig | None = None,
    split: str = "test",
) -> EvalReport:
    """Evaluate a checkpoint: standard, PGD and certified accuracy per method, per-sample rows.

    Args:
        checkpoint: adcert checkpoint (or a plain state_dict together with ``arch``).
        dataset: data-set name; default the checkpoint's.
        data_dir: data root (else ``$ADCERT_DATA``, else ``./data``).
        eps: pixel-space radius; default the checkpoint's training eps.
        methods: bound methods (any order, a list or a comma string); run in cascade order.
        start, end: test-index range ``[start, end)``; default the whole split.
        n, seed: evaluate a seeded random subset of ``n`` samples of the range; ``seed`` also
            seeds the attack's random starts.
        attack: PGD settings (``step_size`` relative to the box half-width; objective ce or margin).
        batch_size: samples per block.
        out_dir: report folder; default ``<checkpoint folder>/eval-<eps>``.
        resume: continue from the rows already in ``out_dir/samples.jsonl``.
        overwrite: replace an existing report in ``out_dir``.
        arch: model name for a checkpoint that is a plain state_dict (needs ``dataset``).
        device: torch device; default CUDA when available.
        progress: show a progress bar; default only on a TTY outside CI.
        complete: send the samples the bounds leave undecided to this complete verifier (see
            complete.py); with a shard, the report goes to ``out_dir/shard-K-of-N``.
        split: ``test``, or ``validation``: the training images the checkpoint's run held out
            (``data.validation_size``), for model selection; indices then count within that holdout.

    Returns:
        The report (also written to ``out_dir``: ``samples.jsonl``, ``summary.json``, ``config.json``).

    Raises:
        ConfigError, CheckpointError, DataError: bad input (one-line messages).
        RegistryError, VerifierError: an unknown or unusable complete verifier.
        SoundnessError: a soundness violation; raised after the report is written.
    """
    methods = resolve_methods(methods)
    _check_numbers(eps, batch_size, attack)
    check_range(start, end)
    device = pick_device(device)
    verifier = create_verifier(complete.verifier) if complete else None  # a bad name fails before any work
    check = getattr(verifier, "check", None)  # an optional up-front check of the verifier's options
    if complete is not None and callable(check):
        check(dict(complete.options))
    checkpoint = Path(checkpoint)
    model, record = _load(checkpoint, arch, dataset)
    trained_on = record.get("dataset")
    dataset = dataset or trained_on
    if not dataset:
        raise ConfigError(f"{checkpoint} does not name its data set; pass --dataset")
    spec = get_data_spec(dataset)
    _check_fit(record, spec, checkpoint)
    if trained_on and dataset != trained_on:  # same shape and classes (Fashion-MNIST vs MNIST): still wrong
        raise ConfigError(
            f"{checkpoint} was trained on {trained_on}, not {dataset}; drop --dataset "
            "(the checkpoint's is used) or pass a model trained on it"
        )
    eps = training_eps(record, checkpoint) if eps is None else float(eps)
    if not check_eps(eps):
        raise ConfigError(f"eps={eps} from the checkpoint's config: must be in (0, 1] (pixel space); pass --eps")
    x_all, y_all = _load_eval_split(dataset, split, data_dir, record, checkpoint)
    _check_data(x_all, y_all, record, dataset)
    indices = select_indices(len(y_all), start, end, n, seed)
    out_arg = out_dir
    out_dir = Path(out_dir) if out_dir is not None else checkpoint.parent / f"eval-{eps:g}"
    if complete is not None and complete.shard is not None:
        out_dir = out_dir / shard_dir_name(complete.shard)
    run_config = {
        "checkpoint": str(checkpoint.resolve()),
        "checkpoint_sha256": sha256_file(checkpoint),
        "dataset": dataset,
        "eps": eps,
        "methods": list(methods),
        "start": start,
        "end": end,
        "n": n,
        "indices": _ranges(indices),
        "seed": seed,
        "attack": dataclasses.asdict(attack),
        "arch": record["arch"]["name"],
        "batch_size": batch_size,
        "complete": complete.record() if complete else None,
    }
    if split != "test":  # absent for test, so reports written before splits existed still resume
        run_config["split"] = split
    lock = _lock_report_dir(out_dir, defaulted=out_arg is None)
    try:
        done = R.prepare_out_dir(out_dir, run_config, RESUME_KEYS, resume, overwrite)
        earlier_wall, earlier_complete_wall = _earlier_walls(out_dir, complete)

        model = model.to(device).eval().requires_grad_(False)
        context = _Context(
            model, wrap_model(model, tuple(record["arch"]["in_shape"])), spec, eps, methods, attack, seed, device
        )
        samples_path = out_dir / R.SAMPLES_FILE
        log.info(
            "evaluating %d samples of %s at eps=%g with %s (%d already done) -> %s",
            len(indices),
            dataset,
            eps,
            ", ".join(methods),
            len(done),
            out_dir,
        )
        wall = time.perf_counter()
        blocks = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
        with R.Progress(len(indices), len(done), progress) as bar:
            for block in blocks:
                missing = [i for i in block if i not in done]
                if missing:
                    rows = _evaluate_block(context, x_all[block], y_all[block], block)
                    R.append_samples(samples_path, [r for r in rows if r["index"] not in done])
                    done.update((r["index"], r) for r in rows if r["index"] not in done)
                bar.update(len(missing))
        wall = earlier_wall + time.perf_counter() - wall

        rows = [{k: v for k, v in done[i].items() if k != "complete"} for i in indices]
        meta = dict(R.summary_meta(run_config), wall_seconds=wall, device=str(device), split=split)
        if complete is not None:
            network = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{dataset}_{record['arch']['name']}")
            data = CompleteInputs(
                model,
                x_all[indices],
                y_all[indices],
                indices,
                eps,
                tuple(spec.mean),
                tuple(spec.std),
                run_config["checkpoint_sha256"],
                network,
            )
            assert verifier is not None  # created above from complete.verifier
            rows, seconds = run_complete(rows, data, complete, verifier, out_dir)
            meta["complete"] = dict(complete.record(), wall_seconds=earlier_complete_wall + seconds)
        R.write_samples(samples_path, rows)  # canonical order, whatever the resume history
        summary = R.summarize(rows, methods, meta)
        write_json(out_dir / R.SUMMARY_FILE, summary)
        return R.raise_on_soundness(EvalReport(out_dir, summary, rows))
    finally:
        lock.release()


def _lock_report_dir(out_dir: Path, defaulted: bool) -> FolderLock:
    """Hold the report folder for this process alone (a second writer gets a one-line error).

    The default folder lies beside the checkpoint, which may sit in a read-only shared folder:
    then the error says to pass --out-dir.
    """
    try:
        return FolderLock(out_dir, "--out-dir").acquire()
    except OutputError as err:
        if not defaulted:
            raise
        raise OutputError(
            f"cannot write the report folder {out_dir}, the default beside the checkpoint ({err}); "
            "pass --out-dir DIR to write the report somewhere writable"
        ) from err


def _earlier_walls(out_dir: Path, complete: CompleteConfig | None) -> tuple[float, float]:
    """Wall seconds a finished report in ``out_dir`` already spent (cascade, complete verifier).

    A resume adds its own time to them, so re-reading a finished report keeps the time it cost
    (the complete verifier's only when it is the same verifier and settings). A report that was
    cut short before its summary was written left no wall time: its rows' ``seconds`` still count.
    """
    path = out_dir / R.SUMMARY_FILE
    if not path.is_file():  # prepare_out_dir removed it (overwrite), or the earlier call never finished
        return 0.0, 0.0
    old = read_json(path)
    old_complete = old.get("complete") or {}
    wanted = complete.record() if complete is not None else {}
    same = bool(wanted) and all(old_complete.get(k) == wanted[k] for k in ("verifier", "timeout", "shard"))
    return float(old.get("wall_seconds") or 0.0), float(old_complete.get("wall_seconds") or 0.0) if same else 0.0


# -- one block -----------------------------------------------------------------------------
@dataclasses.dataclass
class _Context:
    model: torch.nn.Module
    bounded: Any  # BoundedNet, or the native IBP path
    spec: DataSpec
    eps: float
    methods: tuple[str, ...]
    attack: AttackConfig
    seed: int
    device: torch.device


def _evaluate_block(ctx: _Context, x: torch.Tensor, y: torch.Tensor, indices: list[int]) -> list[dict]:
    """Clean, PGD and the bound cascade for one block of samples; returns one row per sample."""
    x, y = x.to(ctx.device), y.to(ctx.device)
    box = InputBox.from_pixels(x, ctx.eps, ctx.spec.mean, ctx.spec.std)
    size = len(indices)
    stage: dict[int, dict] = {i: {} for i in range(size)}
    errors: dict[int, list[dict]] = {i: [] for i in range(size)}

    tic = _now(ctx.device)
    with torch.no_grad():
        clean_logits = ctx.model(box.x_norm)
    clean_margin = margins(clean_logits, y)  # [B, K-1]
    prediction = clean_logits.argmax(1)
    correct = prediction == y
    _share(stage, range(size), "clean", _now(ctx.device) - tic)

    attack_margin = clean_margin.clone()  # misclassified samples: the clean point is their witness
    attacked = correct.nonzero().flatten()
    if len(attacked):
        tic = _now(ctx.device)
        sub = _take(box, attacked)
        x_adv, adv_margin = pgd_margins(
            ctx.model, sub, y[attacked], ctx.attack, [_sample_seed(ctx.seed, indices[int(i)]) for i in attacked]
        )
        _share(stage, attacked.tolist(), "pgd", _now(ctx.device) - tic)
        attack_margin[attacked] = adv_margin
        for j in (~sub.contains(x_adv)).nonzero().flatten().tolist():
            errors[int(attacked[j])].append(
                {
                    "kind": "adversarial-outside-box",
                    "method": None,
                    "detail": "the attack's point lies outside the eps box",
                }
            )
    worst = attack_margin.amin(1)
    robust = correct & (worst > 0)

    undecided, certified_by = robust.clone(), list[str | None]([None] * size)
    lower_min: list[dict] = [{} for _ in range(size)]
    # every method's bound is sound, so on each margin the best of them so far is too: a sample is
    # certified once the elementwise best proves every margin (as the reference verification's max of
    # IBP and CROWN; CROWN alone is looser than IBP on IBP-trained networks)
    best = torch.full_like(clean_margin, -float("inf"))
    for method in ctx.methods:
        todo = undecided.nonzero().flatten()
        if not len(todo):
            break
        tic = _now(ctx.device)
        with torch.set_grad_enabled(method == "alpha-CROWN"):
            lower = ctx.bounded.margin_lower(_take(box, todo), y[todo], method).detach()  # [b, K-1]
        _share(stage, todo.tolist(), method, _now(ctx.device) - tic)
        _check_bounds(lower, clean_margin[todo], attack_margin[todo], todo, method, errors)
        best[todo] = torch.maximum(best[todo], lower.to(best.dtype))
        ok = best[todo].amin(1) > 0
        for i, value, good in zip(todo.tolist(), lower.amin(1).tolist(), ok.tolist()):
            lower_min[i][method] = value
            if good:
                certified_by[i] = method
        undecided[todo[ok]] = False

    rows = []
    y, prediction, correct, robust, worst = (t.tolist() for t in (y, prediction, correct, robust, worst))
    for i, index in enumerate(indices):
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
            errors[i].append(
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
                "seconds": sum(stage[i].values()),
                "stage_seconds": stage[i],
                "soundness_errors": errors[i],
            }
        )
    return rows


def _check_bounds(lower, clean_margin, attack_margin, todo, method, errors) -> None:
    """A lower bound above an exact margin at a point of the box is unsound: record it."""
    for name, observed in (("clean", clean_margin), ("attack", attack_margin)):
        excess = lower - observed - _TOL * (1 + observed.abs())
        for j in (excess > 0).any(1).nonzero().flatten().tolist():
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

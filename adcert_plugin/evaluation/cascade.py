"""Certified-accuracy evaluation (methods.md B.4.3): clean → PGD → incomplete bounds, cascaded
(one block of samples at a time: block.py; with ``attack_certified=False`` the bounds run first).

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
from collections.abc import Sequence
from pathlib import Path

from ..attacks import AttackConfig
from ..bounds import wrap_model
from ..data import get_data_spec
from ..errors import ConfigError, OutputError
from ..io import FolderLock, read_json, sha256_file, write_json
from ..training import pick_device
from . import report as R
from .block import Context, evaluate_block, pgd_margins  # noqa: F401 - pgd_margins: the package's API
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
RESUME_KEYS = (
    "checkpoint_sha256",
    "dataset",
    "eps",
    "methods",
    "indices",
    "seed",
    "attack",
    "arch",
    "split",
    "attack_certified",
)


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
    attack_certified: bool = True,
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
        attack_certified: attack every correctly classified sample before the bounds (the default:
            every bound also faces the attack); False: bound first and attack only the samples no
            bound certifies (the papers' order; much faster on a strong network; block.py).

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
    if not attack_certified:  # absent by default, so earlier reports still resume
        run_config["attack_certified"] = False
    lock = _lock_report_dir(out_dir, defaulted=out_arg is None)
    try:
        done = R.prepare_out_dir(out_dir, run_config, RESUME_KEYS, resume, overwrite)
        earlier_wall, earlier_complete_wall = _earlier_walls(out_dir, complete)

        model = model.to(device).eval().requires_grad_(False)
        context = Context(
            model,
            wrap_model(model, tuple(record["arch"]["in_shape"])),
            spec,
            eps,
            methods,
            attack,
            seed,
            device,
            attack_certified,
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
                    rows = evaluate_block(context, x_all[block], y_all[block], block)
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

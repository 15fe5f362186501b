"""The unified-setup experiment (methods.md Part A) in one call: ``run_unified(cfg, out_dir)``.

One PGD teacher, then the students ``mtl-ibp``, ``cc-ibp`` (no teacher), ``cc-dist`` (feature
distillation) and ``ad-cert`` (logit distillation), all with the SAME seed, data subset, model,
schedule, training attack, L1 and α; optionally an α sweep (extra α values, the same for every
method) that gives one standard-vs-certified curve per method; optionally extra seeds, each of
which trains the teacher and the shared-α students again, so the comparison carries a spread
(mean ± sd over seeds) instead of one draw. Every model (the teacher too) is evaluated the same
way: ``evaluate`` on one seeded test subset, one PGD, one bound cascade.

    <out_dir>/teacher/                  train run dir (+ eval/: the evaluate report)
    <out_dir>/<method>-alpha<α>/        one per student and α, same layout
    <out_dir>/seed<s>/...               teacher/ and <method>-alpha<α>/ again, per extra seed
    <out_dir>/results.json              every number, the config, machine info, wall times
    <out_dir>/results.md                the tables, the command line, the machine
    <out_dir>/plot.png                  standard (x) vs certified (y) accuracy

A rerun reuses each finished run (its ``summary.json`` exists and its config is the one asked
for) and each finished evaluation; an interrupted run continues from its ``last.pt``.
``force`` retrains and re-evaluates everything. Presets (``list_experiments``): ``cpu``,
``paper``, ``smoke``; their settings and the reasons for them are beside each registration.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import ConfigError
from ..evaluation import EvalReport, evaluate
from ..io import atomic_write_text, read_json, write_json
from ..training import RunDir, TrainConfig, config_from_dict, read_config_file, train
from ..training.strict import flatten
from .config import TEACHER_LOSS, ExperimentConfig
from .report import markdown_report, markdown_tables, plot_results

log = logging.getLogger(__name__)

_IGNORED_ON_REUSE = ("out_dir", "device", "data.data_dir", "teacher")  # may differ on a rerun


# -- running ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunRecord:
    """One trained and evaluated model of the experiment."""

    method: str
    alpha: float | None  # None for the teacher
    uses_teacher: bool
    main: bool  # the shared-α point of the main seed (the teacher counts as main)
    run_dir: str
    eval_dir: str
    standard_acc: float
    pgd_acc: float
    certified_acc: dict  # bound method -> cumulative certified accuracy
    train_time_s: float  # training loop time (summary.json: epochs incl. per-epoch checks)
    eval_time_s: float  # Σ per-sample evaluation seconds (kept across a resumed evaluation)
    reused: bool  # True when this call trained nothing for it
    seed: int = 0  # the training seed of this run


@dataclass(frozen=True)
class ExperimentResult:
    """What ``run_unified`` returns; ``results`` is the content of results.json."""

    out_dir: Path
    records: tuple[RunRecord, ...]
    results: dict

    def main(self, method: str) -> RunRecord:
        return next(r for r in self.records if r.method == method and r.main)

    def curve(self, method: str) -> list[RunRecord]:
        """The α sweep of ``method`` (main seed), ascending α."""
        seed = self.results["config"]["seed"]
        return sorted(
            (r for r in self.records if r.method == method and r.alpha is not None and r.seed == seed),
            key=lambda r: r.alpha if r.alpha is not None else 0.0,
        )

    def at_shared_alpha(self, method: str) -> list[RunRecord]:
        """``method``'s runs at the shared α (the teacher: its runs), one per seed, main seed first."""
        alpha = self.results["alpha"]
        return [r for r in self.records if r.method == method and r.alpha in (None, alpha)]

    def table(self) -> str:
        return markdown_tables(self.results)


def run_dir_name(method: str, alpha: float) -> str:
    return f"{method}-alpha{alpha:g}"


def run_unified(
    cfg: ExperimentConfig, out_dir: str | Path, force: bool = False, resume: bool = True, command: str | None = None
) -> ExperimentResult:
    """Train the teacher and every student × α, evaluate them all, write results and plot.

    Extra seeds (``cfg.extra_seeds``) each train their own teacher and the shared-α students
    under ``out_dir/seed<s>/``; the sweep runs with the main seed only.

    Args:
        cfg: the experiment (e.g. ``get_experiment("cpu")``).
        out_dir: folder for all runs and the results.
        force: retrain and re-evaluate every run, even finished ones.
        resume: continue an interrupted run from its ``last.pt`` (else restart it); finished
            runs are reused either way (unless ``force``).
        command: the command line to record (default: the example script's).

    Raises:
        ConfigError: a finished run in ``out_dir`` was trained with another config.
        AdcertError: from ``train`` / ``evaluate`` (missing data, diverged training, ...).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    records = _seed_runs(cfg, out_dir, cfg.alphas(), True, force, resume)
    for seed in cfg.extra_seeds:
        seeded = dataclasses.replace(cfg, seed=seed, extra_seeds=())
        records += _seed_runs(seeded, out_dir / f"seed{seed}", (cfg.alpha,), False, force, resume)
    calls = _calls(out_dir, force, time.perf_counter() - started, records)
    results = _results(cfg, records, calls, command)
    write_json(out_dir / "results.json", results)
    atomic_write_text(out_dir / "results.md", markdown_report(results))
    plot_results(results, out_dir / "plot.png")
    log.info("unified experiment %r done in %.1f s -> %s", cfg.name, calls[-1]["wall_time_s"], out_dir)
    return ExperimentResult(out_dir, tuple(records), results)


def _seed_runs(
    cfg: ExperimentConfig, root: Path, alphas: tuple[float, ...], main_seed: bool, force: bool, resume: bool
) -> list[RunRecord]:
    """The teacher, then every student at each of ``alphas``, all with ``cfg.seed``, under ``root``."""
    teacher_trained, teacher_rec = _train_and_evaluate(
        cfg, cfg.teacher_config(root / "teacher"), None, main_seed, force, resume, False
    )
    records = [teacher_rec]
    for alpha in alphas:
        for method in cfg.methods:
            run_dir = root / run_dir_name(method, alpha)
            train_cfg = cfg.student_config(method, alpha, run_dir, root / "teacher" / "model.pt")
            # a retrained teacher makes every distilled student stale
            stale = teacher_trained and train_cfg.teacher is not None
            main = main_seed and alpha == cfg.alpha
            records.append(_train_and_evaluate(cfg, train_cfg, alpha, main, force, resume, stale)[1])
    return records


def _train_and_evaluate(
    cfg: ExperimentConfig,
    train_cfg: TrainConfig,
    alpha: float | None,
    main: bool,
    force: bool,
    resume: bool,
    stale: bool,
) -> tuple[bool, RunRecord]:
    run = RunDir(train_cfg.out_dir)
    label = f"{train_cfg.loss.name}" + ("" if alpha is None else f" alpha={alpha:g}")
    retrain = force or stale or not run.summary.is_file()
    if not retrain:
        check_same_config(run, train_cfg)
        summary = read_json(run.summary)
        log.info("%s: reusing the finished run in %s", label, run.path)
    else:
        go_on = resume and not force and not stale and run.last.is_file()
        log.info("%s: %s in %s", label, "resuming" if go_on else "training", run.path)
        summary = train(train_cfg, resume=go_on, force=not go_on, progress=False).summary
    report = _evaluate(cfg, run, overwrite=retrain)
    return retrain, RunRecord(
        method=train_cfg.loss.name,
        alpha=alpha,
        uses_teacher=train_cfg.teacher is not None,
        main=main,
        run_dir=str(run.path),
        eval_dir=str(report.out_dir),
        standard_acc=report.standard_acc,
        pgd_acc=report.pgd_acc,
        certified_acc=dict(report.certified_acc),
        train_time_s=float(summary["train_time_s"]),
        eval_time_s=float(report.summary["seconds"]["total"]),
        reused=not retrain,
        seed=train_cfg.seed,
    )


def check_same_config(run: RunDir, wanted: TrainConfig, advice: str = "pass --force to retrain") -> None:
    """A finished run in ``run`` must have the config asked for (paths and device may differ).

    The saved config gets today's defaults for fields it predates (a run saved before ``recipe``
    existed trained with what its default is now), so an older finished run is still reused.
    """
    raw = read_config_file(run.config)
    try:
        raw = config_from_dict(raw, str(run.config)).to_dict()
    except ConfigError:
        pass  # compared as saved: the first differing field names what no longer fits
    saved = flatten(raw, keep=("loss.params", "model.kwargs"))
    now = flatten(wanted.to_dict(), keep=("loss.params", "model.kwargs"))
    changed = [k for k in sorted(set(saved) | set(now)) if k not in _IGNORED_ON_REUSE and saved.get(k) != now.get(k)]
    if changed:
        k = changed[0]
        raise ConfigError(
            f"{run.path} holds a finished run with another config ({k}: {saved.get(k)!r} → "
            f"{now.get(k)!r}); {advice}, or choose another --out-dir"
        )


def _evaluate(cfg: ExperimentConfig, run: RunDir, overwrite: bool) -> EvalReport:
    ev = cfg.evaluation
    kwargs: dict[str, Any] = dict(
        dataset=cfg.data.dataset,
        data_dir=cfg.data.data_dir,
        eps=cfg.schedule.eps,
        methods=ev.methods,
        n=ev.n,
        seed=ev.seed,
        attack=ev.attack,
        batch_size=ev.batch_size,
        out_dir=run.path / "eval",
        device=None if cfg.device == "auto" else cfg.device,
        progress=False,
    )
    if not overwrite:
        try:  # a finished report is re-read (no bounds recomputed), a partial one completed
            return evaluate(run.model, resume=True, **kwargs)
        except ConfigError as err:
            log.info("%s: re-evaluating (%s)", run.path / "eval", err)
    return evaluate(run.model, overwrite=True, **kwargs)


# -- results ---------------------------------------------------------------------------------
def _cpu_model() -> str | None:
    """The CPU's model name (Linux: /proc/cpuinfo), which platform.processor() often leaves empty."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        return None


def machine_info() -> dict:
    """Where the experiment ran: platform, CPU count, threads, versions, accelerator."""
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "adcert": __version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_model": _cpu_model(),
    }
    try:
        from importlib.metadata import version

        info["auto_LiRPA"] = version("auto_LiRPA")
    except Exception:  # noqa: BLE001 - informational only
        info["auto_LiRPA"] = None
    return info


def _results(cfg: ExperimentConfig, records: list[RunRecord], calls: list[dict], command: str | None) -> dict:
    main = {r.method: r for r in records if r.main and r.alpha is not None}
    gaps = {
        m: {
            b: round(100 * (main["ad-cert"].certified_acc[b] - main[m].certified_acc[b]), 2)
            for b in cfg.evaluation.methods
        }
        for m in main
        if "ad-cert" in main and m != "ad-cert"
    }
    return {
        "experiment": "unified-setup",
        "preset": cfg.name,
        "description": cfg.description,
        "command": command or f"python examples/unified_setup.py --preset {cfg.name}",
        "dataset": cfg.data.dataset,
        "eps": cfg.schedule.eps,
        "model": cfg.model.name,
        "alpha": cfg.alpha,
        "alphas": list(cfg.alphas()),
        "certified_method": cfg.evaluation.methods[-1],  # cumulative: the last method counts every certificate
        "ad_cert_minus": gaps,  # certified-accuracy points at the shared α, per other method and bound method
        "seeds": list(cfg.seeds()),
        "over_seeds": _over_seeds(cfg, records) if cfg.extra_seeds else None,
        "run_time_s": round(sum(r.train_time_s + r.eval_time_s for r in records), 1),
        "calls": calls,
        "machine": machine_info(),
        "config": portable_config(cfg.to_dict()),
        "runs": [dataclasses.asdict(r) for r in records],
    }


def portable_config(config: dict) -> dict:
    """The config as results record it: no folder of the machine that ran it.

    The data root is machine-specific, so ``data.data_dir`` is recorded as null: the data are
    named by the data set alone (its files lie at fixed paths under the data root, e.g.
    ``MNIST/raw``), and a rerun finds the root by the data rule (``adcert_plugin.data.DATA_RULE``).
    """
    data = dict(config.get("data", {}))
    data["data_dir"] = None
    return {**config, "data": data}


def _spread(values: list[float]) -> dict:
    """Mean and sample standard deviation (points), with the values in seed order."""
    return {
        "mean": round(statistics.mean(values), 2),
        "sd": round(statistics.stdev(values), 2),
        "values": [round(v, 2) for v in values],
    }


def _over_seeds(cfg: ExperimentConfig, records: list[RunRecord]) -> dict:
    """Every method at the shared α (and the teacher) over all seeds, and ad-cert's paired gaps.

    Accuracies are in points (%). ``ad_cert_minus[other][bound]`` pairs the runs of one seed
    (same data order, initialisation and teacher), so its spread is that of the difference and
    ``wins`` counts the seeds where ad-cert certified more.
    """
    seeds, bounds = cfg.seeds(), cfg.evaluation.methods
    shared = {(r.method, r.seed): r for r in records if r.alpha in (None, cfg.alpha)}

    def certified(b: str) -> Callable[[RunRecord], float]:
        return lambda r: r.certified_acc[b]

    metrics: dict[str, Callable[[RunRecord], float]] = {
        "standard": lambda r: r.standard_acc,
        "pgd": lambda r: r.pgd_acc,
        **{f"certified {b}": certified(b) for b in bounds},
    }
    methods = [TEACHER_LOSS, *cfg.methods]
    summary = {
        m: {name: _spread([100 * get(shared[m, s]) for s in seeds]) for name, get in metrics.items()} for m in methods
    }
    gaps: dict = {}
    if "ad-cert" in cfg.methods:
        for other in (m for m in cfg.methods if m != "ad-cert"):
            gaps[other] = {}
            for b in bounds:
                diffs = [
                    100 * (shared["ad-cert", s].certified_acc[b] - shared[other, s].certified_acc[b]) for s in seeds
                ]
                gaps[other][b] = {**_spread(diffs), "wins": sum(d > 0 for d in diffs)}
    return {"seeds": list(seeds), "methods": summary, "ad_cert_minus": gaps}


def _calls(out_dir: Path, force: bool, wall: float, records: list[RunRecord]) -> list[dict]:
    """The calls that trained runs in ``out_dir`` (from the previous results.json unless ``force``), then this one."""
    calls = []
    previous = out_dir / "results.json"
    if previous.is_file() and not force:
        try:
            old = read_json(previous)
            calls = [c for c in old.get("calls", []) if c.get("runs_trained")]
        except ConfigError:
            pass
    trained = sum(not r.reused for r in records)
    return calls + [
        {
            "finished_at": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "wall_time_s": round(wall, 1),
            "runs_trained": trained,
            "runs_reused": len(records) - trained,
        }
    ]

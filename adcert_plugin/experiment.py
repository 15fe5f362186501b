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
import difflib
import logging
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import __version__
from .attacks import AttackConfig
from .config import (DataConfig, EvalConfig, LossConfig, ModelConfig, OptimConfig, ScheduleConfig, TrainConfig,
                     read_config_file)
from .errors import ConfigError
from .evaluate import DEFAULT_ATTACK, evaluate, resolve_methods
from .experiment_report import markdown_report, markdown_tables, plot_results
from .io import atomic_write_text, read_json, write_json
from .report import EvalReport
from .rundir import RunDir
from .strict import flatten, plain
from .train import train

log = logging.getLogger(__name__)

STUDENTS = ("mtl-ibp", "cc-ibp", "cc-dist", "ad-cert")
TEACHER_LOSS = "pgd"
_IGNORED_ON_REUSE = ("out_dir", "device", "data.data_dir", "teacher")  # may differ on a rerun


@dataclass(frozen=True)
class EvalSettings:
    """How every model is evaluated (``evaluate``): the same subset, attack and bound cascade."""

    n: int | None = 1000                        # seeded random test subset; None: the whole split
    methods: tuple[str, ...] = ("IBP", "CROWN")  # bound cascade (certified accuracy is cumulative)
    attack: AttackConfig = field(default_factory=lambda: DEFAULT_ATTACK)  # PGD-40, η = 0.035 (B.4.3)
    batch_size: int = 256
    seed: int = 0                                # picks the subset and the PGD starts


@dataclass(frozen=True)
class TeacherSettings:
    """The PGD teacher: the students' data and model, no IBP init, its own schedule and attack."""

    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(train_eps_mul=1.0, reg_lambda=0.0))
    optim: OptimConfig = field(default_factory=OptimConfig)
    attack: AttackConfig = field(default_factory=lambda: AttackConfig(steps=10, step_size=0.25))  # PGD-10, ε/4


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything the students share, the teacher's recipe, the α grid and the evaluation."""

    name: str
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)  # the students' training attack
    monitor: EvalConfig = field(default_factory=EvalConfig)  # per-epoch check during training
    teacher: TeacherSettings = field(default_factory=TeacherSettings)
    methods: tuple[str, ...] = STUDENTS
    alpha: float = 0.1                              # the one α of the main comparison
    sweep: tuple[float, ...] = ()                   # extra α values, for every method
    loss_params: dict = field(default_factory=dict)  # method -> other loss params (beta, tau, ...)
    evaluation: EvalSettings = field(default_factory=EvalSettings)
    seed: int = 100
    extra_seeds: tuple[int, ...] = ()               # retrain teacher + shared-α students with each
    device: str = "cpu"

    def __post_init__(self):
        if self.seed in self.extra_seeds or len(set(self.extra_seeds)) != len(self.extra_seeds):
            raise ConfigError(f"experiment {self.name!r}: extra_seeds {list(self.extra_seeds)} must be distinct "
                              f"and differ from seed={self.seed}")
        for a in (self.alpha, *self.sweep):
            if not 0.0 <= a <= 1.0:
                raise ConfigError(f"experiment {self.name!r}: alpha={a} must be in [0, 1]")
        unknown = set(self.loss_params) - set(self.methods)
        if unknown:
            raise ConfigError(f"experiment {self.name!r}: loss_params for {sorted(unknown)}, which are not methods")
        resolve_methods(self.evaluation.methods)
        for method in self.methods:  # validates names and params before any data is loaded
            self.student_config(method, self.alpha, Path("."), Path("teacher.pt"))
        self.teacher_config(Path("."))

    def alphas(self) -> tuple[float, ...]:
        """The shared α and the sweep, ascending."""
        return tuple(sorted({self.alpha, *self.sweep}))

    def seeds(self) -> tuple[int, ...]:
        """The main seed, then the extra ones."""
        return (self.seed, *self.extra_seeds)

    def student_config(self, method: str, alpha: float, out_dir: Path, teacher: Path) -> TrainConfig:
        loss = LossConfig(method, {**self.loss_params.get(method, {}), "alpha": alpha})
        needs_teacher = "teacher" in loss.create().needs
        return TrainConfig(data=self.data, model=self.model, loss=loss, attack=self.attack, schedule=self.schedule,
                           optim=self.optim, eval=self.monitor, teacher=str(teacher) if needs_teacher else None,
                           seed=self.seed, out_dir=str(out_dir), device=self.device)

    def teacher_config(self, out_dir: Path) -> TrainConfig:
        t = self.teacher
        return TrainConfig(data=self.data, model=dataclasses.replace(self.model, ibp_init=False),
                           loss=LossConfig(TEACHER_LOSS, {}), attack=t.attack, schedule=t.schedule, optim=t.optim,
                           eval=self.monitor, seed=self.seed, out_dir=str(out_dir), device=self.device)

    def to_dict(self) -> dict:
        return plain(dataclasses.asdict(self))


# -- presets ---------------------------------------------------------------------------------
_EXPERIMENTS: dict[str, ExperimentConfig] = {}


def register_experiment(cfg: ExperimentConfig) -> ExperimentConfig:
    """Register a preset under ``cfg.name``; a duplicate name is an error."""
    if cfg.name in _EXPERIMENTS:
        raise ConfigError(f"experiment preset {cfg.name!r} is registered twice")
    _EXPERIMENTS[cfg.name] = cfg
    return cfg


def list_experiments() -> list[str]:
    return sorted(_EXPERIMENTS)


def get_experiment(name: str) -> ExperimentConfig:
    if name not in _EXPERIMENTS:
        close = difflib.get_close_matches(name, list(_EXPERIMENTS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown experiment preset {name!r}{hint}; known: {', '.join(list_experiments())}")
    return _EXPERIMENTS[name]


# -- running ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunRecord:
    """One trained and evaluated model of the experiment."""

    method: str
    alpha: float | None            # None for the teacher
    uses_teacher: bool
    main: bool                     # the shared-α point of the main seed (the teacher counts as main)
    run_dir: str
    eval_dir: str
    standard_acc: float
    pgd_acc: float
    certified_acc: dict            # bound method -> cumulative certified accuracy
    train_time_s: float            # training loop time (summary.json: epochs incl. per-epoch checks)
    eval_time_s: float             # Σ per-sample evaluation seconds (kept across a resumed evaluation)
    reused: bool                   # True when this call trained nothing for it
    seed: int = 0                  # the training seed of this run


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
        return sorted((r for r in self.records if r.method == method and r.alpha is not None and r.seed == seed),
                      key=lambda r: r.alpha)

    def at_shared_alpha(self, method: str) -> list[RunRecord]:
        """``method``'s runs at the shared α (the teacher: its runs), one per seed, main seed first."""
        alpha = self.results["alpha"]
        return [r for r in self.records if r.method == method and r.alpha in (None, alpha)]

    def table(self) -> str:
        return markdown_tables(self.results)


def run_dir_name(method: str, alpha: float) -> str:
    return f"{method}-alpha{alpha:g}"


def run_unified(cfg: ExperimentConfig, out_dir: str | Path, force: bool = False, resume: bool = True,
                command: str | None = None) -> ExperimentResult:
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


def _seed_runs(cfg: ExperimentConfig, root: Path, alphas: tuple[float, ...], main_seed: bool, force: bool,
               resume: bool) -> list[RunRecord]:
    """The teacher, then every student at each of ``alphas``, all with ``cfg.seed``, under ``root``."""
    teacher_trained, teacher_rec = _train_and_evaluate(cfg, cfg.teacher_config(root / "teacher"), None, main_seed,
                                                       force, resume, False)
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


def _train_and_evaluate(cfg: ExperimentConfig, train_cfg: TrainConfig, alpha: float | None, main: bool,
                        force: bool, resume: bool, stale: bool) -> tuple[bool, RunRecord]:
    run = RunDir(train_cfg.out_dir)
    label = f"{train_cfg.loss.name}" + ("" if alpha is None else f" alpha={alpha:g}")
    retrain = force or stale or not run.summary.is_file()
    if not retrain:
        _check_same_config(run, train_cfg)
        summary = read_json(run.summary)
        log.info("%s: reusing the finished run in %s", label, run.path)
    else:
        go_on = resume and not force and not stale and run.last.is_file()
        log.info("%s: %s in %s", label, "resuming" if go_on else "training", run.path)
        summary = train(train_cfg, resume=go_on, force=not go_on, progress=False).summary
    report = _evaluate(cfg, run, overwrite=retrain)
    return retrain, RunRecord(
        method=train_cfg.loss.name, alpha=alpha, uses_teacher=train_cfg.teacher is not None, main=main,
        run_dir=str(run.path), eval_dir=str(report.out_dir), standard_acc=report.standard_acc,
        pgd_acc=report.pgd_acc, certified_acc=dict(report.certified_acc),
        train_time_s=float(summary["train_time_s"]), eval_time_s=float(report.summary["seconds"]["total"]),
        reused=not retrain, seed=train_cfg.seed)


def _check_same_config(run: RunDir, wanted: TrainConfig) -> None:
    saved = flatten(read_config_file(run.config), keep=("loss.params", "model.kwargs"))
    now = flatten(wanted.to_dict(), keep=("loss.params", "model.kwargs"))
    changed = [k for k in sorted(set(saved) | set(now)) if k not in _IGNORED_ON_REUSE and saved.get(k) != now.get(k)]
    if changed:
        k = changed[0]
        raise ConfigError(f"{run.path} holds a finished run with another config ({k}: {saved.get(k)!r} → "
                          f"{now.get(k)!r}); pass --force to retrain, or choose another --out-dir")


def _evaluate(cfg: ExperimentConfig, run: RunDir, overwrite: bool) -> EvalReport:
    ev = cfg.evaluation
    kwargs = dict(dataset=cfg.data.dataset, data_dir=cfg.data.data_dir, eps=cfg.schedule.eps,
                  methods=ev.methods, n=ev.n, seed=ev.seed, attack=ev.attack, batch_size=ev.batch_size,
                  out_dir=run.path / "eval", device=None if cfg.device == "auto" else cfg.device, progress=False)
    if not overwrite:
        try:  # a finished report is re-read (no bounds recomputed), a partial one completed
            return evaluate(run.model, resume=True, **kwargs)
        except ConfigError as err:
            log.info("%s: re-evaluating (%s)", run.path / "eval", err)
    return evaluate(run.model, overwrite=True, **kwargs)


# -- results ---------------------------------------------------------------------------------
def machine_info() -> dict:
    """Where the experiment ran: platform, CPU count, threads, versions, accelerator."""
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "adcert": __version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        from importlib.metadata import version

        info["auto_LiRPA"] = version("auto_LiRPA")
    except Exception:  # noqa: BLE001 - informational only
        info["auto_LiRPA"] = None
    return info


def _results(cfg: ExperimentConfig, records: list[RunRecord], calls: list[dict], command: str | None) -> dict:
    main = {r.method: r for r in records if r.main and r.alpha is not None}
    gaps = {m: {b: round(100 * (main["ad-cert"].certified_acc[b] - main[m].certified_acc[b]), 2)
                for b in cfg.evaluation.methods} for m in main if "ad-cert" in main and m != "ad-cert"}
    return {
        "experiment": "unified-setup", "preset": cfg.name, "description": cfg.description,
        "command": command or f"python examples/unified_setup.py --preset {cfg.name}",
        "dataset": cfg.data.dataset, "eps": cfg.schedule.eps, "model": cfg.model.name, "alpha": cfg.alpha,
        "alphas": list(cfg.alphas()),
        "certified_method": cfg.evaluation.methods[-1],  # cumulative: the last method counts every certificate
        "ad_cert_minus": gaps,  # certified-accuracy points at the shared α, per other method and bound method
        "seeds": list(cfg.seeds()),
        "over_seeds": _over_seeds(cfg, records) if cfg.extra_seeds else None,
        "run_time_s": round(sum(r.train_time_s + r.eval_time_s for r in records), 1),
        "calls": calls, "machine": machine_info(), "config": cfg.to_dict(),
        "runs": [dataclasses.asdict(r) for r in records],
    }


def _spread(values: list[float]) -> dict:
    """Mean and sample standard deviation (points), with the values in seed order."""
    return {"mean": round(statistics.mean(values), 2), "sd": round(statistics.stdev(values), 2),
            "values": [round(v, 2) for v in values]}


def _over_seeds(cfg: ExperimentConfig, records: list[RunRecord]) -> dict:
    """Every method at the shared α (and the teacher) over all seeds, and ad-cert's paired gaps.

    Accuracies are in points (%). ``ad_cert_minus[other][bound]`` pairs the runs of one seed
    (same data order, initialisation and teacher), so its spread is that of the difference and
    ``wins`` counts the seeds where ad-cert certified more.
    """
    seeds, bounds = cfg.seeds(), cfg.evaluation.methods
    shared = {(r.method, r.seed): r for r in records if r.alpha in (None, cfg.alpha)}
    metrics = {"standard": lambda r: r.standard_acc, "pgd": lambda r: r.pgd_acc,
               **{f"certified {b}": (lambda r, b=b: r.certified_acc[b]) for b in bounds}}
    methods = [TEACHER_LOSS, *cfg.methods]
    summary = {m: {name: _spread([100 * get(shared[m, s]) for s in seeds]) for name, get in metrics.items()}
               for m in methods}
    gaps = {}
    if "ad-cert" in cfg.methods:
        for other in (m for m in cfg.methods if m != "ad-cert"):
            gaps[other] = {}
            for b in bounds:
                diffs = [100 * (shared["ad-cert", s].certified_acc[b] - shared[other, s].certified_acc[b])
                         for s in seeds]
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
    return calls + [{"finished_at": time.strftime("%Y-%m-%d %H:%M:%S %z"), "wall_time_s": round(wall, 1),
                     "runs_trained": trained, "runs_reused": len(records) - trained}]


def _ramp(epochs: int, length: int, teacher: bool = False, **kw) -> ScheduleConfig:
    """MNIST ε = 0.1 ramp from epoch 1; students train at 2ε (B.2.4), the teacher at ε without reg."""
    return ScheduleConfig(epochs=epochs, eps=0.1, eps_start_epoch=1, eps_length_epochs=length,
                          train_eps_mul=1.0 if teacher else 2.0, reg_lambda=0.0 if teacher else 0.5, **kw)


_ONE_STEP = AttackConfig(steps=1, step_size=10.0)  # B.4.2: 1 step, η = 10 (a vertex of the box)

# Each description says why the preset looks the way it does; results.md repeats it.
register_experiment(ExperimentConfig(
    name="cpu",
    description=(
        "CPU scale, under an hour on 2 cores with one torch thread. The students follow the mnist-small-* "
        "training presets (small-cnn, 20k MNIST images, 10 epochs, lr 1e-3) with the MNIST ε = 0.1 recipe of "
        "methods.md B.4.2 (train ε ×2, 1-step attack, warm-up regulariser, L1 1e-5, the MTL-IBP value); the "
        "teacher is mnist-small-teacher's (PGD-10, 6 epochs) on the same images. One α = 0.1 for all four: in a "
        "pilot (10k images, 5 epochs) α = 0.01 left every student almost without IBP certificates and α = 0.5 "
        "cost ~7 points of standard accuracy; 0.1 lies between for every loss and is the B.4.2 CC-IBP value. "
        "CROWN costs ~0.1 s per small-cnn sample here and only runs on what IBP leaves undecided, so it is "
        "affordable. Differences of a point or two are within the noise of 1000 test images and one seed."),
    data=DataConfig(dataset="mnist", train_subset=20000, test_subset=500, batch_size=100),
    model=ModelConfig(name="small-cnn"),
    schedule=_ramp(10, 4), optim=OptimConfig(lr=1e-3, milestones=(8,), gamma=0.2, grad_clip=10.0, l1=1e-5),
    attack=_ONE_STEP, monitor=EvalConfig(pgd_steps=10, pgd_step_size=0.25),
    teacher=TeacherSettings(schedule=_ramp(6, 3, teacher=True),
                            optim=OptimConfig(lr=1e-3, milestones=(5,), gamma=0.2, grad_clip=10.0, l1=0.0)),
    alpha=0.1, sweep=(0.01, 0.5),
    evaluation=EvalSettings(n=1000, methods=("IBP", "CROWN")),
    seed=100, device="cpu"))

register_experiment(ExperimentConfig(
    name="smoke",
    description="Smoke test: 200 training / 50 test images, 1 epoch of 4 batches; checks the pipeline, "
                "not the methods.",
    data=DataConfig(dataset="mnist", train_subset=200, test_subset=50, batch_size=50),
    model=ModelConfig(name="small-cnn", kwargs={"width": 8, "linear_size": 32}),
    schedule=_ramp(1, 1), optim=OptimConfig(lr=1e-3, milestones=(1,), l1=1e-5), attack=_ONE_STEP,
    monitor=EvalConfig(pgd_steps=2, pgd_step_size=0.5),
    teacher=TeacherSettings(schedule=_ramp(1, 1, teacher=True), optim=OptimConfig(lr=1e-3, milestones=(1,)),
                            attack=AttackConfig(steps=3, step_size=0.5)),
    alpha=0.5, sweep=(0.1,),
    evaluation=EvalSettings(n=50, methods=("IBP", "CROWN"), attack=AttackConfig(steps=5, step_size=0.25),
                            batch_size=50),
    seed=0, device="cpu"))

register_experiment(ExperimentConfig(
    name="paper",
    description=(
        "Paper scale, a GPU job (13 CNN7 trainings of 70 epochs): CNN7 on all of MNIST at ε = 0.1 with the "
        "methods.md B.4.2 row (batch 256, lr 5e-4 ×0.2 at 50/60, ramp 1/20, train ε ×2, 1-step attack); the "
        "teacher is the mnist-0.1-pgd recipe. One α = 0.1 (the CC-IBP value) with its L1 2e-6 for all; the sweep "
        "adds 0.01 (the MTL-IBP value) and 0.5, so both B.4.2 points lie on every curve. Certified by IBP → "
        "CROWN-IBP on the whole test split: full CROWN on CNN7 costs far more per sample and would run on "
        "nearly every image for the teacher; certify finished models completely with vnncomp/."),
    data=DataConfig(dataset="mnist", train_subset=None, test_subset=1000, batch_size=256),
    model=ModelConfig(name="cnn7"),
    schedule=_ramp(70, 20), optim=OptimConfig(lr=5e-4, milestones=(50, 60), gamma=0.2, grad_clip=10.0, l1=2e-6),
    attack=_ONE_STEP, monitor=EvalConfig(),
    teacher=TeacherSettings(schedule=_ramp(70, 20, teacher=True),
                            optim=OptimConfig(lr=5e-4, milestones=(50, 60), gamma=0.2, grad_clip=10.0, l1=0.0)),
    alpha=0.1, sweep=(0.01, 0.5),
    evaluation=EvalSettings(n=None, methods=("IBP", "CROWN-IBP")),
    seed=100, device="auto"))

"""Run the tuned comparison: ``run_study(cfg, out_dir)``.

    <out_dir>/seed<s>/teacher/               the PGD teacher of seed s (train split minus the holdout)
    <out_dir>/seed<s0>/grid/<point>/         every grid point of every method, first seed
                                             (+ eval-validation/: the selection evaluation)
                                             (+ the points that extend a grid past an edge)
    <out_dir>/seed<s>/final/<point>/         the selected point retrained with seed s (s ≠ s0)
    .../eval-test/                           the final evaluation of each selected run
    <out_dir>/results.json, results.md, plot.png

Order: teachers and the grid points that need no teacher, then the distilled grid points, then
selection (complete-certified accuracy on the validation samples, ties by standard accuracy),
then the selected setting of every method retrained with each further seed, then every selected
run evaluated on the test split. Each run (training, then its evaluations) is a Ray task with one
CPU and one torch thread (and one GPU when the study's device is cuda): on a local Ray instance
``cfg.processes`` run at once, on a cluster (``ray_address``) as many as it has room for; each
finished run's node is recorded (machine.json, results.json, progress.md). Every finished
training and evaluation is reused on a later call (same config), an interrupted one continues, so
the study can be stopped and resumed at any point, and a task whose worker died is rerun by Ray
from the run's last epoch.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

from ...errors import ConfigError, SoundnessError, quiet_library_warnings
from ...io import atomic_write_text, read_json, write_json
from ...parallel import Task, run_tasks, session
from ...training import RunDir, TrainConfig, train
from ...training.config import config_from_dict
from ..unified import check_same_config
from .archive import pack
from .config import StudyConfig, StudyEval, arm_dir, final_dir, point_name
from .results import _keys_of, _results
from .selection import edge_points, select
from .state import drop_model, model_hash, record_machine, restore, save_run, study_lock, trained_on
from .timing import train_cost

log = logging.getLogger(__name__)


# -- one job: train (or reuse) one run, then evaluate it ------------------------------------
def _job(train_dict: dict, evals: list[dict]) -> dict:
    """Runs in a worker process. ``evals``: [{"split", "settings", "name"}]. Returns a record."""
    import torch

    torch.set_num_threads(1)
    if not os.environ.get("ADCERT_DEBUG"):
        quiet_library_warnings()  # a worker does not inherit the CLI's: torch's deprecation notices
    cfg = config_from_dict(train_dict, "study job")
    run = RunDir(cfg.out_dir)
    started = time.perf_counter()
    reused = _finished_with(run, cfg)
    summary = (
        read_json(run.summary)
        if reused
        else train(cfg, resume=run.last.is_file(), force=not run.last.is_file(), progress=False).summary
    )
    if not reused:
        record_machine(run.path)  # now: a stop during the evaluation below must not lose where it trained
    record = {
        "run_dir": str(run.path),
        "method": cfg.loss.name,
        "params": dict(cfg.loss.params),
        "seed": cfg.seed,
        **train_cost(run.metrics, float(summary["train_time_s"])),
        "trained_now": not reused,
        "trained_on": trained_on(run.path),
        "evals": {},
    }
    for ev in evals:
        record["evals"][ev["name"]] = _evaluate(run, ev["split"], StudyEval.from_dict(ev["settings"]), cfg.device)
    record["wall_s"] = round(time.perf_counter() - started, 1)
    return record


def _finished_with(run: RunDir, wanted: TrainConfig) -> bool:
    """A finished run in ``run`` with the config asked for (another config there is an error)."""
    if not run.summary.is_file():
        return False
    check_same_config(run, wanted, advice="delete that run")
    return True


def complete_options(settings: StudyEval) -> dict:
    """The evaluate() options that send what the cascade leaves open to the complete verifier."""
    from ...evaluation.complete import CompleteConfig

    if settings.verifier is None:
        return {}
    return {"complete": CompleteConfig(verifier=settings.verifier, timeout=settings.timeout, jobs=settings.jobs)}


def _evaluate(run: RunDir, split: str, settings: StudyEval, device: str) -> dict:
    from ...evaluation import evaluate

    if not run.model.is_file():  # restored from a state folder that no longer keeps the model
        return metrics_of(_finished_without_model(run, split, settings))
    kwargs = dict(
        methods=settings.methods,
        n=settings.n,
        seed=settings.seed,
        attack=settings.attack,
        out_dir=run.path / f"eval-{split}",
        device=None if device == "auto" else device,
        progress=False,
        split=split,
        **complete_options(settings),
    )
    try:  # a finished report is re-read, a partial one completed
        report = _reported(evaluate, run.model, resume=True, **kwargs)
    except ConfigError as err:
        log.info("%s: evaluating afresh (%s)", run.path / f"eval-{split}", err)
        report = _reported(evaluate, run.model, overwrite=True, **kwargs)
    return metrics_of(report.summary)


def _finished_without_model(run: RunDir, split: str, settings: StudyEval) -> dict:
    """The summary of this run's finished evaluation with ``settings``, matched by the model's recorded hash."""
    from ...evaluation import resolve_methods

    folder = run.path / f"eval-{split}"
    complete = complete_options(settings).get("complete")
    wanted = {
        "checkpoint_sha256": model_hash(run.path),
        "methods": list(resolve_methods(settings.methods)),
        "n": settings.n,
        "seed": settings.seed,
        "attack": dataclasses.asdict(settings.attack),
        "complete": complete.record() if complete else None,
        "split": None if split == "test" else split,
    }
    config = read_json(folder / "config.json") if (folder / "summary.json").is_file() else {}
    if {k: config.get(k) for k in wanted} != wanted:
        raise ConfigError(
            f"{run.path} has no model.pt (the study's state kept only its results) and no finished "
            f"evaluation on {split} with these settings; delete {run.path} and its copy in the "
            "state folder to retrain it"
        )
    return read_json(folder / "summary.json")


def _reported(evaluate, model, **kwargs):
    """The eval report, also when it records contradictions: the study lists them and fails at its end.

    One verifier's wrong answer must not throw away hours of other runs; the contradicted answer
    already counts as not certified, and ``run_study`` raises SoundnessError after writing results.
    """
    try:
        return evaluate(model, **kwargs)
    except SoundnessError as err:
        if getattr(err, "report", None) is None:
            raise
        log.error("%s", err)
        return err.report


def metrics_of(summary: dict) -> dict:
    """The numbers the study compares, from an eval summary.json (accuracies as fractions)."""
    complete = summary.get("complete") or {}
    certified = dict(summary.get("certified_acc", {}))
    return {
        "n": summary["n"],
        "standard": summary["standard_acc"],
        "pgd": summary["pgd_acc"],
        "certified": certified,
        "complete": complete.get("certified_acc", certified[list(certified)[-1]] if certified else None),
        "complete_verifier": complete.get("verifier"),
        "timeouts": (complete.get("not_certified") or {}).get("timeout", 0),
        "complete_errors": (complete.get("not_certified") or {}).get("error", 0),
        "set_aside": complete.get("set_aside", 0),
        "contradictions": [f"sample {e['index']}: {e['detail']}" for e in summary.get("soundness_errors", [])],
        # per-sample times (bounds, attack, verifier) live in the rows, so a reused report keeps them
        "eval_time_s": float(summary.get("seconds", {}).get("total", 0.0)) + float(complete.get("seconds") or 0.0),
    }


# -- the study --------------------------------------------------------------------------------
def run_study(
    cfg: StudyConfig,
    out_dir: str | Path,
    command: str | None = None,
    state_dir: str | Path | None = None,
    ray_address: str | None = None,
) -> dict:
    """Train, select, retrain and evaluate as the module docstring says; returns results.json's content.

    ``state_dir``: a folder to commit (study/state.py): the finished runs it holds are restored into
    ``out_dir`` first, and every run that finishes is saved to it, so a fresh clone resumes.
    ``ray_address``: a Ray cluster to run on (else ``$RAY_ADDRESS``, else a local Ray instance of
    ``cfg.processes`` CPUs; a Ray session already open in this process is used as it is). The
    run folders must then be on storage every node sees.
    """
    # the lock first: a second study here would train into the same run folders
    with study_lock(out_dir, state_dir), session(ray_address, num_cpus=cfg.processes):
        return _run_study(cfg, Path(out_dir), command, state_dir)


def _run_study(cfg: StudyConfig, out_dir: Path, command: str | None, state_dir: str | Path | None) -> dict:
    from .report import plot_study, render_markdown

    if state_dir is not None:
        restore(Path(state_dir), out_dir)
    saved = _saver(out_dir, state_dir)
    started = time.perf_counter()
    first = cfg.seeds[0]
    teacher = {s: out_dir / f"seed{s}" / "teacher" for s in cfg.seeds}
    test_eval = {"split": "test", "settings": dataclasses.asdict(cfg.final), "name": "test"}
    val_eval = {"split": "validation", "settings": dataclasses.asdict(cfg.selection), "name": "validation"}
    teacher_only = {
        "split": "test",
        "name": "test",
        "settings": dataclasses.asdict(dataclasses.replace(cfg.final, verifier=None, methods=("IBP",))),
    }

    def grid_run(m: str, p: dict):
        return p, cfg.student_config(
            m, p, out_dir / f"seed{first}" / "grid" / point_name(m, p), teacher[first] / "model.pt", first
        )

    grid = {(m, i): grid_run(m, p) for m in cfg.methods for i, p in enumerate(cfg.grid_points(m))}
    wave1 = [(("teacher", s), cfg.teacher_config(teacher[s], s), [teacher_only]) for s in cfg.seeds]
    wave1 += [(key, c, [val_eval]) for key, (_, c) in grid.items() if c.teacher is None]
    wave2 = [(key, c, [val_eval]) for key, (_, c) in grid.items() if c.teacher is not None]
    records = _run_wave(cfg, wave1, "teachers and teacher-free grid points", saved(keep_model=True))
    # The teacher-free methods can already be selected: their first edge extensions share the
    # distilled grid's wave, so no core waits for a wave of its own.
    teacher_free = [m for m in cfg.methods if all(c.teacher is None for (k, _), (_, c) in grid.items() if k == m)]
    wave2 += _edge_jobs(cfg, grid, records, grid_run, val_eval, teacher_free)
    if wave2:
        records.update(_run_wave(cfg, wave2, "distilled grid points and first edge extensions", saved(keep_model=True)))
    chosen = _select_extending_edges(cfg, grid, records, grid_run, val_eval, saved(keep_model=True))
    if state_dir is not None:  # the models of points not selected are needed no more
        for (m, i), (_, c) in grid.items():
            if i != chosen[m]["index"]:
                drop_model(Path(state_dir) / os.path.relpath(c.out_dir, out_dir))
        pack(state_dir)
    finals: list[tuple] = []
    for m in cfg.methods:
        i = chosen[m]["index"]
        finals.append(((m, i, "test"), grid[m, i][1], [val_eval, test_eval]))
        for s in cfg.seeds[1:]:  # named by the point: a selection that changes never meets an old final
            c = cfg.student_config(
                m, chosen[m]["params"], final_dir(out_dir, s, m, chosen[m]["params"]), teacher[s] / "model.pt", s
            )
            finals.append(((m, s), c, [test_eval]))
    # one wave: the other seeds, the test evaluations and the framework arm share the processes
    done = _run_wave(
        cfg,
        finals + _arm_jobs(cfg, chosen, out_dir, teacher, test_eval),
        "selected settings: other seeds, test evaluation, other framework",
        saved(keep_model=False),
    )
    final_records = {k: r for k, r in done.items() if k[0] != "arm"}
    arm_records = {k[1:]: r for k, r in done.items() if k[0] == "arm"}
    results = _results(
        cfg, records, final_records, chosen, grid, command, time.perf_counter() - started, out_dir, arm_records
    )
    write_json(out_dir / "results.json", results)
    atomic_write_text(out_dir / "results.md", render_markdown(results))
    plot_study(results, out_dir / "plot.png")
    if results["contradictions"]:
        raise SoundnessError(
            f"{len(results['contradictions'])} contradictions in the study's evaluations (first: "
            f"{results['contradictions'][0]}); each counts as not certified, all are listed in "
            f"{out_dir / 'results.md'}"
        )
    return results


def _arm_jobs(cfg: StudyConfig, chosen: dict, out_dir: Path, teacher: dict, test_eval: dict) -> list:
    """The selected settings under ``cfg.framework_arm``, every seed, the same teachers; key ("arm", method, seed)."""
    arm = cfg.framework_arm
    if arm is None:
        return []
    return [
        (
            ("arm", m, s),
            cfg.student_config(m, point, arm_dir(out_dir, s, arm, m, point), teacher[s] / "model.pt", s, arm),
            [test_eval],
        )
        for m, point in ((m, chosen[m]["params"]) for m in cfg.methods)
        for s in cfg.seeds
    ]


def _candidates(grid: dict, records: dict, method: str) -> list[tuple[dict, dict]]:
    """(params, record) of every point of ``method`` tried so far, grid order then extensions."""
    return [(grid[k][0], records[k]) for k in _keys_of(grid, method)]


def _select_extending_edges(cfg: StudyConfig, grid: dict, records: dict, grid_run, val_eval: dict, on_done) -> dict:
    """Select per method; while a choice sits on a laddered edge, train the next rung and select again.

    New points join ``grid`` (and their records ``records``) under the next indices, so the rest
    of the study treats them as grid points; results mark them as extensions.
    """
    while True:
        jobs = _edge_jobs(cfg, grid, records, grid_run, val_eval, cfg.methods)
        if not jobs:
            return {m: select(m, _candidates(grid, records, m)) for m in cfg.methods}
        records.update(_run_wave(cfg, jobs, "grid extended past the edge its choice sits on", on_done))


def _edge_jobs(cfg: StudyConfig, grid: dict, records: dict, grid_run, val_eval: dict, methods) -> list:
    """The runs that extend each of ``methods`` one rung past the edge its current choice sits on.

    Each new point joins ``grid`` under the method's next index (so the rest of the study treats it
    as a grid point); the caller runs the returned jobs and adds their records."""
    jobs = []
    for m in methods:
        candidates = _candidates(grid, records, m)
        tried = [p for p, _ in candidates]
        for p in edge_points(cfg.edge_extension.get(m, {}), tried, select(m, candidates)["params"]):
            key = (m, len(tried))
            tried.append(p)
            grid[key] = grid_run(m, p)
            jobs.append((key, grid[key][1], [val_eval]))
    return jobs


def _saver(out_dir: Path, state_dir: str | Path | None):
    """``saved(keep_model)``: the callback that copies each finished run to the state (or does nothing)."""

    def saved(keep_model: bool):
        def save(record: dict) -> None:
            if state_dir is not None:
                save_run(out_dir, Path(record["run_dir"]), Path(state_dir), keep_model, record["trained_now"])

        return save

    return saved


def _run_wave(cfg: StudyConfig, jobs: list, label: str, on_done=lambda record: None) -> dict:
    """Run ``jobs`` [(key, TrainConfig, evals)] as Ray tasks; returns key → record (with its ``node``).

    ``on_done(record)`` runs in this process as each job finishes (the state is saved there).
    """
    log.info("%s: %d runs", label, len(jobs))
    tasks = [
        Task(
            key,
            _job,
            (c.to_dict(), evals),
            name=f"adcert-run {c.out_dir}",
            num_gpus=1.0 if str(c.device).startswith("cuda") else 0.0,
        )
        for key, c, evals in jobs
    ]
    done: dict = {}
    for k, (key, record, node) in enumerate(run_tasks(tasks), 1):
        done[key] = _progress(k, len(jobs), key, dict(record, node=node))
        on_done(done[key])
    return done


def _progress(k: int, total: int, key, record: dict) -> dict:
    shown = ", ".join(
        f"{name}: complete {100 * e['complete']:.1f}% std {100 * e['standard']:.1f}%"
        for name, e in record["evals"].items()
        if e.get("complete") is not None
    )
    log.info(
        "[%d/%d] %s %s seed %d: %s in %.0f s on %s; %s",
        k,
        total,
        record["method"],
        record["params"] or "",
        record["seed"],
        "trained" if record["trained_now"] else "reused",
        record["wall_s"],
        record["node"],
        shown,
    )
    return record

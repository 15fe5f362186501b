"""Where a running or stopped study stands, read from its run folders alone (nothing is trained).

``study_progress(cfg, out_dir)`` lists every run the study will make (teachers, grid points,
the points that extend a grid past an edge once its evaluations call for them, retrained finals
once selection is decided) with its state (``done``, ``training`` with the epochs so far, ``waiting``) and
the numbers of every finished evaluation, and ``estimate_left`` the work that remains (from the
medians of what finished); ``render_progress`` makes it a markdown page. A study of
hours is stopped and resumed across sessions: this page is what can be committed before it ends.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from ...io import read_json
from .config import StudyConfig, arm_dir, final_dir, point_name
from .selection import edge_points, select
from .state import trained_on
from .timing import epoch_times, train_cost


def _run_state(run: Path, epochs: int) -> tuple[str, float]:
    """The run's state and the fraction of its training done."""
    if (run / "summary.json").is_file():
        return "done", 1.0
    if not (run / "metrics.jsonl").is_file():
        return "waiting", 0.0
    done = len(epoch_times(run / "metrics.jsonl"))
    return f"training ({done}/{epochs} epochs)", done / epochs


def _train_seconds(run: Path) -> float | None:
    """A finished run's training time, paused epochs taken at the run's median (study/timing.py)."""
    summary = run / "summary.json"
    if not summary.is_file():
        return None
    return train_cost(run / "metrics.jsonl", float(read_json(summary)["train_time_s"]))["train_time_s"]


def _eval_numbers(run: Path, split: str) -> dict | None:
    """The study's numbers of a finished evaluation of ``run`` on ``split``, else None."""
    from .run import metrics_of

    summary = run / f"eval-{split}" / "summary.json"
    return metrics_of(read_json(summary)) if summary.is_file() else None


def _planned_points(cfg: StudyConfig, method: str, grid_dir: Path) -> tuple[list[dict], dict | None]:
    """The points of ``method`` the study trains on the first seed, and its choice once decided (else None).

    Replays the study's selection on the evaluations found: extension points appear as soon as the
    evaluations that call for them are there.
    """
    tried = cfg.grid_points(method)
    while True:
        evals = [_eval_numbers(grid_dir / point_name(method, p), "validation") for p in tried]
        if any(e is None for e in evals):
            return tried, None
        best = select(method, [(p, {"evals": {"validation": e}}) for p, e in zip(tried, evals)])["params"]
        new = edge_points(cfg.edge_extension.get(method, {}), tried, best)
        if not new:
            return tried, best
        tried = tried + new


def study_progress(cfg: StudyConfig, out_dir: str | Path) -> dict:
    """Every planned run of ``cfg`` under ``out_dir``: role, method, params, seed, state, evaluations."""
    out_dir, first = Path(out_dir), cfg.seeds[0]
    grid_dir = out_dir / f"seed{first}" / "grid"
    runs: list[tuple] = [
        ("teacher", "teacher", {}, s, out_dir / f"seed{s}" / "teacher", cfg.teacher.schedule.epochs) for s in cfg.seeds
    ]
    finals = []
    for m in cfg.methods:
        points, chosen = _planned_points(cfg, m, grid_dir)
        n_grid = len(cfg.grid_points(m))
        runs += [
            ("grid" if i < n_grid else "extension", m, p, first, grid_dir / point_name(m, p), cfg.schedule.epochs)
            for i, p in enumerate(points)
        ]
        finals += [
            ("final", m, chosen, s, None if chosen is None else final_dir(out_dir, s, m, chosen), cfg.schedule.epochs)
            for s in cfg.seeds[1:]
        ]
        arm = cfg.framework_arm
        if arm is not None:  # the selected setting under the other framework, every seed
            finals += [
                ("arm", m, chosen, s, arm_dir(out_dir, s, arm, m, chosen) if chosen else None, arm.schedule.epochs)
                for s in cfg.seeds
            ]
    rows: list[dict] = []
    for role, m, p, s, run, epochs in runs + finals:
        if run is None:  # a final whose setting selection has not decided yet
            rows.append(
                {
                    "role": role,
                    "method": m,
                    "params": None,
                    "seed": s,
                    "run_dir": None,
                    "state": "waiting for selection",
                    "evals": {},
                    "trained": 0.0,
                    "train_s": None,
                    "node": None,
                }
            )
            continue
        evals = {split: e for split in ("validation", "test") if (e := _eval_numbers(run, split))}
        state, trained = _run_state(run, epochs)
        rows.append(
            {
                "role": role,
                "method": m,
                "params": p,
                "seed": s,
                "run_dir": str(run.relative_to(out_dir)),
                "state": "trained, evaluating" if state == "done" and not evals else state,
                "evals": evals,
                "trained": trained,
                "train_s": _train_seconds(run),
                "node": trained_on(run),
            }
        )
    trained = sum(r["state"] in ("done", "trained, evaluating") for r in rows)
    return {
        "study": cfg.name,
        "runs": rows,
        "done": trained,
        "total": len(rows),
        "estimate": estimate_left(rows, cfg.processes),
    }


def _evals_due(row: dict) -> list[str]:
    """The evaluations the study still owes this run: validation for grid points, test for the rest.

    A grid point's test evaluation is owed only once it is chosen; until selection decides, one
    per method is counted (the point it will choose).
    """
    due = {"teacher": ["test"], "final": ["test"], "arm": ["test"]}.get(row["role"], ["validation"])
    return [split for split in due if split not in row["evals"]]


def estimate_left(rows: list[dict], processes: int) -> dict:
    """Work left, from the medians of what finished: training (by role) and evaluations (by split).

    Rough by design: a test evaluation's complete-verifier time depends on how many samples the
    bounds leave open, which differs between methods. Work with no finished example to take a
    median from is named in ``unmeasured``, not guessed.
    """

    def median(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    kind = lambda r: "teacher" if r["role"] == "teacher" else "student"
    train_median = {k: median([r["train_s"] for r in rows if kind(r) == k]) for k in ("teacher", "student")}
    students = [r for r in rows if r["role"] != "teacher"]
    eval_median = {
        split: median([r["evals"][split]["eval_time_s"] for r in students if split in r["evals"]])
        for split in ("validation", "test")
    }
    eval_median["teacher-test"] = median(
        [r["evals"]["test"]["eval_time_s"] for r in rows if r["role"] == "teacher" and "test" in r["evals"]]
    )
    owed_tests = {r["method"] for r in rows if r["role"] in ("grid", "extension")} - {
        r["method"] for r in rows if r["role"] in ("grid", "extension") and "test" in r["evals"]
    }
    work, unmeasured = {"train": 0.0, "eval": 0.0}, set()
    for r in rows:
        if r["trained"] < 1.0 and train_median[kind(r)] is None:
            unmeasured.add(f"{kind(r)} training")
        elif r["trained"] < 1.0:
            work["train"] += (1.0 - r["trained"]) * train_median[kind(r)]
        for split in _evals_due(r):
            key = "teacher-test" if r["role"] == "teacher" else split
            _add_eval(work, unmeasured, eval_median[key], key)
    for _ in owed_tests:  # the chosen grid point's own test evaluation
        _add_eval(work, unmeasured, eval_median["test"], "test")
    seconds = work["train"] + work["eval"]
    return {
        "train_s": work["train"],
        "eval_s": work["eval"],
        "wall_s": seconds / max(1, processes),
        "processes": processes,
        "unmeasured": sorted(unmeasured),
    }


def _add_eval(work: dict, unmeasured: set, median: float | None, key: str) -> None:
    if median is None:
        unmeasured.add(f"{key} evaluation")
    else:
        work["eval"] += median


def _cell(evals: dict, split: str, key: str) -> str:
    value = (evals.get(split) or {}).get(key)
    return "–" if value is None else f"{100 * value:.2f}"


def render_progress(progress: dict, command: str = "") -> str:
    """A markdown page: how far the study got, and every finished evaluation's numbers."""
    lines = [
        f"# Study `{progress['study']}`: progress ({progress['done']}/{progress['total']} runs trained)",
        "",
        "Partial: the selection and the final tables exist only once every run is done. A choice on the "
        "edge of its grid adds an extension run (study/selection.py), so the total can grow."
        + (f" Resume with `{command}`." if command else ""),
        "",
        "| role | method | params | seed | state | trained on | val. standard % | val. complete % | "
        "test standard % | test PGD % | test complete % | timeouts |",
        "|" + "---|" * 12,
    ]
    if progress.get("estimate"):
        lines[2:2] = [_estimate_line(progress["estimate"]), ""]
    for r in progress["runs"]:
        params = "–" if r["params"] is None else json.dumps(r["params"], separators=(",", ":"))
        timeouts = sum(e.get("timeouts", 0) for e in r["evals"].values())
        lines.append(
            f"| {r['role']} | {r['method']} | `{params}` | {r['seed']} | {r['state']} | {r.get('node') or '–'} | "
            f"{_cell(r['evals'], 'validation', 'standard')} | {_cell(r['evals'], 'validation', 'complete')} | "
            f"{_cell(r['evals'], 'test', 'standard')} | {_cell(r['evals'], 'test', 'pgd')} | "
            f"{'–' if r['role'] == 'teacher' else _cell(r['evals'], 'test', 'complete')} | {timeouts} |"
        )
    return "\n".join(lines) + "\n"


def _estimate_line(e: dict) -> str:
    hours = lambda s: f"{s / 3600:.1f} h"
    if e["unmeasured"] and e["train_s"] + e["eval_s"] == 0:  # 0.0 h would read as "done"
        return (
            "Time left: unknown; nothing has finished yet to measure it by ("
            + ", ".join(e["unmeasured"])
            + "). Ask again once a run has finished."
        )
    if e["unmeasured"]:
        hours = lambda s: f"at least {s / 3600:.1f} h"
    line = (
        f"Left, from the medians of the finished runs: {hours(e['train_s'])} of training and {hours(e['eval_s'])} "
        f"of evaluation, about {hours(e['wall_s'])} of wall time at {e['processes']} processes (rough: a test "
        "evaluation's verifier time varies by method)."
    )
    if e["unmeasured"]:
        line += " Not counted, nothing finished to measure it by: " + ", ".join(e["unmeasured"]) + "."
    return line

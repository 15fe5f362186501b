"""Where a running or stopped study stands, read from its run folders alone (nothing is trained).

``study_progress(cfg, out_dir)`` lists every run the study will make (teachers, grid points,
the points that extend a grid past an edge once its evaluations call for them, retrained finals
once selection is decided) with its state (``done``, ``training`` with the epochs so far, ``waiting``) and
the numbers of every finished evaluation; ``render_progress`` makes it a markdown page. A study of
hours is stopped and resumed across sessions: this page is what can be committed before it ends.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..io import read_json
from .study_config import StudyConfig, final_dir, point_name
from .study_selection import edge_points, select


def _run_state(run: Path, epochs: int) -> str:
    if (run / "summary.json").is_file():
        return "done"
    metrics = run / "metrics.jsonl"
    if not metrics.is_file():
        return "waiting"
    done = sum(1 for line in metrics.read_text().splitlines() if line.strip())
    return f"training ({done}/{epochs} epochs)"


def _eval_numbers(run: Path, split: str) -> dict | None:
    """The study's numbers of a finished evaluation of ``run`` on ``split``, else None."""
    from .study import metrics_of

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
    runs = [("teacher", "teacher", {}, s, out_dir / f"seed{s}" / "teacher", cfg.teacher.schedule.epochs)
            for s in cfg.seeds]
    finals = []
    for m in cfg.methods:
        points, chosen = _planned_points(cfg, m, grid_dir)
        n_grid = len(cfg.grid_points(m))
        runs += [("grid" if i < n_grid else "extension", m, p, first, grid_dir / point_name(m, p),
                  cfg.schedule.epochs) for i, p in enumerate(points)]
        finals += [("final", m, chosen, s, None if chosen is None else final_dir(out_dir, s, m, chosen),
                    cfg.schedule.epochs) for s in cfg.seeds[1:]]
    rows = []
    for role, m, p, s, run, epochs in runs + finals:
        if run is None:  # a final whose setting selection has not decided yet
            rows.append({"role": role, "method": m, "params": None, "seed": s, "run_dir": None,
                         "state": "waiting for selection", "evals": {}})
            continue
        evals = {split: e for split in ("validation", "test") if (e := _eval_numbers(run, split))}
        state = _run_state(run, epochs)
        rows.append({"role": role, "method": m, "params": p, "seed": s, "run_dir": str(run.relative_to(out_dir)),
                     "state": "trained, evaluating" if state == "done" and not evals else state, "evals": evals})
    trained = sum(r["state"] in ("done", "trained, evaluating") for r in rows)
    return {"study": cfg.name, "runs": rows, "done": trained, "total": len(rows)}


def _cell(evals: dict, split: str, key: str) -> str:
    value = (evals.get(split) or {}).get(key)
    return "–" if value is None else f"{100 * value:.2f}"


def render_progress(progress: dict, command: str = "") -> str:
    """A markdown page: how far the study got, and every finished evaluation's numbers."""
    lines = [f"# Study `{progress['study']}`: progress ({progress['done']}/{progress['total']} runs trained)", "",
             "Partial: the selection and the final tables exist only once every run is done. A choice on the "
             "edge of its grid adds an extension run (study_selection.py), so the total can grow."
             + (f" Resume with `{command}`." if command else ""), "",
             "| role | method | params | seed | state | val. standard % | val. complete % | "
             "test standard % | test PGD % | test complete % | timeouts |", "|" + "---|" * 11]
    for r in progress["runs"]:
        params = "–" if r["params"] is None else json.dumps(r["params"], separators=(",", ":"))
        timeouts = sum(e.get("timeouts", 0) for e in r["evals"].values())
        lines.append(f"| {r['role']} | {r['method']} | `{params}` | {r['seed']} | {r['state']} | "
                     f"{_cell(r['evals'], 'validation', 'standard')} | {_cell(r['evals'], 'validation', 'complete')} | "
                     f"{_cell(r['evals'], 'test', 'standard')} | {_cell(r['evals'], 'test', 'pgd')} | "
                     f"{'–' if r['role'] == 'teacher' else _cell(r['evals'], 'test', 'complete')} | {timeouts} |")
    return "\n".join(lines) + "\n"

"""Where a running or stopped study stands, read from its run folders alone (nothing is trained).

``study_progress(cfg, out_dir)`` lists every run the study will make (teachers, grid points,
retrained finals) with its state (``done``, ``training`` with the epochs so far, ``waiting``) and
the numbers of every finished evaluation; ``render_progress`` makes it a markdown page. A study of
hours is stopped and resumed across sessions: this page is what can be committed before it ends.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..io import read_json
from .study_config import StudyConfig, point_name


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


def study_progress(cfg: StudyConfig, out_dir: str | Path) -> dict:
    """Every planned run of ``cfg`` under ``out_dir``: role, method, params, seed, state, evaluations."""
    out_dir, first = Path(out_dir), cfg.seeds[0]
    runs = [("teacher", "teacher", {}, s, out_dir / f"seed{s}" / "teacher", cfg.teacher.schedule.epochs)
            for s in cfg.seeds]
    runs += [("grid", m, p, first, out_dir / f"seed{first}" / "grid" / point_name(m, p), cfg.schedule.epochs)
             for m in cfg.methods for p in cfg.grid_points(m)]
    runs += [("final", m, None, s, out_dir / f"seed{s}" / "final" / m, cfg.schedule.epochs)
             for m in cfg.methods for s in cfg.seeds[1:]]
    rows = []
    for role, m, p, s, run, epochs in runs:
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
             "Partial: the selection and the final tables exist only once every run is done."
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

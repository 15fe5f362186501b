"""The tuned comparison (issue 14): per-method grids selected on a validation holdout, the choice
retrained over several seeds, every selected run evaluated with a complete verifier.

    from adcert_plugin.experiments.study import get_study, run_study
    results = run_study(get_study("smoke"), "runs/study-smoke")      # each run a Ray task

    config.py     StudyConfig, StudyEval: grids, edge ladders, evaluations, seeds
    presets.py    mnist-0.1, mnist-0.3, fmnist-0.1 (CPU scale), smoke (CI) and tiny (the Ray tests)
    run.py        run_study(cfg, out_dir): teachers, grid, selection, finals, results.json
    selection.py  select, and the grid's extension past an edge its choice sits on
    state.py      the committed state folder a fresh clone resumes from; one study per folder (flock)
    progress.py   progress.md: every planned run's state, trains nothing
    report.py     results.md, plot.png, curves.png (from results.json alone)
    timing.py     training time with paused epochs taken at the run's median
    summary.py    one page across the benchmarks (examples/study_summary.py): a verdict per pair
"""

from .config import StudyConfig, StudyEval, final_dir, point_name
from .presets import get_study, list_studies, register_study
from .progress import estimate_left, render_progress, study_progress
from .report import plot_curves, plot_study, render_markdown
from .run import metrics_of, run_study
from .selection import edge_points, select
from .state import restore, save_run, study_lock
from .summary import load_benchmark, plot_pairs, render_summary, summary_json, verdict

__all__ = [
    "StudyConfig",
    "StudyEval",
    "edge_points",
    "estimate_left",
    "final_dir",
    "get_study",
    "list_studies",
    "load_benchmark",
    "metrics_of",
    "plot_curves",
    "plot_pairs",
    "plot_study",
    "point_name",
    "register_study",
    "render_markdown",
    "render_progress",
    "render_summary",
    "restore",
    "run_study",
    "save_run",
    "select",
    "study_lock",
    "study_progress",
    "summary_json",
    "verdict",
]

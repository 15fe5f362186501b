"""Experiments: the unified-setup study (methods.md Part A) in one call, and its report.

    config.py   ExperimentConfig: what every student shares, the teacher, the α grid, the evaluation
    presets.py  the cpu / smoke / paper presets (registered on import)
    unified.py  run_unified(cfg, out_dir) -> ExperimentResult: train, evaluate, write results
    report.py   markdown tables and the standard-vs-certified plot, from results.json alone

The tuned comparison (issue 14), imported by module (``examples/study.py``):
    study_config.py     StudyConfig: grids, edge ladders, evaluations, seeds
    study_presets.py    mnist-0.1, mnist-0.3, fmnist-0.1 (CPU scale) and smoke (CI)
    study.py            run_study(cfg, out_dir): teachers, grid, selection, finals, results.json
    study_selection.py  select, and the grid's extension past an edge its choice sits on
    study_state.py      the state folder a fresh clone resumes from
    state_archive.py    that folder packed as the one archive that is committed (<state>.tar.gz)
    study_guard.py      one study per folder (flock); pool workers that end with their study
    study_progress.py   progress.md: every planned run's state, trains nothing
    study_report.py / study_timing.py / stats.py   tables and plots; paused epochs; mean ± sd, paired t intervals
    study_summary.py    one page across the benchmarks (examples/study_summary.py): a verdict per pair
"""

from .config import STUDENTS, EvalSettings, ExperimentConfig, TeacherSettings
from .presets import get_experiment, list_experiments, register_experiment
from .report import markdown_report, markdown_tables, plot_results
from .unified import ExperimentResult, RunRecord, run_unified

__all__ = ["STUDENTS", "EvalSettings", "ExperimentConfig", "ExperimentResult", "RunRecord", "TeacherSettings",
           "get_experiment", "list_experiments", "markdown_report", "markdown_tables", "plot_results",
           "register_experiment", "run_unified"]

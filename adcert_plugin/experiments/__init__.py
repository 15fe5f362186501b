"""Experiments: the unified-setup study (methods.md Part A) in one call, and its report.

    config.py   ExperimentConfig: what every student shares, the teacher, the α grid, the evaluation
    presets.py  the cpu / smoke / paper presets (registered on import)
    unified.py  run_unified(cfg, out_dir) -> ExperimentResult: train, evaluate, write results
    report.py   markdown tables and the standard-vs-certified plot, from results.json alone

The tuned comparison (issue 14) is the subpackage ``study`` (``examples/study.py``)::

    from adcert_plugin.experiments.study import get_study, run_study

    study/config.py, presets.py, run.py, selection.py, state.py, progress.py, report.py, timing.py,
    summary.py: see study/__init__.py; stats.py: mean ± sd, paired t intervals
"""

from .config import STUDENTS, EvalSettings, ExperimentConfig, TeacherSettings
from .presets import get_experiment, list_experiments, register_experiment
from .report import markdown_report, markdown_tables, plot_results
from .unified import ExperimentResult, RunRecord, run_unified

__all__ = [
    "STUDENTS",
    "EvalSettings",
    "ExperimentConfig",
    "ExperimentResult",
    "RunRecord",
    "TeacherSettings",
    "get_experiment",
    "list_experiments",
    "markdown_report",
    "markdown_tables",
    "plot_results",
    "register_experiment",
    "run_unified",
]

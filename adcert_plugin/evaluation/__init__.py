"""Evaluation: the certification cascade (clean -> PGD -> IBP -> ... -> alpha-CROWN) and its report.

    cascade.py  evaluate(checkpoint, ...) -> EvalReport
    report.py   EvalReport, samples.jsonl rows and the summary recounted from them
"""

from .cascade import DEFAULT_ATTACK, check_eps, check_range, evaluate, pgd_margins, resolve_methods, select_indices
from .report import SAMPLE_KEYS, EvalReport, format_table, read_samples, summarize

__all__ = ["DEFAULT_ATTACK", "SAMPLE_KEYS", "EvalReport", "check_eps", "check_range", "evaluate", "format_table",
           "pgd_margins", "read_samples", "resolve_methods", "select_indices", "summarize"]

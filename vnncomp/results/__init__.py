"""Results: what the verifiers answered, checked, and merged with adcert-eval's report.

readers.py          VerifierResult; every verifier's result files, abCROWN pickles, results tables
counterexamples.py  a ``sat`` counts only if its point holds on the ONNX network
evidence.py         check_answers: every answer against the benchmark's attack points and bounds
falsify.py          the verify-time attack (PGD over every disjunct on the ONNX network)
external.py         other people's results: VNN-COMP results.csv, the 2026 per-property JSON records
report.py           cross_check / report_benchmark: merged certified accuracy; contradictions raise
"""

from .counterexamples import CexCheck, check_counterexample, validate_counterexamples
from .evidence import Checked, Coverage, check_answers
from .readers import (
    RESULTS,
    VerifierResult,
    load_pickle_restricted,
    read_abcrown_pickle,
    read_result_file,
    read_results,
    read_results_table,
    read_table_identity,
    write_result_file,
    write_results_table,
)
from .report import CrossCheck, cross_check, read_eval_rows, report_benchmark

__all__ = [
    "RESULTS",
    "CexCheck",
    "Checked",
    "Coverage",
    "CrossCheck",
    "VerifierResult",
    "check_answers",
    "check_counterexample",
    "cross_check",
    "load_pickle_restricted",
    "read_abcrown_pickle",
    "read_eval_rows",
    "read_result_file",
    "read_results",
    "read_results_table",
    "read_table_identity",
    "report_benchmark",
    "validate_counterexamples",
    "write_result_file",
    "write_results_table",
]

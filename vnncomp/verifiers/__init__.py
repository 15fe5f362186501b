"""Verifiers: run a complete verifier on a benchmark, one subprocess per instance with a wall limit.

    runners.py         run_marabou / run_abcrown / run_neuralsat behind one subprocess/timeout runner;
                       verify_benchmark() picks one, checks its counterexamples, writes the table
    marabou_worker.py  the torch-free process that runs Marabou on one instance
"""

from .runners import (RUNNERS, STARTUP_GRACE, find_abcrown, find_neuralsat, run_abcrown, run_marabou, run_neuralsat,
                      verify_benchmark)

__all__ = ["RUNNERS", "STARTUP_GRACE", "find_abcrown", "find_neuralsat", "run_abcrown", "run_marabou",
           "run_neuralsat", "verify_benchmark"]

"""Verifiers: run a complete verifier on a benchmark, one subprocess per instance with a wall limit.

process.py         one verifier process with a wall limit (Command, run_process)
common.py          what every verifier shares: Runner, results files, resume records
                   (<instance>.json), the jobs pool; byproducts under results/
warm.py            runs forked from a process that imported the verifier once (fork_server.py)
neuralsat.py       NeuralSAT (the default) in its own venv (.venv-neuralsat, `make neuralsat`)
abcrown.py         alpha-beta-CROWN from its checkout under its own interpreter; single and csv mode
marabou.py         Marabou (maraboupy), through marabou_worker.py
marabou_worker.py  the torch-free process that runs Marabou on one instance
verify.py          verify_benchmark(): pick one, check its counterexamples, write the table
"""

from .abcrown import find_abcrown, find_abcrown_python, run_abcrown
from .common import STARTUP_GRACE, Command, Runner
from .marabou import run_marabou
from .neuralsat import find_neuralsat, run_neuralsat
from .verify import DEFAULT_VERIFIER, RUNNERS, run_and_check, verify_benchmark

__all__ = [
    "DEFAULT_VERIFIER",
    "RUNNERS",
    "STARTUP_GRACE",
    "Command",
    "Runner",
    "find_abcrown",
    "find_abcrown_python",
    "find_neuralsat",
    "run_abcrown",
    "run_and_check",
    "run_marabou",
    "run_neuralsat",
    "verify_benchmark",
]

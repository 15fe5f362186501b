"""verify_benchmark: run one verifier on a benchmark, check its counterexamples, write the table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adcert_plugin.errors import VerifierError

from ..export.instances import read_instances
from ..results import (
    VerifierResult,
    check_answers,
    read_results_table,
    read_table_identity,
    validate_counterexamples,
    write_results_table,
)
from .abcrown import run_abcrown
from .marabou import run_marabou
from .neuralsat import run_neuralsat

RUNNERS = {"neuralsat": run_neuralsat, "abcrown": run_abcrown, "marabou": run_marabou}
DEFAULT_VERIFIER = "neuralsat"


def verify_benchmark(
    bench_dir, verifier: str = DEFAULT_VERIFIER, raise_on_contradiction: bool = True, **options
) -> tuple[list[VerifierResult], Path]:
    """:func:`run_and_check`, returning (results, table path); raises on a contradiction unless asked not to."""
    checked, path = run_and_check(bench_dir, verifier, **options)
    if raise_on_contradiction:
        checked.raise_if_contradicted(str(path))
    return checked.results, path


def run_and_check(
    bench_dir,
    verifier: str = DEFAULT_VERIFIER,
    timeout: float | None = None,
    abcrown_path=None,
    device: str = "cpu",
    instances: Sequence[str] | None = None,
    table: str | Path | None = None,
    python: str | Path | None = None,
    jobs: int = 1,
    force: bool = False,
    mode: str = "single",
    abcrown_python: str | Path | None = None,
    keep_other_rows: bool = False,
):
    """Run one verifier on a benchmark, check every answer, write the results table.

    A ``sat`` whose counterexample fails :func:`check_counterexample` becomes ``error``; every
    answer is then checked against the benchmark's evidence (:func:`check_answers`): an
    ``unsat`` facing a point that violates the property becomes ``error`` and a contradiction
    (one within the 1e-4 tolerance only is set aside as ``unknown``). Nothing is
    raised for contradictions here: they are in the returned :class:`Checked`.
    Answers already in ``<bench>/results/<verifier>/`` for the same network (sha256 of the
    ONNX file), verifier and timeout are reused unless ``force``; earlier errors are rerun.

    Args:
        bench_dir: Benchmark folder.
        verifier: ``neuralsat`` (default), ``abcrown`` or ``marabou``.
        timeout: Seconds per instance (default: the csv column).
        abcrown_path: alpha-beta-CROWN checkout (abcrown; default ``$ADCERT_ABCROWN``).
        device: ``cpu`` or ``gpu`` (``cuda`` is read as ``gpu``); Marabou runs on the CPU.
        instances: Names to run (default: all).
        table: CSV table path (default: ``<bench>/results/<verifier>.csv``).
        python: Interpreter of NeuralSAT's environment (default: see ``find_neuralsat``); for
            abcrown, used when ``abcrown_python`` is not given.
        jobs: Instances run at once.
        force: Rerun instances whose answers are already there.
        mode: abcrown only: ``single`` (one process per instance) or ``csv`` (one for all).
        abcrown_python: Interpreter of abCROWN's environment (default ``$ADCERT_ABCROWN_PYTHON``).
        keep_other_rows: Keep the rows an existing table holds for instances not run now (same
            network and eps), so that a benchmark verified a chunk at a time keeps one full table.
        raise_on_contradiction: Raise on a contradiction (default). Off for callers that report
            it themselves: a contradicted ``unsat`` is returned as ``error``, noted ``rejected unsat: ...``.

    Returns:
        (:class:`Checked`: results in the csv's order, contradictions, coverage; the table path).

    Raises:
        VerifierError: Unknown or missing verifier, bad options.
        SoundnessError: An answer contradicts the evidence (exit 3); the table is written first.
    """
    if verifier not in RUNNERS:
        raise VerifierError(f"unknown verifier {verifier!r}; choose one of {sorted(RUNNERS)}")
    bench_dir = Path(bench_dir).resolve()
    gpu = device in ("gpu", "cuda")
    common: dict[str, Any] = {"timeout": timeout, "instances": instances, "jobs": jobs, "force": force}
    if verifier == "marabou":
        results = run_marabou(bench_dir, **common)
    elif verifier == "abcrown":
        results = run_abcrown(
            abcrown_path,
            bench_dir,
            device="gpu" if gpu else "cpu",
            python=abcrown_python or python,
            mode=mode,
            **common,
        )
    else:
        results = run_neuralsat(bench_dir, device="cuda" if gpu else "cpu", python=python, **common)
    by_name = {i.name: i for i in read_instances(bench_dir)}
    results = validate_counterexamples(results, by_name, require=True)  # every sat with a point that holds
    checked = check_answers(bench_dir, results)  # every answer against the benchmark's evidence (e13)
    path = Path(table or bench_dir / "results" / f"{verifier}.csv")
    rows = checked.results
    if keep_other_rows:
        rows = _with_earlier_rows(path, rows, checked.identity, [i.name for i in read_instances(bench_dir)])
    write_results_table(path, rows, checked.identity)
    return checked, path


def _with_earlier_rows(
    path: Path, results: list[VerifierResult], identity: dict, order: list[str]
) -> list[VerifierResult]:
    """``results`` plus the rows ``path`` already holds for other instances of the same network and eps."""
    same = {(str(identity.get("network_sha256") or ""), str(identity.get("eps") or ""))}
    try:
        earlier = read_results_table(path) if path.is_file() and read_table_identity(path) == same else []
    except VerifierError:
        earlier = []  # an unreadable table is replaced, as it was before
    by_name = {r.instance: r for r in earlier if r.instance in set(order)}
    by_name.update({r.instance: r for r in results})
    rank = {name: k for k, name in enumerate(order)}
    return sorted(by_name.values(), key=lambda r: rank[r.instance])

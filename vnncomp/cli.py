"""Command-line entry points: adcert-export, adcert-verify, adcert-report.

Each command parses its options, calls one library function, and prints a summary to
stderr. Errors are one line (``Error: <Class>: message``) with the class's exit code.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from adcert_plugin.cli import OneLineCommand, handle_errors, on_interrupt
from adcert_plugin.cli.commands import DATA_DIR_HELP
from adcert_plugin.cli.params import EPS_WHAT, Number
from adcert_plugin.io import atomic_write_text, check_output_file

_PATH = click.Path(path_type=Path)
_EXISTING_DIR = click.Path(path_type=Path, exists=True, file_okay=False)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def _say(message: str) -> None:
    click.echo(message, err=True)


_EXPORT_EXAMPLE = "adcert-export runs/mnist/model.pt --out-dir bench/mnist --eps 0.1 --n 20 --end 1000 --timeout 120"
_VERIFY_EXAMPLE = "adcert-verify bench/mnist --timeout 60 --jobs 2"
_REPORT_EXAMPLE = "adcert-report runs/mnist/eval/samples.jsonl bench/mnist --out report.json"


def _example(line: str) -> str:
    return f"\b\nExample:\n  {line}"


@click.command("adcert-export", cls=OneLineCommand, epilog=_example(_EXPORT_EXAMPLE))
@click.argument("checkpoint", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--out-dir", type=_PATH, required=True, help="Benchmark folder to write.")
@click.option("--dataset", default=None, help="Data-set name (default: the checkpoint's).")
@click.option("--data-dir", type=_PATH, envvar="ADCERT_DATA", default=None, help=DATA_DIR_HELP)
@click.option(
    "--eps",
    type=Number(min=0, min_open=True, what=EPS_WHAT),
    default=None,
    help="Pixel-space L-inf radius in (0, 1], e.g. 0.1 or 2/255 (default: the checkpoint config's eps).",
)
@click.option("--n", "n", type=click.IntRange(min=1), default=20, show_default=True, help="Number of instances.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for drawing test samples.")
@click.option(
    "--start",
    type=click.IntRange(min=0),
    default=None,
    help="Draw only from test indices >= START (as adcert-eval --start) [default: 0].",
)
@click.option(
    "--end",
    type=click.IntRange(min=1),
    default=None,
    help="Draw only from test indices < END (as adcert-eval --end), so that adcert-report can "
    "cross-check the benchmark with that eval [default: the whole split].",
)
@click.option(
    "--timeout",
    type=Number(min=0, min_open=True),
    default=120.0,
    show_default=True,
    help="Seconds per instance (n x timeout <= 6 h).",
)
@click.option("--filter-pgd", is_flag=True, help="Keep only samples that PGD does not break.")
@click.option(
    "--skip-certified",
    metavar="[IBP|CROWN-IBP|CROWN]",
    default=None,
    help="Keep only samples this cheap incomplete bound does not already certify, so that the "
    "benchmark asks a complete verifier something a cheap bound cannot answer.",
)
@click.option("--force", is_flag=True, help="Replace an existing non-empty --out-dir.")
@click.option("--arch", default=None, help="Architecture name, for a plain state_dict checkpoint.")
@click.option("--opset", type=click.IntRange(13, 17), default=13, show_default=True, help="ONNX opset.")
@click.option(
    "--abcrown-native",
    is_flag=True,
    help="Also write abcrown_native_{cpu,gpu}.yaml: abCROWN loads the checkpoint and the test split "
    "itself (no ONNX), on the benchmark's samples (drop data_idx_file for the whole test set).",
)
@click.option("--verbose", "-v", is_flag=True, help="Log progress.")
@handle_errors
def export_cmd(
    checkpoint,
    out_dir,
    dataset,
    data_dir,
    eps,
    n,
    seed,
    start,
    end,
    timeout,
    filter_pgd,
    skip_certified,
    force,
    arch,
    opset,
    abcrown_native,
    verbose,
):
    """Write a VNN-COMP benchmark (ONNX, VNN-LIB 1.0/2.0, instances.csv, abCROWN configs)."""
    from .export.benchmark import export_benchmark

    _setup_logging(verbose)
    on_interrupt(
        lambda: (
            f"Nothing was written to {out_dir} (a benchmark is moved into place only when "
            "complete); run the same command again."
        )
    )
    info = export_benchmark(
        checkpoint,
        out_dir,
        dataset=dataset,
        data_dir=data_dir,
        eps=eps,
        n=n,
        seed=seed,
        timeout=timeout,
        filter_pgd=filter_pgd,
        force=force,
        arch=arch,
        opset=opset,
        skip_certified=skip_certified,
        start=start,
        end=end,
    )
    if abcrown_native:
        _write_native(info, data_dir)
    method = info.params.get("skip_certified")
    skipped = f"{method}-certified (skipped) {info.bound_certified}/{info.bound_examined}, " if method else ""
    _say(
        f"wrote {len(info.instances)} instances to {info.out_dir} "
        f"({info.params['dataset']}, eps {info.params['eps']!r}, clean accuracy {100 * info.clean_accuracy:.2f} %, "
        f"PGD-robust {info.pgd_robust}/{info.pgd_examined}, {skipped}total timeout {info.total_timeout:g} s)"
    )


def _write_native(info, data_dir) -> None:
    from adcert_plugin.data import resolve_data_dir

    from .export.abcrown import write_native_configs
    from .export.benchmark import MODEL_FILE

    params = info.params
    written = write_native_configs(
        info.out_dir,
        [e["index"] for e in info.instances],
        params["timeout"],
        info.out_dir / MODEL_FILE,
        resolve_data_dir(data_dir),
        params["eps"],
        params["arch"]["num_classes"],
    )
    _say(f"abCROWN's own loader: {written[-1]} (and {written[-2].name})")


@click.command("adcert-verify", epilog=_example(_VERIFY_EXAMPLE))
@click.argument("bench_dir", type=_EXISTING_DIR)
@click.option(
    "--verifier",
    type=click.Choice(["neuralsat", "abcrown", "marabou"]),
    default="neuralsat",
    show_default=True,
    help="Complete verifier to run (marabou: wrong unsat answers on padded CNNs).",
)
@click.option(
    "--timeout",
    type=Number(min=0, min_open=True),
    default=None,
    help="Seconds per instance (default: instances.csv); a verifier still running 5 s later is "
    "killed and its answer is timeout (started afresh, not forked: plus its imports).",
)
@click.option(
    "--device",
    type=click.Choice(["cpu", "gpu"]),
    default="cpu",
    show_default=True,
    help="Device for neuralsat/abcrown (abcrown: picks abcrown_<device>.yaml).",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Instances run at once (each in its own process).",
)
@click.option("--force", is_flag=True, help="Rerun instances whose answers are already in results/<verifier>/.")
@click.option(
    "--python",
    "python",
    type=_PATH,
    default=None,
    help="Interpreter of NeuralSAT's venv [env: ADCERT_NEURALSAT_PYTHON; default: "
    ".venv-neuralsat, built by `make neuralsat`].",
)
@click.option(
    "--abcrown",
    "abcrown_path",
    type=_PATH,
    default=None,
    help="alpha-beta-CROWN checkout [env: ADCERT_ABCROWN; default: the one `make abcrown` made].",
)
@click.option(
    "--abcrown-python",
    type=_PATH,
    default=None,
    help="Interpreter of abCROWN's own environment [env: ADCERT_ABCROWN_PYTHON; default: .venv-abcrown].",
)
@click.option(
    "--mode",
    type=click.Choice(["single", "csv"]),
    default="single",
    show_default=True,
    help="abcrown: one process per instance (single), or one over all of them (csv; each sat with its "
    "counterexample, re-checked).",
)
@click.option("--instance", "instances", multiple=True, help="Run only this instance (repeatable).")
@click.option("--out", type=_PATH, default=None, help="Results table (default: BENCH_DIR/results/<verifier>.csv).")
@click.option("--verbose", "-v", is_flag=True, help="Log progress.")
@handle_errors
def verify_cmd(
    bench_dir,
    verifier,
    timeout,
    device,
    jobs,
    force,
    python,
    abcrown_path,
    abcrown_python,
    mode,
    instances,
    out,
    verbose,
):
    """Run a complete verifier on every instance of a benchmark and write a results table.

    Answers already there for the same network, verifier and timeout are reused (--force reruns).
    Exits 4 when an instance errors (reasons in the summary), 3 on a contradiction.
    """
    import sys

    from adcert_plugin.errors import InstanceError

    from .verifiers import run_and_check
    from .verifiers.common import reporting

    _setup_logging(verbose)
    if out is not None:  # before the verifier runs for hours, not after
        check_output_file(out, "--out")
    folder = bench_dir / "results" / verifier
    on_interrupt(
        lambda: (
            f"The verifiers still running were stopped; answers already given are kept in {folder}/ "
            "and the same command reuses them (continue with it; --force reruns all)."
        )
    )
    _sigterm_as_interrupt()
    with reporting(sys.stderr):
        checked, table = run_and_check(
            bench_dir,
            verifier,
            timeout=timeout,
            abcrown_path=abcrown_path,
            device=device,
            instances=list(instances) or None,
            table=out,
            python=python,
            jobs=jobs,
            force=force,
            mode=mode,
            abcrown_python=abcrown_python,
        )
    results = checked.results
    _say(_verify_summary(verifier, results, table))
    _say(checked.coverage.line())
    checked.raise_if_contradicted(str(table))  # a contradiction outranks instance errors: exit 3, not 4
    errors = [r for r in results if r.result == "error"]
    if errors:
        every = "every instance" if len(errors) == len(results) else f"{len(errors)} of {len(results)} instances"
        folder = bench_dir / "results" / verifier
        raise InstanceError(f"{verifier} failed on {every} (see the lines above and {folder}/)")


def _sigterm_as_interrupt() -> None:
    """SIGTERM (what a scheduler sends) stops the verifiers as Ctrl-C does, instead of orphaning them."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _verify_summary(verifier: str, results, table: Path) -> str:
    """Counts per answer, then one line per errored instance with its reason."""
    counts = {word: sum(r.result == word for r in results) for word in ("unsat", "sat", "timeout", "error", "unknown")}
    reused = sum("reused" in r.note for r in results)
    lines = [
        f"{verifier} on {len(results)} instances: "
        + ", ".join(f"{k} {v}" for k, v in counts.items() if v)
        + (f" ({reused} reused)" if reused else "")
        + f"; table {table}"
    ]
    lines += [f"  error {r.instance}: {r.note or 'no reason given'}" for r in results if r.result == "error"]
    return "\n".join(lines)


@click.command("adcert-report", epilog=_example(_REPORT_EXAMPLE))
@click.argument("eval_file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.argument("bench_dir", type=_EXISTING_DIR)
@click.option(
    "--results",
    "sources",
    type=click.Path(path_type=Path, exists=True),
    multiple=True,
    help="Results (repeatable; default: BENCH_DIR/results/*.csv): an adcert table, an abCROWN pickle, "
    "result files or a folder of them, a VNN-COMP results.csv (or its folder, with its "
    ".counterexample files), or a 2026 per-model JSON of records; the format is detected.",
)
@click.option("--out", type=_PATH, default=None, help="Write the merged summary and rows as JSON.")
@click.option("--verbose", "-v", is_flag=True, help="Log progress.")
@handle_errors
def report_cmd(eval_file, bench_dir, sources, out, verbose):
    """Merge adcert-eval's per-sample report with verifier results; exit 3 on contradictions, 4 on rejected sat
    answers."""
    from adcert_plugin.errors import SoundnessError

    from .results import report_benchmark

    _setup_logging(verbose)
    if out is not None:
        check_output_file(out, "--out")
    check = report_benchmark(eval_file, bench_dir, list(sources) or None, raise_on_contradiction=False)
    if out is not None:
        atomic_write_text(
            out, json.dumps({"summary": check.summary(), "rows": check.rows}, indent=1, default=str) + "\n"
        )
    _say(
        f"certified accuracy {100 * check.certified_accuracy:.2f} % ({check.certified_merged}/{check.total}; "
        f"incomplete methods alone {check.certified_incomplete}), falsified {check.falsified}"
    )
    for line in check.coverage_lines():
        _say(line)
    if check.contradictions:
        shown = "; ".join(check.contradictions[:10])
        raise SoundnessError(f"{len(check.contradictions)} contradictions: {shown}")
    if check.rejected:  # a verifier's sat that does not hold is a wrong answer, not a warning
        from adcert_plugin.errors import InstanceError

        shown = "; ".join(check.rejected[:5]) + (
            f"; and {len(check.rejected) - 5} more" if len(check.rejected) > 5 else ""
        )
        raise InstanceError(
            f"{len(check.rejected)} sat answers in the results were rejected (counted as errors, "
            f"not as falsified): {shown}"
        )

"""Quickstart: teacher → AD-CERT student → certified-accuracy report → VNN-COMP benchmark → verifier.

    make quickstart                       # sets up .venv, then runs this file
    python examples/quickstart.py --out-dir runs/quickstart --data-dir ../shared/data

Everything below is the Python API; each step prints the equivalent command line. On a 2-core
CPU the whole run takes a few minutes: MNIST ε = 0.1, the small CNN, the `mnist-small-*` presets.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

from adcert_plugin.errors import AdcertError
from adcert_plugin.evaluation import evaluate
from adcert_plugin.training import build_config, train

log = logging.getLogger("quickstart")


def say(step: str, command: str) -> None:
    print(f"\n== {step}\n   $ {command}", file=sys.stderr, flush=True)


def train_run(preset: str, out_dir: Path, data_dir: str | None, teacher: Path | None, epochs: int | None):
    flags = {
        "out_dir": str(out_dir),
        "data.data_dir": data_dir,
        "teacher": str(teacher) if teacher else None,
        "schedule.epochs": epochs,
    }
    cmd = f"adcert-train --preset {preset} --out-dir {out_dir}" + (f" --teacher {teacher}" if teacher else "")
    say(f"train {preset}", cmd)
    if (out_dir / "model.pt").is_file():
        print(f"   (reusing the finished run in {out_dir})", file=sys.stderr)
        return out_dir / "model.pt"
    cfg = build_config(preset=preset, flags=flags)
    result = train(cfg, force=out_dir.exists())
    print(result.describe(), file=sys.stderr)
    return result.run_dir / "model.pt"


def verify(student: Path, out_dir: Path, data_dir: str | None, n: int, timeout: float, end: int):
    """Export a VNN-COMP benchmark of the images the eval covered (``[0, end)``) and run NeuralSAT on it
    (its venv: `make neuralsat`)."""
    from vnncomp.export import export_benchmark

    bench = out_dir / "benchmark"
    # Only samples PGD does not break and CROWN does not already certify: what is left for a complete
    # verifier to decide (a benchmark of certified samples would ask it nothing).
    say(
        "export a VNN-COMP benchmark",
        f"adcert-export {student} --out-dir {bench} --n {n} --end {end} --filter-pgd --skip-certified CROWN --force",
    )
    if _same_export(bench, student, n, end, timeout):
        print(f"   (reusing the benchmark in {bench}: same student and settings)", file=sys.stderr)
    else:
        info = export_benchmark(
            student,
            bench,
            data_dir=data_dir,
            n=n,
            timeout=timeout,
            force=True,
            end=end,
            filter_pgd=True,
            skip_certified="CROWN",
        )
        print(
            f"   {len(info.instances)} properties, ONNX max |diff| {info.onnx_max_abs_diff:.1e}; "
            f"abCROWN configs: {bench / 'abcrown_gpu.yaml'}",
            file=sys.stderr,
        )
    from vnncomp.verifiers import verify_benchmark

    say("verify with NeuralSAT", f"adcert-verify {bench} --timeout {timeout:g} --jobs 2")
    results, _table = verify_benchmark(bench, "neuralsat", timeout=timeout, jobs=2)
    return bench, results


def _same_export(bench: Path, student: Path, n: int, end: int, timeout: float) -> bool:
    """An earlier quickstart's benchmark of this very student (its verifier answers are reused)."""
    import json

    from adcert_plugin.io import sha256_file

    try:
        params = json.loads((bench / "benchmark.json").read_text())
    except (OSError, ValueError):
        return False
    wanted = {
        "checkpoint_sha256": sha256_file(student),
        "n": n,
        "end": end,
        "timeout": float(timeout),
        "filter_pgd": True,
        "skip_certified": "CROWN",
    }
    return all(params.get(k) == v for k, v in wanted.items())


def cross_check(eval_dir: Path, bench: Path) -> None:
    """Verifier answers must agree with the attack and the incomplete certificates."""
    from vnncomp.results import report_benchmark

    say("cross-check verifier and eval report", f"adcert-report {eval_dir / 'samples.jsonl'} {bench}")
    check = report_benchmark(eval_dir / "samples.jsonl", bench)  # raises SoundnessError on a contradiction
    print(f"   consistent: {check.total} eval samples, no contradiction", file=sys.stderr)
    for line in check.coverage_lines():  # answers outside the eval rows are checked against the benchmark only
        print(f"   {line}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("runs/quickstart"))
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("ADCERT_DATA"),
        help="data folder [default: $ADCERT_DATA, else ../shared/data beside the checkout, else ./data]",
    )
    parser.add_argument("--epochs", type=int, default=None, help="override the presets' epochs (shorter runs)")
    parser.add_argument("--n-eval", type=int, default=1000, help="test samples to certify")
    parser.add_argument("--n-verify", type=int, default=8, help="properties to export and verify")
    parser.add_argument("--timeout", type=float, default=30.0, help="verifier seconds per property")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, format="   %(message)s")
    logging.getLogger("adcert_plugin.training.trainer").setLevel(logging.INFO)  # one line per epoch
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    start = time.perf_counter()
    try:
        teacher = train_run("mnist-small-teacher", args.out_dir / "teacher", args.data_dir, None, args.epochs)
        student = train_run("mnist-small-adcert", args.out_dir / "student", args.data_dir, teacher, args.epochs)
        eval_dir = args.out_dir / "eval"
        say("certify", f"adcert-eval {student} --methods IBP,CROWN --end {args.n_eval} --out-dir {eval_dir}")
        report = evaluate(
            student,
            data_dir=args.data_dir,
            methods=("IBP", "CROWN"),
            start=0,
            end=args.n_eval,
            out_dir=eval_dir,
            overwrite=True,
        )
        bench, results = verify(student, args.out_dir, args.data_dir, args.n_verify, args.timeout, args.n_eval)
        if results:
            cross_check(eval_dir, bench)
    except AdcertError as err:
        print(f"Error: {type(err).__name__}: {err}", file=sys.stderr)
        return err.exit_code
    print_table(report, results, time.perf_counter() - start)
    return 0


def print_table(report, results, seconds: float) -> None:
    cert = report.certified_acc
    counts = {word: sum(r.result == word for r in results) for word in ("unsat", "sat", "timeout", "error")}
    lines = [
        "",
        f"AD-CERT student, MNIST, eps {report.summary.get('eps')}, first {report.summary['n']} test images",
        "| metric | value |",
        "|---|---|",
        f"| standard accuracy | {100 * report.standard_acc:.1f}% |",
        f"| PGD-40 accuracy | {100 * report.pgd_acc:.1f}% |",
        f"| certified accuracy (IBP) | {100 * cert.get('IBP', float('nan')):.1f}% |",
        f"| certified accuracy (IBP → CROWN) | {100 * cert.get('CROWN', float('nan')):.1f}% |",
    ]
    if results:
        lines.append(
            f"| NeuralSAT on {len(results)} exported properties | "
            + ", ".join(f"{v} {k}" for k, v in counts.items() if v)
            + " |"
        )
    lines.append(f"\ntotal time {seconds:.0f} s")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())

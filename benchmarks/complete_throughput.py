"""Complete certification of a test set: the cascade, then alpha-beta-CROWN in bulk, against NeuralSAT.

    python benchmarks/complete_throughput.py runs/quickstart/student/model.pt --end 10000 --eps 0.1 \\
        --out benchmarks/results/complete_throughput_cpu.txt

Runs ``adcert-eval CHECKPOINT --end N --complete V --complete-timeout T --jobs 2`` once per verifier,
one after the other on the same machine (abCROWN in csv mode, adcert-eval's default: one process per
job over its share of the undecided samples; NeuralSAT forked warm per sample), each into a fresh
folder, with the threads the caller's environment gives (the cascade uses every core, each
verifier process its share), and prints
one row per verifier: wall time of the whole command, the cascade's share, the answers, certified
(complete) and "robust at most". The machine's load average is printed before and after each run:
a benchmark on a machine shared with other work is contended, and the table says so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def run(checkpoint: Path, out: Path, verifier: str, args) -> dict:
    if out.exists():
        shutil.rmtree(out)
    command = [
        str(BIN / "adcert-eval"),
        str(checkpoint),
        "--end",
        str(args.end),
        "--eps",
        str(args.eps),
        "--methods",
        "IBP,CROWN",
        "--complete",
        verifier,
        "--complete-timeout",
        str(args.timeout),
        "--jobs",
        str(args.jobs),
        "--out-dir",
        str(out),
    ]
    if args.bounds_first:
        command.append("--bounds-first")
    if verifier == "abcrown":
        command += ["--abcrown-attack", args.abcrown_attack]
    if verifier == "abcrown" and args.abcrown_chunk:
        command += ["--complete-chunk", str(args.abcrown_chunk)]
    load = os.getloadavg()[0]
    start = time.monotonic()
    proc = subprocess.run(
        command,
        capture_output=True,
        text=True,
    )  # threads as the caller set them: the cascade uses every core, each verifier process its share
    wall = time.monotonic() - start
    (out.parent / f"{verifier}.stderr.txt").write_text(proc.stderr)
    summary = json.loads((out / "summary.json").read_text())
    c = summary.get("complete") or {}
    cascade = summary["seconds"]["total"]
    return {
        "verifier": verifier,
        "exit": proc.returncode,
        "wall": wall,
        "cascade": cascade,
        "complete_wall": c.get("wall_seconds"),
        "undecided": c.get("undecided"),
        "counts": c.get("counts", {}),
        "certified": 100 * c.get("certified_acc", 0.0),
        "upper": 100 * c.get("upper_acc", 0.0),
        "load_before": load,
        "load_after": os.getloadavg()[0],
        "command": " ".join(command[1:]),
        "answers": answers_of(out),
    }


def table(rows: list[dict], args) -> str:
    lines = [
        f"complete certification, test images [0, {args.end}), eps {args.eps}, --complete-timeout "
        f"{args.timeout:g} s, --jobs {args.jobs}{', --bounds-first' if args.bounds_first else ''}; "
        f"{os.cpu_count()} CPUs; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"{'verifier':<10}{'exit':>5}{'wall s':>9}{'cascade s':>11}{'verifier s':>12}{'undecided':>10}"
        f"{'unsat':>7}{'sat':>6}{'timeout':>8}{'error':>7}{'certified %':>13}{'robust<=%':>11}{'load':>12}",
    ]
    for r in rows:
        n = r["counts"]
        verifier_s = r["complete_wall"] if r["complete_wall"] is not None else float("nan")
        lines.append(
            f"{r['verifier']:<10}{r['exit']:>5}{r['wall']:>9.1f}{r['cascade']:>11.1f}{verifier_s:>12.1f}"
            f"{r['undecided'] or 0:>10}{n.get('unsat', 0):>7}{n.get('sat', 0):>6}{n.get('timeout', 0):>8}"
            f"{n.get('error', 0):>7}{r['certified']:>13.2f}{r['upper']:>11.2f}"
            f"{r['load_before']:>6.1f}/{r['load_after']:<5.1f}"
        )
    busiest = max(max(r["load_before"], r["load_after"]) for r in rows)
    if busiest > (os.cpu_count() or 1) + 1:  # the run itself: a verifier per core and the waiting driver
        lines.append(
            f"CONTENDED: the load average reached {busiest:.1f} on {os.cpu_count()} CPUs (other work "
            "shared the machine); the walls are upper bounds of what an idle machine gives"
        )
    lines += [f"  {r['verifier']}: adcert-eval {r['command']}" for r in rows]
    if len(rows) == 2:
        lines.append(agreement(rows[0]["answers"], rows[1]["answers"], rows[0]["verifier"], rows[1]["verifier"]))
    return "\n".join(lines)


def answers_of(out: Path) -> dict[int, str]:
    """Sample index -> the verifier's answer, read as the second-opinion tool reads an evaluation."""
    from vnncomp.verifiers.second_opinion import answers_of_eval

    return answers_of_eval(out)[1] if (out / "config.json").is_file() else {}


def agreement(a: dict[int, str], b: dict[int, str], name_a: str, name_b: str) -> str:
    """Where both decided (sat or unsat): how many answers agree; every disagreement listed."""
    both = sorted(i for i in set(a) & set(b) if a[i] in ("sat", "unsat") and b[i] in ("sat", "unsat"))
    differ = [i for i in both if a[i] != b[i]]
    text = (
        f"cross-check: {name_a} and {name_b} both decided {len(both)} samples; they agree on {len(both) - len(differ)}"
    )
    return text + (f"; they DISAGREE on {differ}" if differ else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--end", type=int, default=10000)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--abcrown-chunk", type=int, default=None, help="default: adcert-eval's (512 in csv mode)")
    parser.add_argument("--verifiers", default="abcrown,neuralsat")
    parser.add_argument("--abcrown-attack", default="diversed", choices=("pgd", "diversed"))
    parser.add_argument(
        "--bounds-first", action="store_true", help="adcert-eval --bounds-first: PGD only on what the bounds leave open"
    )
    parser.add_argument("--work", type=Path, default=Path("runs/complete_throughput"))
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    rows = []
    for verifier in args.verifiers.split(","):
        rows.append(run(args.checkpoint, args.work / verifier, verifier, args))
        print(table(rows, args), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table(rows, args) + "\n")


if __name__ == "__main__":
    main()

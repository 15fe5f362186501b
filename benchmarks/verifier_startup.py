"""NeuralSAT per instance: a fresh interpreter against a fork of a warm one (``vnncomp/verifiers/warm.py``).

    python benchmarks/verifier_startup.py BENCH --timeout 10 --rounds 2

BENCH is an exported benchmark (``adcert-export``, or the ``complete/neuralsat`` folder an
``adcert-eval --complete`` leaves). Every round runs all its instances once each way, as one
``run_neuralsat`` call (so the forked way pays its server's imports once per call, as in use),
the way that goes first alternating between rounds. Per way it prints the total wall time of the
calls, the median wall time per instance, the median time NeuralSAT reports for itself, their
difference (start-up and imports), and the answers; answers that differ between the ways are
listed (a timeout against an answer can be load: NeuralSAT's attack has a clock).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from vnncomp.verifiers import run_neuralsat

WAYS = {"fresh": "0", "forked": "1"}


def _own_seconds(note: str) -> float | None:
    found = re.search(r"reports ([0-9.]+) s", note or "")
    return float(found.group(1)) if found else None


def _run(bench: Path, way: str, names: list[str], timeout: float):
    os.environ["ADCERT_VERIFIER_FORK"] = WAYS[way]
    start = time.monotonic()
    results = run_neuralsat(bench, timeout=timeout, instances=names, force=True)
    return time.monotonic() - start, list(zip(names, results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", type=Path)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--instances", type=int, default=None, help="the first N instances (default: all)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        copies = {way: Path(shutil.copytree(args.bench, Path(tmp) / way)) for way in WAYS}
        names = [
            line.split(",")[1].rsplit("/", 1)[-1].removesuffix(".vnnlib")
            for line in (args.bench / "instances.csv").read_text().splitlines()
            if line.strip()
        ]
        names = names[: args.instances] if args.instances else names
        rows, totals = {way: [] for way in WAYS}, dict.fromkeys(WAYS, 0.0)
        for round_ in range(args.rounds):
            for way in list(WAYS) if round_ % 2 == 0 else list(WAYS)[::-1]:
                seconds, done = _run(copies[way], way, names, args.timeout)
                rows[way] += done
                totals[way] += seconds
    print(
        f"NeuralSAT on {len(names)} instances of {args.bench}, timeout {args.timeout:g} s, {args.rounds} round(s), "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    print("| way | runs | total wall s | median wall s | median own s | median wall − own s | answers |")
    print("|---|---|---|---|---|---|---|")
    for way, done in rows.items():
        walls = [r.seconds for _, r in done]
        owns = [o for _, r in done if (o := _own_seconds(r.note)) is not None]
        gaps = [r.seconds - o for _, r in done if (o := _own_seconds(r.note)) is not None]
        answers = {}
        for _, r in done:
            answers[r.result] = answers.get(r.result, 0) + 1
        print(
            f"| {way} | {len(done)} | {totals[way]:.1f} | {statistics.median(walls):.2f} | "
            f"{statistics.median(owns) if owns else float('nan'):.2f} | "
            f"{statistics.median(gaps) if gaps else float('nan'):.2f} | "
            f"{', '.join(f'{k} {v}' for k, v in sorted(answers.items()))} |"
        )
    differ = [
        (name, a.result, b.result) for (name, a), (_, b) in zip(rows["fresh"], rows["forked"]) if a.result != b.result
    ]
    print(
        "answers that differ (fresh, forked): "
        + ("none" if not differ else "; ".join(f"{n}: {a}, {b}" for n, a, b in differ))
    )


if __name__ == "__main__":
    main()

"""A second verifier on a sample of a study's final answers: is the verifier of record right, and
is it the limit?

    python examples/study_crosscheck.py --preset ctbench-mnist-0.1 --second neuralsat --per-run 20

For every final evaluation of the study (each selected setting, each seed; the framework arm's
too), up to ``--per-run`` instances the verifier of record answered (seeded) go to ``--second``
at ``--timeout``. Writes ``crosscheck.md`` and ``crosscheck.json`` into the study's folder: per
method, the answers both decided and whether they agree, and the samples only one of them
decided (the verifier of record's timeouts the other solved say the record is verifier-limited).
A disagreement where both decided exits 3: one of the two verifiers is wrong.
"""

from __future__ import annotations

import json
import logging
import sys
from collections import defaultdict
from pathlib import Path

import click

from adcert_plugin.cli.errors import handle_errors
from adcert_plugin.errors import SoundnessError
from adcert_plugin.experiments.study import get_study, list_studies
from adcert_plugin.io import atomic_write_text
from vnncomp.verifiers.second_opinion import second_opinion


def final_evals(out_dir: Path, methods) -> list[tuple[str, Path]]:
    """(method, eval-test folder) of every evaluated run: selected grid points, finals, framework arms."""
    found = []
    for folder in sorted(out_dir.glob("seed*/*/*/eval-test")):
        point = folder.parent.name
        method = next((m for m in sorted(methods, key=len, reverse=True) if point.startswith(f"{m}-")), None)
        kind = folder.parent.parent.name  # grid (the selected point), final, or framework-<name>
        label = method if kind in ("grid", "final") else f"{method} ({kind.removeprefix('framework-')})"
        if method is not None and (folder / "complete.jsonl").is_file():
            found.append((label, folder))
    return found


def render(rows: list[dict], second: str) -> str:
    by_method: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_method[r["method"]].append(r)
    lines = [
        f"# Second opinion: {second} on a sample of each final evaluation's answers",
        "",
        "| method (runs) | sampled | both decided | agree | only the verifier of record decided | "
        f"only {second} decided | verifier-of-record timeouts in the sample |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, found in by_method.items():
        total = {key: sum(r[key] for r in found) for key in ("both_decided", "agree", "only_of_record", "only_second")}
        timeouts = sum(p["of_record"] == "timeout" for r in found for p in r["pairs"])
        lines.append(
            f"| {method} ({len(found)}) | {sum(len(r['pairs']) for r in found)} | {total['both_decided']} | "
            f"{total['agree']} | {total['only_of_record']} | {total['only_second']} | {timeouts} |"
        )
    wrong = [(r["eval_dir"], d) for r in rows for d in r["disagreements"]]
    lines += ["", f"Disagreements where both decided: {len(wrong)}"]
    lines += [f"- {where}: sample {d['index']}: {d['of_record']} vs {d['second']}" for where, d in wrong]
    return "\n".join(lines) + "\n"


@click.command(epilog="\b\nExample:\n  python examples/study_crosscheck.py --preset ctbench-mnist-0.1 --per-run 20")
@click.option("--preset", type=click.Choice(list_studies()), required=True, help="The study.")
@click.option(
    "--out-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="The study's folder [default: runs/study-<preset>].",
)
@click.option("--second", default="neuralsat", show_default=True, help="The second verifier.")
@click.option("--per-run", type=click.IntRange(min=1), default=20, show_default=True, help="Instances per evaluation.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the sample.")
@handle_errors
def main(preset, out_dir, second, per_run, timeout, seed):
    """Run a second verifier on a sample of every final evaluation of a study; compare the answers."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s", force=True)
    cfg = get_study(preset)
    out_dir = out_dir or Path("runs") / f"study-{preset}"
    evals = final_evals(out_dir, cfg.methods)
    if not evals:
        raise click.UsageError(f"{out_dir} holds no finished final evaluation with a complete verifier yet")
    rows = []
    for method, folder in evals:
        opinion = second_opinion(folder, second, per_run, timeout, seed=seed)
        rows.append(dict(opinion.record(), method=method))
    atomic_write_text(out_dir / "crosscheck.json", json.dumps(rows, indent=1) + "\n")
    page = render(rows, second)
    atomic_write_text(out_dir / "crosscheck.md", page)
    click.echo(page)
    if any(r["disagreements"] for r in rows):
        raise SoundnessError(f"{second} and the verifier of record disagree; see {out_dir / 'crosscheck.md'}")


if __name__ == "__main__":
    main()

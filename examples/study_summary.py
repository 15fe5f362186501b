"""The tuned comparison across benchmarks on one page (issue 14's question, benchmark by benchmark).

    python examples/study_summary.py examples/results/study-mnist-0.1 examples/results/study-mnist-0.3 \
        examples/results/study-fmnist-0.1 --out examples/results/tuned-comparison.md

Reads each folder's results.json (a study that has not finished is named as such, never
dropped) and writes the page and, beside it, the same numbers as JSON (``.json``) and a forest
plot of every pair's difference with its interval (``.png``).
Refuses to replace an existing page that differs unless --force.
"""

from __future__ import annotations

from pathlib import Path

import click

from adcert_plugin.cli import handle_errors
from adcert_plugin.experiments.study import load_benchmark, plot_pairs, render_summary, summary_json
from adcert_plugin.io import atomic_write_text


@click.command(context_settings={"show_default": True, "max_content_width": 100})
@click.argument("folders", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the page here (and its numbers to the same name with .json); default: print it.",
)
@click.option("--force", is_flag=True, help="Replace an existing --out page whose content differs.")
@handle_errors
def main(folders, out, force):
    """One table per question across the benchmarks' results.json."""
    benchmarks = [load_benchmark(folder) for folder in folders]
    page = render_summary(benchmarks)
    if out is None:
        click.echo(page, nl=False)
        return
    if out.exists() and out.read_text() != page and not force:
        raise click.UsageError(f"{out} exists with other content; pass --force to replace it")
    atomic_write_text(out, page)
    atomic_write_text(out.with_suffix(".json"), summary_json(benchmarks))
    plot_pairs(benchmarks, out.with_suffix(".png"))
    click.echo(f"wrote {out}, {out.with_suffix('.json')} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()

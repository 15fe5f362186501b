"""The tuned comparison, one command per benchmark (issue 14's protocol).

Per method, a grid selected on a validation holdout by complete-certified accuracy; the selected
setting retrained with every seed; each evaluated on the test split with PGD-40, IBP, CROWN and a
complete verifier. Writes results.json, results.md, plot.png and curves.png in --out-dir. Every
finished run and evaluation is reused: stop it at any point and run the same command again.

    python examples/study.py --preset mnist-0.1 --state-dir examples/results/study-mnist-0.1/state
                                                      # hours on 2 CPU cores; resumable, also from a fresh clone
    python examples/study.py --preset mnist-0.3
    python examples/study.py --preset fmnist-0.1
    python examples/study.py --preset smoke --out-dir /tmp/study-smoke   # the whole path in a minute
    python examples/study.py --preset mnist-0.1 --progress   # how far it got (progress.md); trains nothing
    python examples/study.py --preset mnist-0.1 --ray-address auto   # on a running Ray cluster (notes: Ray)

Each run is a Ray task: on a local Ray instance of --processes CPUs by default, started and
stopped by this command; on a cluster with --ray-address (or $RAY_ADDRESS), the run folders on
storage every node sees.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
import sys
from pathlib import Path

import click

from adcert_plugin.cli import handle_errors
from adcert_plugin.experiments.study import (
    get_study,
    list_studies,
    render_markdown,
    render_progress,
    restore,
    run_study,
    study_progress,
)
from adcert_plugin.io import atomic_write_text


@click.command(
    context_settings={"show_default": True, "max_content_width": 100},
    epilog="\b\nExample:\n  python examples/study.py --preset mnist-0.1 --out-dir runs/study-mnist-0.1",
)
@click.option("--preset", type=click.Choice(list_studies()), required=True, help="Benchmark preset.")
@click.option(
    "--out-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for the runs and results [default: runs/study-<preset>].",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    envvar="ADCERT_DATA",
    default=None,
    help="Folder holding the data sets [env: ADCERT_DATA].",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=None,
    help="Training processes at once, one torch thread each [default: the preset's].",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder of the study's state, committed as <folder>.tar.gz (unpacked when the folder holds no "
    "finished run): its finished runs are restored into --out-dir first, and every run that "
    "finishes is saved to it and packed (small files; model.pt only while the study needs it).",
)
@click.option(
    "--ray-address",
    envvar="RAY_ADDRESS",
    default=None,
    help="Run on this Ray cluster (auto, HOST:PORT or ray://HOST:PORT) instead of a local Ray instance "
    "of --processes CPUs [env: RAY_ADDRESS]; --out-dir must be on storage every node sees.",
)
@click.option(
    "--progress",
    is_flag=True,
    help="Train nothing: write <out-dir>/progress.md (every run's state and finished numbers) and print it.",
)
@handle_errors
def main(preset, out_dir, data_dir, processes, state_dir, ray_address, progress):
    """Select, retrain and evaluate every method of one benchmark; write tables and plots."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s", force=True)
    cfg = get_study(preset)
    if processes is not None:
        cfg = dataclasses.replace(cfg, processes=processes)
    if data_dir is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=str(data_dir)))
    out_dir = out_dir or Path("runs") / f"study-{preset}"
    command = shlex.join(["python", "examples/study.py", *(a for a in sys.argv[1:] if a != "--progress")])
    if progress:
        if state_dir is not None:
            restore(state_dir, out_dir)
        page = render_progress(study_progress(cfg, out_dir), command)
        atomic_write_text(Path(out_dir) / "progress.md", page)
        click.echo(page)
        return
    results = run_study(cfg, out_dir, command=command, state_dir=state_dir, ray_address=ray_address)
    click.echo(render_markdown(results))


if __name__ == "__main__":
    main()

"""The unified-setup comparison of methods.md Part A in one command.

One PGD teacher, then mtl-ibp, cc-ibp, cc-dist and ad-cert with the same seed, data, model,
schedule, attack and α (plus an α sweep), all evaluated the same way. Writes results.json,
results.md and plot.png in --out-dir and prints the table. A rerun reuses finished runs.

    python examples/unified_setup.py --preset cpu        # MNIST 0.1, small-cnn: < 1 h on 2 CPU cores
    python examples/unified_setup.py --preset paper      # CNN7, methods.md B.4.2 settings: a GPU job
    python examples/unified_setup.py --preset smoke --out-dir /tmp/unified-smoke
    python examples/unified_setup.py --preset cpu --extra-seeds 101,102   # + mean ± sd over 3 seeds
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
import sys
from pathlib import Path

import click
import torch

from adcert_plugin.cli import handle_errors
from adcert_plugin.cli.commands import DATA_DIR_HELP
from adcert_plugin.errors import ConfigError
from adcert_plugin.experiments import get_experiment, list_experiments, run_unified


def _numbers(text: str | None, kind: type, option: str, example: str) -> tuple | None:
    """Comma-separated numbers of ``kind``; '' or 'none' is the empty tuple; None stays None."""
    if text is None:
        return None
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(kind(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"{option} {text!r}: expected comma-separated {kind.__name__}s, e.g. {example}") from None


@click.command(
    context_settings={"show_default": True, "max_content_width": 100},
    epilog="\b\nExample:\n  python examples/unified_setup.py --preset cpu --data-dir ../shared/data",
)
@click.option("--preset", type=click.Choice(list_experiments()), default="cpu", help="Experiment preset.")
@click.option(
    "--out-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for the runs and results [default: runs/unified-<preset>].",
)
@click.option("--data-dir", type=click.Path(path_type=Path), envvar="ADCERT_DATA", default=None, help=DATA_DIR_HELP)
@click.option(
    "--alpha",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="The shared α of the main comparison [default: the preset's].",
)
@click.option(
    "--alphas",
    default=None,
    metavar="A,B,...",
    help="Extra α values of the sweep, for every method ('none': no sweep) [default: the preset's].",
)
@click.option(
    "--extra-seeds",
    default=None,
    metavar="S,T,...",
    help="Train the teacher and the shared-α students again with each seed and report mean ± sd "
    "('none': only the preset's seed) [default: the preset's].",
)
@click.option(
    "--device", type=click.Choice(["cpu", "cuda", "auto"]), default=None, help="Device [default: the preset's]."
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    help="torch CPU threads. 1 suits the small CPU models, and more threads than free cores "
    "slow torch down many-fold on a busy machine.",
)
@click.option("--force", is_flag=True, help="Retrain and re-evaluate every run, even finished ones.")
@handle_errors
def main(preset, out_dir, data_dir, alpha, alphas, extra_seeds, device, threads, force):
    """Train a teacher and four students under one setup, evaluate them, write a table and a plot."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s", force=True)
    torch.set_num_threads(threads)
    cfg = get_experiment(preset)
    changes = {
        "alpha": alpha,
        "sweep": _numbers(alphas, float, "--alphas", "0.01,0.5"),
        "extra_seeds": _numbers(extra_seeds, int, "--extra-seeds", "101,102"),
        "device": device,
    }
    cfg = dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None})
    if data_dir is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=str(data_dir)))
    out_dir = out_dir or Path("runs") / f"unified-{preset}"
    command = shlex.join(["python", "examples/unified_setup.py", *sys.argv[1:]])
    result = run_unified(cfg, out_dir, force=force, command=command)
    click.echo(result.table())
    click.echo(f"\nresults: {out_dir / 'results.md'}, {out_dir / 'results.json'}, {out_dir / 'plot.png'}", err=True)


if __name__ == "__main__":
    main()

"""Command-line entry points: thin wrappers that parse, build a config, call one API function.

Every ``AdcertError`` becomes one line ``Error: <Class>: <message>`` on stderr and exits with
the class's ``exit_code``; ``--debug`` keeps the traceback. Usage errors (a bad ``--loss``
choice, say) are one line too. Progress and summaries go to stderr.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import click

from .errors import OneLineCommand, command_args, handle_errors, on_interrupt, rerun_command
from .eval_command import PROTOCOLS, _report, eval_cmd  # noqa: F401 (adcert-eval's entry point lives here)
from .params import EPS_WHAT, Number
from .shared import DATA_DIR_HELP, setup_logging as _setup_logging


def _loss_names() -> list[str]:
    from ..losses import list_losses

    return list_losses()


TRAIN_EXAMPLE = """\b
Example:
  adcert-train --preset mnist-small-teacher --out-dir runs/teacher
  adcert-train --preset mnist-small-adcert --teacher runs/teacher/model.pt --out-dir runs/adcert
"""


@click.command(
    "adcert-train",
    cls=OneLineCommand,
    epilog=TRAIN_EXAMPLE,
    context_settings={"show_default": True, "max_content_width": 100},
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="YAML/JSON run config (strict: unknown keys are errors).",
)
@click.option("--preset", default=None, help="Named preset (paper settings or small CPU runs); see --list-presets.")
@click.option("--list-presets", is_flag=True, help="Print the preset names, each with its source, and exit.")
@click.option("--loss", type=click.Choice(_loss_names()), default=None, help="Training loss.")
@click.option("--teacher", type=click.Path(path_type=Path), default=None, help="Teacher checkpoint (model.pt).")
@click.option("--dataset", default=None, help="Data set name (mnist, cifar10, ...).")
@click.option("--data-dir", type=click.Path(path_type=Path), envvar="ADCERT_DATA", default=None, help=DATA_DIR_HELP)
@click.option(
    "--eps",
    type=Number(min=0.0, what=EPS_WHAT),
    default=None,
    help="Target (eval) eps, pixel space, in [0, 1], e.g. 0.1 or 2/255; the training eps is this × "
    "schedule.train_eps_mul.",
)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Number of epochs.")
@click.option("--out-dir", type=click.Path(path_type=Path), default=None, help="Run directory.")
@click.option("--seed", type=int, default=None, help="Random seed.")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default=None, help="Device.")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config field, e.g. --set optim.lr=1e-3 (repeatable; value parsed as YAML).",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out-dir from its last.pt.")
@click.option("--force", is_flag=True, help="Start afresh in an --out-dir that already holds a run.")
@handle_errors
def train_cmd(
    config_file,
    preset,
    list_presets,
    loss,
    teacher,
    dataset,
    data_dir,
    eps,
    epochs,
    out_dir,
    seed,
    device,
    sets,
    resume,
    force,
):
    """Train a (certifiably) robust model; writes config.yaml, metrics.jsonl, checkpoints, summary.json."""
    on_interrupt(lambda: "It was still starting: nothing was written.")  # until the run folder is known
    from ..training import build_config, list_presets as preset_names
    from ..training.presets import preset_source

    if list_presets:
        names = preset_names()
        width = max(map(len, names))
        click.echo("\n".join(f"{name:<{width}}  {preset_source(name)}" for name in names))
        return
    _setup_logging(bool(click.get_current_context().params.get("debug")))
    flags = {
        "loss.name": loss,
        "teacher": teacher,
        "data.dataset": dataset,
        "data.data_dir": data_dir,
        "schedule.eps": eps,
        "schedule.epochs": epochs,
        "out_dir": out_dir,
        "seed": seed,
        "device": device,
    }
    cfg = build_config(preset=preset, config_file=config_file, flags=flags, sets=sets, resume=resume)
    before = _file_id(Path(cfg.out_dir) / "last.pt")
    on_interrupt(lambda: _train_resume_hint(Path(cfg.out_dir), before))

    from ..training import train

    result = train(cfg, resume=resume, force=force)
    if result.is_main:
        click.echo(result.describe(), err=True)


def _file_id(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _train_resume_hint(out_dir: Path, before: tuple | None) -> str:
    if before is not None and _file_id(out_dir / "last.pt") == before:  # no new epoch: the old run is back
        return (
            f"No epoch of the new run had finished, so the run that was in {out_dir} is kept as it was; "
            "run the same command again to start over."
        )
    if (out_dir / "last.pt").is_file():
        again = rerun_command("adcert-train", command_args(), add=["--resume"], drop=["--force"])
        return f"{out_dir}/last.pt holds the last finished epoch; to continue from it: {again}"
    return "No epoch had finished, so nothing was kept; run the same command again to start over."


MERGE_EXAMPLE = """\b
Example:
  adcert-eval runs/adcert/model.pt --complete neuralsat --shard 0/2 --out-dir E   (one per K, anywhere)
  adcert-eval-merge E
"""


@click.command(
    "adcert-eval-merge",
    cls=OneLineCommand,
    epilog=MERGE_EXAMPLE,
    context_settings={"show_default": True, "max_content_width": 100},
)
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace an unsharded report already in OUT_DIR.")
@click.option("--json", "as_json", is_flag=True, help="Print the merged summary.json to stdout.")
@handle_errors
def merge_cmd(out_dir, overwrite, as_json):
    """Merge the shard-K-of-N folders of a sharded --complete run in OUT_DIR into one report there."""
    from ..evaluation import merge_shards

    _setup_logging(False)
    _report(lambda: merge_shards(out_dir, overwrite=overwrite), as_json)


LOSSES_EXAMPLE = """\b
Example:
  adcert-losses
  adcert-losses 'cc-*' --params
"""


@click.command(
    "adcert-losses", cls=OneLineCommand, epilog=LOSSES_EXAMPLE, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.argument("pattern", default="*")
@click.option("--params", is_flag=True, help="Also list each loss's hyperparameters and defaults.")
@handle_errors
def losses_cmd(pattern, params):
    """List the registered loss plugins (built-in and from the adcert.losses entry points)."""
    import dataclasses
    import typing

    from ..errors import RegistryError
    from ..losses import create_loss, describe_losses

    losses = describe_losses()
    matching = {name: text for name, text in losses.items() if fnmatch.fnmatch(name, pattern)}
    if not matching:
        raise RegistryError(
            f"no registered loss matches {pattern!r}; the losses are {', '.join(losses)} "
            "(a pattern is shell-style, e.g. 'cc-*')"
        )
    for name, description in matching.items():
        click.echo(f"{name:10s} {description}")
        if params:
            loss = create_loss(name)
            needs = ", ".join(sorted(loss.needs)) or "-"
            click.echo(f"{'':10s} needs: {needs}")
            hints = typing.get_type_hints(type(loss.config))
            for field in dataclasses.fields(loss.config):
                kind = hints.get(field.name)
                choices = typing.get_args(kind) if typing.get_origin(kind) is typing.Literal else ()
                note = f"  (one of {', '.join(map(repr, choices))})" if choices else ""
                if field.metadata.get("extension"):
                    note += "  [adcert extension, not the paper's]"
                click.echo(f"{'':10s} {field.name} = {getattr(loss.config, field.name)!r}{note}")

"""``adcert-eval``: clean / PGD / bound-certified accuracy, then optionally a complete verifier.

A thin wrapper over ``adcert_plugin.evaluation.evaluate``; ``--protocol papers`` fills in the
certified-training papers' certification settings. ``report_step`` prints a report's table
(also for adcert-eval-merge).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import click

from .errors import OneLineCommand, command_args, handle_errors, on_interrupt, rerun_command
from .params import EPS_WHAT, Number
from .shared import DATA_DIR_HELP, setup_logging as _setup_logging

EVAL_EXAMPLE = """\b
Example:
  adcert-eval runs/adcert/model.pt --eps 0.1 --methods IBP,CROWN --end 1000 --json
  adcert-eval runs/adcert/model.pt --end 1000 --complete neuralsat --complete-timeout 30 --jobs 2
  adcert-eval runs/adcert/model.pt --complete --shard 0/4 --out-dir E   (then adcert-eval-merge E)
"""


# The protocol of the certified-training papers (CTBench, CTRAIN, AD-CERT's code): the cheap bounds
# combined per margin, a strong attack, then alpha-beta-CROWN with a long limit.
PROTOCOLS = {
    "papers": {
        "methods": ("IBP", "CROWN"),
        "pgd_steps": 100,
        "pgd_restarts": 30,
        "complete": "abcrown",
        "complete_timeout": 1000.0,
        "abcrown_mode": "csv",
        "bounds_first": True,
    }
}


@click.command(
    "adcert-eval",
    cls=OneLineCommand,
    epilog=EVAL_EXAMPLE,
    context_settings={"show_default": True, "max_content_width": 100},
)
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--dataset", default=None, help="Data set name; default the checkpoint's.")
@click.option("--data-dir", type=click.Path(path_type=Path), envvar="ADCERT_DATA", default=None, help=DATA_DIR_HELP)
@click.option(
    "--eps",
    type=Number(what=EPS_WHAT),
    default=None,
    help="Pixel-space eps in (0, 1], e.g. 0.1 or 2/255; default the checkpoint's target (eval) eps.",
)
@click.option(
    "--methods",
    multiple=True,
    default=("IBP", "CROWN"),
    help="Bound methods, comma list or repeated; run cheap to costly: IBP, CROWN-IBP, CROWN, alpha-CROWN.",
)
@click.option("--start", type=click.IntRange(min=0), default=None, help="First test index (default 0).")
@click.option("--end", type=click.IntRange(min=1), default=None, help="End test index, exclusive (default: all).")
@click.option(
    "--n", type=click.IntRange(min=1), default=None, help="Seeded random subset of N samples of [start, end)."
)
@click.option("--seed", type=int, default=0, help="Seed for --n and the attack's random starts.")
@click.option("--pgd-steps", type=click.IntRange(min=1), default=40, help="PGD steps.")
@click.option("--pgd-restarts", type=click.IntRange(min=1), default=1, help="PGD random restarts.")
@click.option(
    "--pgd-step-size",
    type=Number(min=0, min_open=True),
    default=0.035,
    help="PGD step, relative to the box half-width.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=256, help="Samples per block.")
@click.option(
    "--out-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Report folder [default: <checkpoint folder>/eval-<eps>].",
)
@click.option("--resume", is_flag=True, help="Continue the report in --out-dir (skips samples already done).")
@click.option("--overwrite", is_flag=True, help="Replace a report already in --out-dir.")
@click.option("--arch", default=None, help="Model name for a plain state_dict checkpoint (needs --dataset).")
@click.option(
    "--device", default=None, help="cpu, cuda, cuda:N or auto [default: auto: cuda when available, else cpu]."
)
@click.option(
    "--complete",
    "complete",
    is_flag=False,
    flag_value="neuralsat",
    default=None,
    metavar="[VERIFIER]",
    help="Send the samples the bounds leave undecided to a complete verifier: neuralsat (the "
    "default when no name is given), abcrown, marabou (unsound on padded CNNs).",
)
@click.option(
    "--complete-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    help="Seconds per sample for --complete; a timeout counts as not certified. A verifier still "
    "running 5 s later is killed (started afresh, not forked: plus its imports).",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    help="Samples verified in parallel (--complete): above 1, each sample is a task on a local Ray instance "
    "of N CPUs (or on --ray-address's cluster, N at a time).",
)
@click.option(
    "--ray-address",
    envvar="RAY_ADDRESS",
    default=None,
    help="Verify on this Ray cluster (auto, HOST:PORT or ray://HOST:PORT), --jobs samples at a time "
    "[env: RAY_ADDRESS]; --out-dir must be on storage every node sees.",
)
@click.option(
    "--complete-chunk",
    type=click.IntRange(min=1),
    default=None,
    help="Samples per verifier call, answers saved after each [default: max(8, 4 x jobs)]; abCROWN's csv "
    "mode pays its start-up once per call, so larger chunks are faster there (without Ray).",
)
@click.option(
    "--shard",
    default=None,
    metavar="K/N",
    help="Verify only the undecided samples at positions = K mod N (K from 0), into "
    "<out-dir>/shard-K-of-N; combine the N shards with adcert-eval-merge.",
)
@click.option("--complete-device", type=click.Choice(["cpu", "gpu"]), default="cpu", help="Device of the verifier.")
@click.option(
    "--neuralsat-python",
    type=click.Path(path_type=Path),
    envvar="ADCERT_NEURALSAT_PYTHON",
    default=None,
    help="Interpreter of NeuralSAT's venv [env: ADCERT_NEURALSAT_PYTHON; default: .venv-neuralsat].",
)
@click.option(
    "--abcrown",
    type=click.Path(path_type=Path),
    envvar="ADCERT_ABCROWN",
    default=None,
    help="alpha-beta-CROWN checkout [env: ADCERT_ABCROWN; default: the one `make abcrown` made].",
)
@click.option(
    "--abcrown-python",
    type=click.Path(path_type=Path),
    envvar="ADCERT_ABCROWN_PYTHON",
    default=None,
    help="Interpreter of abCROWN's own environment [env: ADCERT_ABCROWN_PYTHON; default: .venv-abcrown].",
)
@click.option(
    "--abcrown-mode",
    type=click.Choice(["single", "csv"]),
    default="csv",
    help="abCROWN: one process per chunk of samples and job (csv, the default: start-up paid once), or one "
    "per sample (single).",
)
@click.option(
    "--abcrown-attack",
    type=click.Choice(["pgd", "diversed"]),
    default="pgd",
    help="abCROWN's attack before branch and bound: plain PGD x 30 restarts, or diversified PGD x 100 (finds "
    "more counterexamples, but can spend more than the timeout on each property).",
)
@click.option(
    "--bounds-first",
    is_flag=True,
    help="Bound first and attack only the samples no bound certifies (the papers' order; much faster on a "
    "strong network); by default every correctly classified sample is attacked, so every bound also faces "
    "the attack.",
)
@click.option(
    "--protocol",
    type=click.Choice(sorted(PROTOCOLS)),
    default=None,
    help="The papers' certification protocol: IBP and CROWN (the better bound on each margin), PGD 100 "
    "steps x 30 restarts on what the bounds leave open, then alpha-beta-CROWN with 1000 s per sample (csv mode); "
    "options given "
    "explicitly win.",
)
@click.option("--json", "as_json", is_flag=True, help="Print summary.json to stdout.")
@handle_errors
def eval_cmd(
    checkpoint,
    dataset,
    data_dir,
    eps,
    methods,
    start,
    end,
    n,
    seed,
    pgd_steps,
    pgd_restarts,
    pgd_step_size,
    batch_size,
    out_dir,
    resume,
    overwrite,
    arch,
    device,
    complete,
    complete_timeout,
    jobs,
    ray_address,
    complete_chunk,
    shard,
    complete_device,
    neuralsat_python,
    abcrown,
    abcrown_python,
    abcrown_mode,
    abcrown_attack,
    bounds_first,
    protocol,
    as_json,
):
    """Certified accuracy: clean, PGD, bounds, then optionally a complete verifier; writes samples.jsonl and
    summary.json."""
    on_interrupt(lambda: "It was still starting: nothing was written.")  # until the report folder is known
    from ..attacks import AttackConfig
    from ..evaluation import CompleteConfig, evaluate, parse_shard
    from ..parallel import session

    if protocol:
        preset = _protocol(protocol)
        methods, pgd_steps, pgd_restarts = (
            preset.get("methods", methods),
            preset.get("pgd_steps", pgd_steps),
            preset.get("pgd_restarts", pgd_restarts),
        )
        complete, complete_timeout = preset.get("complete", complete), preset.get("complete_timeout", complete_timeout)
        abcrown_mode = preset.get("abcrown_mode", abcrown_mode)
        bounds_first = preset.get("bounds_first", bounds_first)
    _setup_logging(False)
    on_interrupt(
        lambda: (
            "Samples already evaluated are kept; to continue: "
            + rerun_command("adcert-eval", command_args(), add=["--resume"], drop=["--overwrite"])
        )
    )
    attack = AttackConfig(steps=pgd_steps, step_size=pgd_step_size, restarts=pgd_restarts)
    stage = None
    if complete is not None:
        options = {
            "device": complete_device,
            "neuralsat_python": neuralsat_python,
            "abcrown": abcrown,
            "abcrown_python": abcrown_python,
            "abcrown_mode": abcrown_mode,
            "abcrown_attack": abcrown_attack,
        }
        stage = CompleteConfig(
            verifier=complete,
            timeout=complete_timeout,
            jobs=jobs,
            chunk=complete_chunk,
            shard=parse_shard(shard) if shard else None,
            options={k: str(v) for k, v in options.items() if v is not None},
        )
    elif shard or jobs != 1:
        from ..errors import ConfigError

        raise ConfigError("--shard and --jobs apply to --complete [VERIFIER]; add --complete neuralsat (or another)")
    on_ray = stage is not None and (jobs > 1 or bool(ray_address))
    with session(ray_address, num_cpus=jobs) if on_ray else contextlib.nullcontext():
        _report(
            lambda: evaluate(
                checkpoint,
                dataset=dataset,
                data_dir=data_dir,
                eps=eps,
                methods=methods,
                start=start,
                end=end,
                n=n,
                seed=seed,
                attack=attack,
                batch_size=batch_size,
                out_dir=out_dir,
                resume=resume,
                overwrite=overwrite,
                arch=arch,
                device=device,
                complete=stage,
                attack_certified=not bounds_first,
            ),
            as_json,
        )


def _protocol(name: str) -> dict:
    """The preset's values for the options the user left at their defaults (explicit options win)."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    return {k: v for k, v in PROTOCOLS[name].items() if ctx.get_parameter_source(k) != ParameterSource.COMMANDLINE}


def _report(run, as_json: bool) -> None:
    """Run an evaluation step, print its table (also when it raises SoundnessError), then the JSON.

    Complete-verifier errors (no answer on some samples) exit 4 after the report, as adcert-verify does.
    """
    from ..errors import InstanceError, SoundnessError

    try:
        report = run()
    except SoundnessError as err:
        if getattr(err, "report", None) is not None:
            click.echo(err.report.table(), err=True)
        raise
    click.echo(report.table(), err=True)
    if as_json:
        click.echo(json.dumps(report.summary, indent=2))
    errors = [r for r in report.rows if (r.get("complete") or {}).get("result") == "error"]
    if errors:
        first = errors[0]
        raise InstanceError(
            f"the complete verifier failed on {len(errors)} samples (first: sample {first['index']}: "
            f"{first['complete']['note'] or 'no reason given'}); they count as not certified; "
            f"see {report.out_dir / 'complete'}"
        )

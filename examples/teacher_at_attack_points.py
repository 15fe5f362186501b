"""Is the teacher right at the points a distilled student is trained on?

Attacks each student as its training did (its recorded attack, at its training ε = schedule.eps ×
train_eps_mul, unless --eps is given) on the first --n images of a split, and prints the
student's and the teacher's accuracy there, the teacher's mean probability of the true class
and how often the two agree (``adcert_plugin.evaluation.teacher_agreement``).

    python examples/teacher_at_attack_points.py --teacher T/model.pt --student S1/model.pt --student S2/model.pt
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import torch

from adcert_plugin.attacks import AttackConfig
from adcert_plugin.bounds import InputBox
from adcert_plugin.cli import handle_errors
from adcert_plugin.data import get_data_spec, load_split
from adcert_plugin.errors import ConfigError
from adcert_plugin.evaluation import teacher_at_attack_points
from adcert_plugin.io import write_json
from adcert_plugin.training import load_model


def training_attack(record: dict, path: Path) -> tuple[float, AttackConfig]:
    """The ε and PGD settings a checkpoint was trained with, from its recorded config."""
    config = record.get("config") or {}
    schedule, attack = config.get("schedule") or {}, config.get("attack") or {}
    if "eps" not in schedule:
        raise ConfigError(f"{path} records no training schedule; pass --eps")
    eps = float(schedule["eps"]) * float(schedule.get("train_eps_mul", 1.0))
    fields = {k: attack[k] for k in ("steps", "step_size", "restarts", "objective", "eps_factor") if k in attack}
    return eps, AttackConfig(**fields)


@click.command()
@click.option("--teacher", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option(
    "--student",
    "students",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    required=True,
    help="a student checkpoint; repeat for several",
)
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True)
@click.option("--n", type=click.IntRange(min=1), default=1000, show_default=True, help="first N images of the split")
@click.option(
    "--eps",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="attack radius in pixels (default: each student's training ε)",
)
@click.option("--data-dir", type=click.Path(path_type=Path), envvar="ADCERT_DATA", default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="also write the rows here"
)
@click.option("--force", is_flag=True, help="replace an existing --json file")
@handle_errors
def main(teacher, students, split, n, eps, data_dir, seed, json_out, force):
    """Print one row per student: accuracies at its training attack points."""
    if json_out is not None and json_out.exists() and not force:
        raise ConfigError(f"{json_out} exists; pass --force to replace it")
    torch.set_num_threads(1)
    teacher_model, teacher_record = load_model(teacher)
    dataset = teacher_record.get("dataset")
    if not dataset:
        raise ConfigError(f"{teacher} records no data set; it was not saved by adcert training")
    spec = get_data_spec(dataset)
    x, y = load_split(dataset, split, data_dir)
    x, y = x[:n], y[:n].long()
    rows = []
    print("| student | ε | attack | student acc. % | teacher acc. % | mean p_T(y) | agree % |")
    print("|---|---|---|---|---|---|---|")
    for path in students:
        model, record = load_model(path)
        train_eps, attack = training_attack(record, path)
        radius = eps if eps is not None else train_eps
        box = InputBox.from_pixels(x, radius, spec.mean, spec.std)
        found = teacher_at_attack_points(teacher_model, model, box, y, attack, torch.Generator().manual_seed(seed))
        rows.append({"student": str(path), "eps": radius, "attack": dataclasses.asdict(attack), **vars(found)})
        print(
            f"| {path.parent.name} | {radius:g} | {attack.steps} step(s) | {100 * found.student_accuracy:.1f} | "
            f"{100 * found.teacher_accuracy:.1f} | {found.teacher_true_class_probability:.3f} | "
            f"{100 * found.agreement:.1f} |"
        )
    if json_out is not None:
        write_json(json_out, rows)  # atomic


if __name__ == "__main__":
    main()

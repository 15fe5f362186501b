"""CC-Dist against its base, cc-ibp: a short ablation at the `cpu` experiment's scale.

One PGD teacher and one setup (the unified `cpu` preset: MNIST ε = 0.1, small-cnn, 20k images,
10 epochs, α = 0.1, seed 100, expressive-losses conventions); cc-ibp as the base, then CC-Dist as
its authors define it (the α-interpolated IBP feature box against the teacher's clean features,
β = 5 on the per-feature mean, methods.md §5.2) with one knob changed at a time: β, the teacher's
point, and adcert's earlier point distances (mse / cosine at x_adv, teacher at x_adv: the variant
the committed tuned comparison measured, not the paper's loss). Besides
the accuracies, each run records the scale of its penultimate features against the teacher's,
which is what an MSE term pulls on. Writes results.json and results.md in --out-dir; finished
runs are reused.

    python examples/ccdist_ablation.py --out-dir runs/ccdist-ablation
    python examples/ccdist_ablation.py --train-subset 5000 --epochs 4   # a quarter-hour version on 2 cores
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
from adcert_plugin.data import get_data_spec, load_split, normalize
from adcert_plugin.experiments import get_experiment
from adcert_plugin.experiments.unified import _train_and_evaluate, machine_info
from adcert_plugin.io import atomic_write_text, write_json
from adcert_plugin.models import penultimate_features
from adcert_plugin.training import load_model

VARIANTS = {
    "cc-ibp (base)": ("cc-ibp", {}),
    "cc-dist box beta=5 (reference default)": ("cc-dist", {}),
    "cc-dist box beta=1": ("cc-dist", {"beta": 1.0}),
    "cc-dist box beta=25": ("cc-dist", {"beta": 25.0}),
    "cc-dist box teacher-at-x_adv (not the paper's)": ("cc-dist", {"teacher_point": "adv"}),
    "cc-dist point-mse beta=1 teacher-at-x_adv (adcert's earlier default)": (
        "cc-dist",
        {"distance": "mse", "beta": 1.0, "teacher_point": "adv"},
    ),
    "cc-dist point-cosine beta=1 teacher-at-x_adv (adcert variant)": (
        "cc-dist",
        {"distance": "cosine", "beta": 1.0, "teacher_point": "adv"},
    ),
}


def feature_scale(checkpoint: Path, dataset: str, data_dir, n: int = 1000) -> float:
    """Mean L2 norm of the penultimate features on the first ``n`` test images."""
    model, _ = load_model(checkpoint)
    x, _ = load_split(dataset, "test", data_dir)
    with torch.no_grad():
        return float(penultimate_features(model.eval(), normalize(x[:n], get_data_spec(dataset))).norm(dim=1).mean())


@click.command()
@click.option("--out-dir", type=click.Path(path_type=Path), default=Path("runs/ccdist-ablation"), show_default=True)
@click.option("--data-dir", type=click.Path(path_type=Path), envvar="ADCERT_DATA", default=None)
@click.option(
    "--train-subset",
    type=click.IntRange(min=100),
    default=None,
    help="Training images (default: the cpu preset's 20000).",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Student epochs, the ramp over the first half (default: the cpu preset's 10; the teacher gets half).",
)
@handle_errors
def main(out_dir, data_dir, train_subset, epochs):
    """Train the variants, evaluate them (IBP, CROWN on 1000 test images), write a table."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s", force=True)
    torch.set_num_threads(1)
    cfg = dataclasses.replace(get_experiment("cpu"), extra_seeds=(), sweep=())
    if data_dir is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=str(data_dir)))
    if train_subset is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, train_subset=train_subset))
    if epochs is not None:
        cfg = _shortened(cfg, epochs)
    teacher_dir = out_dir / "teacher"
    _, teacher = _train_and_evaluate(cfg, cfg.teacher_config(teacher_dir), None, True, False, True, False)
    rows = [
        {
            "variant": "teacher (pgd)",
            "standard": teacher.standard_acc,
            "pgd": teacher.pgd_acc,
            "certified": teacher.certified_acc,
            "feature_norm": feature_scale(teacher_dir / "model.pt", cfg.data.dataset, cfg.data.data_dir),
        }
    ]
    for name, (method, params) in VARIANTS.items():
        run_dir = out_dir / name.split(" (")[0].replace(" ", "_").replace("=", "")
        variant = dataclasses.replace(cfg, loss_params={method: params})
        train_cfg = variant.student_config(method, cfg.alpha, run_dir, teacher_dir / "model.pt")
        _, rec = _train_and_evaluate(variant, train_cfg, cfg.alpha, True, False, True, False)
        rows.append(
            {
                "variant": name,
                "standard": rec.standard_acc,
                "pgd": rec.pgd_acc,
                "certified": rec.certified_acc,
                "feature_norm": feature_scale(run_dir / "model.pt", cfg.data.dataset, cfg.data.data_dir),
            }
        )
    results = {
        "command": shlex.join(["python", "examples/ccdist_ablation.py", *sys.argv[1:]]),
        "setup": f"unified `cpu` preset ({cfg.data.train_subset} training images, {cfg.schedule.epochs} "
        "epochs), seed 100, alpha 0.1, 1000 test images",
        "rows": rows,
        "variants": {name: {"loss": m, "params": p} for name, (m, p) in VARIANTS.items()},
        "machine": machine_info(),
        "config": _recorded(cfg),
    }
    write_json(out_dir / "results.json", results)
    atomic_write_text(out_dir / "results.md", render(results))
    click.echo(render(results))


def _shortened(cfg, epochs: int):
    """The cpu preset with ``epochs`` student epochs (ramp over half) and a teacher of half as many."""
    teacher_epochs = max(1, epochs // 2)
    schedule = dataclasses.replace(cfg.schedule, epochs=epochs, eps_length_epochs=max(1, epochs // 2))
    optim = dataclasses.replace(cfg.optim, milestones=(epochs,))
    teacher = dataclasses.replace(
        cfg.teacher,
        schedule=dataclasses.replace(
            cfg.teacher.schedule, epochs=teacher_epochs, eps_length_epochs=max(1, teacher_epochs // 2)
        ),
        optim=dataclasses.replace(cfg.teacher.optim, milestones=(teacher_epochs,)),
    )
    return dataclasses.replace(cfg, schedule=schedule, optim=optim, teacher=teacher)


def _recorded(cfg) -> dict:
    """The config as results record it: no machine's data folder (paths are relative to the data root)."""
    record = cfg.to_dict()
    record["data"]["data_dir"] = None
    return record


def render(results: dict) -> str:
    lines = ["| variant | standard % | PGD % | IBP % | IBP → CROWN % | feature norm |", "|---|---|---|---|---|---|"]
    for r in results["rows"]:
        c = r["certified"]
        lines.append(
            f"| {r['variant']} | {100 * r['standard']:.1f} | {100 * r['pgd']:.1f} | {100 * c['IBP']:.1f} | "
            f"{100 * c['CROWN']:.1f} | {r['feature_norm']:.2f} |"
        )
    return "\n".join([f"Command: `{results['command']}`; {results['setup']}", "", *lines]) + "\n"


if __name__ == "__main__":
    main()

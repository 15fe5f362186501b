"""Why does cc-dist fall below its own base, cc-ibp? A short ablation at the `cpu` experiment's scale.

One PGD teacher and one setup (the unified `cpu` preset: MNIST ε = 0.1, small-cnn, 20k images,
10 epochs, α = 0.1, seed 100); cc-ibp as the base, then cc-dist with one knob changed at a time:
β (the weight of the feature term), the distance (mse on raw features vs cosine, which ignores
their scale), the feature point (adversarial vs clean input) and the projection head. Besides
the accuracies, each run records the scale of its penultimate features against the teacher's,
which is what an MSE term pulls on. Writes results.json and results.md in --out-dir; finished
runs are reused.

    python examples/ccdist_ablation.py --out-dir runs/ccdist-ablation
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
    "cc-dist beta=1 mse (default)": ("cc-dist", {"beta": 1.0}),
    "cc-dist beta=0.1 mse": ("cc-dist", {"beta": 0.1}),
    "cc-dist beta=1 cosine": ("cc-dist", {"beta": 1.0, "distance": "cosine"}),
    "cc-dist beta=1 mse clean point": ("cc-dist", {"beta": 1.0, "feature_point": "clean"}),
    "cc-dist beta=1 mse projection": ("cc-dist", {"beta": 1.0, "projection": "always"}),
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
@handle_errors
def main(out_dir, data_dir):
    """Train the variants, evaluate them (IBP, CROWN on 1000 test images), write a table."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s", force=True)
    torch.set_num_threads(1)
    cfg = dataclasses.replace(get_experiment("cpu"), extra_seeds=(), sweep=())
    if data_dir is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=str(data_dir)))
    teacher_dir = out_dir / "teacher"
    _, teacher = _train_and_evaluate(cfg, cfg.teacher_config(teacher_dir), None, True, False, True, False)
    rows = [{"variant": "teacher (pgd)", "standard": teacher.standard_acc, "pgd": teacher.pgd_acc,
             "certified": teacher.certified_acc,
             "feature_norm": feature_scale(teacher_dir / "model.pt", cfg.data.dataset, cfg.data.data_dir)}]
    for name, (method, params) in VARIANTS.items():
        run_dir = out_dir / name.split(" (")[0].replace(" ", "_").replace("=", "")
        variant = dataclasses.replace(cfg, loss_params={method: params})
        train_cfg = variant.student_config(method, cfg.alpha, run_dir, teacher_dir / "model.pt")
        _, rec = _train_and_evaluate(variant, train_cfg, cfg.alpha, True, False, True, False)
        rows.append({"variant": name, "standard": rec.standard_acc, "pgd": rec.pgd_acc,
                     "certified": rec.certified_acc,
                     "feature_norm": feature_scale(run_dir / "model.pt", cfg.data.dataset, cfg.data.data_dir)})
    results = {"command": shlex.join(["python", "examples/ccdist_ablation.py", *sys.argv[1:]]),
               "setup": "unified `cpu` preset, seed 100, alpha 0.1, 1000 test images", "rows": rows,
               "variants": {name: {"loss": m, "params": p} for name, (m, p) in VARIANTS.items()},
               "machine": machine_info(), "config": _recorded(cfg)}
    write_json(out_dir / "results.json", results)
    atomic_write_text(out_dir / "results.md", render(results))
    click.echo(render(results))


def _recorded(cfg) -> dict:
    """The config as results record it: no machine's data folder (paths are relative to the data root)."""
    record = cfg.to_dict()
    record["data"]["data_dir"] = None
    return record


def render(results: dict) -> str:
    lines = ["| variant | standard % | PGD % | IBP % | IBP → CROWN % | feature norm |", "|---|---|---|---|---|---|"]
    for r in results["rows"]:
        c = r["certified"]
        lines.append(f"| {r['variant']} | {100 * r['standard']:.1f} | {100 * r['pgd']:.1f} | {100 * c['IBP']:.1f} | "
                     f"{100 * c['CROWN']:.1f} | {r['feature_norm']:.2f} |")
    return "\n".join([f"Command: `{results['command']}`; {results['setup']}", "", *lines]) + "\n"


if __name__ == "__main__":
    main()

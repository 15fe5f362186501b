"""The two training conventions side by side: each method, same seed, MNIST, small-cnn, a few epochs.

    python benchmarks/conventions.py --out runs/conventions [--epochs 4 --train 5000 --test 500]

One PGD teacher (the ctbench teacher recipe, shortened), then mtl-ibp, cc-ibp, ad-cert and cc-dist
under ``expressive-losses`` (the ``mnist-0.1-<method>`` preset: 1-step attack, the loss alone) and
under ``ctbench`` (the ``ctbench-mnist-0.1-<method>`` preset: clean-batch BN, PGD-10 × 3 restarts,
w = 0.7, SWA over the last epoch, population BN), both with small-cnn and the same data, epochs,
ε ramp and α. Prints clean / PGD / IBP-certified accuracy on the first ``--test`` test images
(PGD-10 at ε = 0.1) and the mean training-step time. A finished run is reused (resumable).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from adcert_plugin.training import build_config, train

METHODS = ("mtl-ibp", "cc-ibp", "ad-cert", "cc-dist")


def _sets(args, out: Path, extra: dict) -> list[str]:
    base = {
        "model.name": "small-cnn",
        "data.train_subset": args.train,
        "data.test_subset": args.test,
        "data.batch_size": 100,
        "schedule.epochs": args.epochs,
        "schedule.eps_start_epoch": 1,
        "schedule.eps_length_epochs": max(1, args.epochs // 2),
        "optim.milestones": f"[{args.epochs}]",
        "optim.lr": 1e-3,
        "eval.pgd_steps": 10,
        "eval.pgd_step_size": 0.25,
        "device": "cpu",
        "seed": args.seed,
        "out_dir": str(out),
    }
    if args.data_dir:
        base["data.data_dir"] = args.data_dir
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def _run(preset: str, out: Path, args, extra: dict) -> dict:
    if (out / "summary.json").is_file():
        return json.loads((out / "summary.json").read_text())
    cfg = build_config(preset=preset, sets=_sets(args, out, extra))
    return train(cfg, force=out.exists()).summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/conventions"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train", type=int, default=5000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    teacher = args.out / "teacher"
    _run("ctbench-mnist-0.1-pgd", teacher, args, {})
    rows = []
    for method in METHODS:
        alpha = {"mtl-ibp": 0.02, "cc-ibp": 0.02, "ad-cert": 0.02, "cc-dist": 0.02}[method]
        common = {"loss.params.alpha": alpha}
        if method in ("ad-cert", "cc-dist"):
            common["teacher"] = str(teacher / "model.pt")
        for conventions, preset, extra in (
            ("expressive-losses", f"mnist-0.1-{method}", {}),
            ("ctbench", f"ctbench-mnist-0.1-{method}", {"recipe.swa_start_epoch": args.epochs}),
        ):
            summary = _run(preset, args.out / f"{method}-{conventions}", args, {**common, **extra})
            steps = args.epochs * (args.train // 100)
            rows.append(
                (
                    method,
                    conventions,
                    summary["clean_acc"],
                    summary["pgd_acc"],
                    summary["ibp_cert_acc"],
                    summary["train_time_s"] / steps,
                )
            )
    print("| method | conventions | clean | PGD-10 | IBP-cert | s/step |\n|---|---|---|---|---|---|")
    for method, conventions, clean, pgd, cert, step in rows:
        print(f"| {method} | {conventions} | {clean:.2%} | {pgd:.2%} | {cert:.2%} | {step:.3f} |")


if __name__ == "__main__":
    main()

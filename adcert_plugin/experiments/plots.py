"""The tuned comparison's two plots, from results.json (and the runs' metrics.jsonl).

``plot.png``: standard (x) against complete-certified (y) accuracy, in two panels, because the
two are measured on different images: *test* (left: a point per selected setting and seed, the
mean circled) and *validation* (right: each method's α curve on the selection grid, every point
labelled with its α, the chosen one ringed). The line styles are in the legend.
``curves.png``: per-epoch validation accuracies of every selected run of the first seed, with
axis labels that say what is drawn and which seed.
"""

from __future__ import annotations

import json
from pathlib import Path

COLORS = {"mtl-ibp": "tab:blue", "cc-ibp": "tab:green", "cc-dist": "tab:orange", "ad-cert": "tab:red"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_OFFSETS = [(5, 3), (5, -9), (-5, 3), (-5, -9), (5, 10), (-5, 10), (5, -16), (-5, -16), (12, -3), (-12, -3)]


def place_labels(ax, labels: list[tuple[str, float, float, str]], fontsize: float = 7) -> None:
    """Annotate points ``(text, x, y, color)`` so that no two labels overlap (first free offset).

    Boxes are estimated in display units from the font size (no renderer needed); a label that
    finds no free place takes its first offset, so nothing is dropped.
    """
    ax.autoscale_view()  # the limits the points will be drawn with (autoscaling is otherwise lazy)
    scale = ax.figure.dpi / 72.0
    placed: list[tuple[float, float, float, float]] = []
    points = [ax.transData.transform((x, y)) for _, x, y, _ in labels]
    for (text, x, y, color), (px, py) in zip(labels, points):
        width, height = 0.6 * fontsize * len(text) * scale, fontsize * scale
        choice = _OFFSETS[0]
        for dx, dy in _OFFSETS:
            left = px + dx * scale - (width if dx < 0 else 0)
            box = (left, py + dy * scale, left + width, py + dy * scale + height)
            hits_label = any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed)
            hits_point = any(box[0] - 2 < qx < box[2] + 2 and box[1] - 2 < qy < box[3] + 2 for qx, qy in points)
            if not hits_label and not hits_point:
                choice = (dx, dy)
                placed.append(box)
                break
        else:
            left = px + choice[0] * scale
            placed.append((left, py + choice[1] * scale, left + width, py + choice[1] * scale + height))
        ax.annotate(
            text,
            (x, y),
            textcoords="offset points",
            xytext=choice,
            fontsize=fontsize,
            color=color,
            ha="right" if choice[0] < 0 else "left",
        )


def _alpha_only(row: dict, results: dict, method: str) -> bool:
    """Grid points that differ from the chosen one in α only: the method's α curve."""
    chosen = results["chosen"][method]["params"]
    return all(row["params"].get(k) == v for k, v in chosen.items() if k != "alpha")


def _test_panel(ax, results: dict) -> None:
    for method in results["chosen"]:
        color = COLORS.get(method)
        points = [(100 * e["standard"], 100 * e["complete"]) for e in results["final"][method].values()]
        ax.plot(*zip(*points), "o", color=color, alpha=0.45, linestyle="none")
        mean = [sum(p[i] for p in points) / len(points) for i in (0, 1)]
        ax.plot(
            *mean,
            "o",
            markersize=10,
            color=color,
            markeredgecolor="black",
            linestyle="none",
            label=f"{method}: mean of {len(points)} seeds (small: each seed)",
        )
    ax.set_title("test images: the selected settings", fontsize=10)


def _validation_panel(ax, results: dict) -> None:
    labels: list[tuple[str, float, float, str]] = []
    for method in results["chosen"]:
        color = COLORS.get(method, "tab:gray")
        curve = sorted(
            (r for r in results["grid"] if r["method"] == method and _alpha_only(r, results, method)),
            key=lambda r: r["params"].get("alpha", 0),
        )
        xs = [100 * r["validation"]["standard"] for r in curve]
        ys = [100 * r["validation"]["complete"] for r in curve]
        ax.plot(xs, ys, "--", marker=".", color=color, linewidth=1, label=f"{method}: α curve (dashed)")
        for r, x, y in zip(curve, xs, ys):
            if r["params"] == results["chosen"][method]["params"]:
                ax.plot(x, y, "o", markersize=10, markerfacecolor="none", markeredgecolor="black")
            alpha = r["params"].get("alpha")
            labels.append((f"α={alpha:g}" if isinstance(alpha, (int, float)) else "α=?", x, y, color))
    place_labels(ax, labels)
    ax.plot(
        [],
        [],
        "o",
        markersize=10,
        markerfacecolor="none",
        markeredgecolor="black",
        linestyle="none",
        label="chosen on validation",
    )
    ax.set_title("validation holdout: the selection grid", fontsize=10)


def plot_study(results: dict, path: Path) -> Path:
    plt = _pyplot()
    fig, (test_ax, val_ax) = plt.subplots(1, 2, figsize=(12, 5), dpi=120)
    _test_panel(test_ax, results)
    _validation_panel(val_ax, results)
    for ax in (test_ax, val_ax):
        ax.set_xlabel("standard accuracy %")
        ax.set_ylabel("complete-certified accuracy %")
        ax.legend(fontsize=7)
    fig.suptitle(
        f"{results['dataset']} ε={results['eps']:g}: test (left) and validation (right) are different "
        "images, so their axes are not shared",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    plot_curves(results, Path(path).with_name("curves.png"))
    return Path(path)


def plot_curves(results: dict, path: Path) -> list[str]:
    """Per-epoch validation clean / IBP-certified accuracy of each selected run (first seed).

    `path` lies in the study folder, which the runs' `run_dir` are relative to. Returns the
    methods drawn; one whose metrics are missing is named in the plot, not silently left out.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    drawn, missing = [], []
    for method, chosen in results["chosen"].items():
        row = next(r for r in results["grid"] if r["method"] == method and r["params"] == chosen["params"])
        # run_dir is relative to the study folder; a published copy keeps the runs under state/
        found = [Path(path).parent / sub / row["run_dir"] / "metrics.jsonl" for sub in ("", "state")]
        metrics = next((m for m in found if m.is_file()), found[0])
        if not metrics.is_file():
            missing.append(method)
            continue
        drawn.append(method)
        epochs = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        for ax, key in zip(axes, ("clean_acc", "ibp_cert_acc")):
            ax.plot(
                [e["epoch"] for e in epochs],
                [100 * (e.get(key) or 0) for e in epochs],
                color=COLORS.get(method),
                label=method,
            )
    seed = (results.get("seeds") or ["?"])[0]
    for ax, what in zip(axes, ("clean accuracy %", "IBP-certified accuracy %")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{what} (validation holdout)")
        ax.set_title(f"{what.removesuffix(' %')}, selected runs, seed {seed}", fontsize=10)
        if drawn:
            ax.legend(fontsize=8)
    if missing:
        fig.suptitle(f"no per-epoch metrics for: {', '.join(missing)}", fontsize=9, color="red")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return drawn

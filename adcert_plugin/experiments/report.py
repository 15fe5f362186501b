"""Reporting for the unified-setup experiment: markdown tables and the accuracy plot.

Both read only the ``results`` dict that ``unified.run_unified`` writes to results.json,
so a report can be regenerated from that file alone.
"""

from __future__ import annotations

from pathlib import Path

from .plots import place_labels


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


def _main_seed_runs(results: dict) -> list[dict]:
    """The runs of the main seed (results.json files from before extra seeds carry no seed)."""
    seed = results["config"]["seed"]
    return [r for r in results["runs"] if r.get("seed", seed) == seed]


def markdown_tables(results: dict) -> str:
    """The main table (teacher + students at the shared α) and, with a sweep, the α table."""
    methods = results["config"]["evaluation"]["methods"]
    head = (
        "| method | α | teacher | standard % | PGD % | "
        + " | ".join(f"certified {m} %" for m in methods)
        + " | train s |"
    )
    rule = "|" + "---|" * (6 + len(methods))

    def row(r: dict) -> str:
        alpha = "–" if r["alpha"] is None else f"{r['alpha']:g}"
        teacher = "is the teacher" if r["alpha"] is None else ("yes" if r["uses_teacher"] else "no")
        certs = " | ".join(_pct(r["certified_acc"][m]) for m in methods)
        name = f"{r['method']} (teacher)" if r["alpha"] is None else r["method"]
        return (
            f"| {name} | {alpha} | {teacher} | {_pct(r['standard_acc'])} | {_pct(r['pgd_acc'])} | {certs} | "
            f"{r['train_time_s']:.0f} |"
        )

    runs = _main_seed_runs(results)
    out = [head, rule, *(row(r) for r in runs if r["main"])]
    sweep = [r for r in runs if r["alpha"] is not None]
    if len(results["alphas"]) > 1:
        order = {m: i for i, m in enumerate(results["config"]["methods"])}
        out += [
            "",
            f"α sweep (every student, α ∈ {{{', '.join(f'{a:g}' for a in results['alphas'])}}}):",
            "",
            head,
            rule,
            *(row(r) for r in sorted(sweep, key=lambda r: (order[r["method"]], r["alpha"]))),
        ]
    if results.get("over_seeds"):
        out += ["", *seeds_table(results)]
    return "\n".join(out)


def seeds_table(results: dict) -> list[str]:
    """Mean ± sd over the seeds at the shared α, then ad-cert's paired certified-accuracy gaps."""
    over = results["over_seeds"]
    names = list(next(iter(over["methods"].values())))
    seeds = ", ".join(str(s) for s in over["seeds"])
    intro = (
        f"Over {len(over['seeds'])} seeds ({seeds}) at α = {results['alpha']:g}, mean ± sd "
        "(each seed trains its own teacher and students):"
    )
    lines = [intro, "", "| method | " + " | ".join(f"{n} %" for n in names) + " |", "|" + "---|" * (1 + len(names))]
    for method, by in over["methods"].items():
        label = f"{method} (teacher)" if method == "pgd" else method
        lines.append(f"| {label} | " + " | ".join(f"{v['mean']:.2f} ± {v['sd']:.2f}" for v in by.values()) + " |")
    for other, by in over["ad_cert_minus"].items():
        gaps = ", ".join(
            f"{g['mean']:+.2f} ± {g['sd']:.2f} ({b}; ahead in {g['wins']} of {len(g['values'])})" for b, g in by.items()
        )
        lines += ["", f"ad-cert − {other}, certified points per seed: {gaps}."]
    return lines


def markdown_report(results: dict) -> str:
    m, c = results["machine"], results["config"]
    ev, sched, teacher = c["evaluation"], c["schedule"], c["teacher"]
    gaps = "; ".join(
        f"ad-cert − {other}: " + ", ".join(f"{v:+.2f} ({b})" for b, v in by.items())
        for other, by in results["ad_cert_minus"].items()
    )
    calls = "; ".join(
        f"{c['finished_at']}: {c['runs_trained']} trained, {c['runs_reused']} reused, {c['wall_time_s'] / 60:.1f} min"
        for c in results["calls"]
    )
    subset = "all" if c["data"]["train_subset"] is None else c["data"]["train_subset"]
    setup = (
        f"Shared by every student: seed {c['seed']}, model {results['model']}, {subset} training images, "
        f"{sched['epochs']} epochs, train ε ×{sched['train_eps_mul']:g}, training attack "
        f"PGD-{c['attack']['steps']} η={c['attack']['step_size']:g}, L1 {c['optim']['l1']:g}, "
        f"α = {results['alpha']:g}. Teacher: `pgd` ({teacher['attack']['steps']}-step PGD-AT, "
        f"{teacher['schedule']['epochs']} epochs, same images). Evaluation of every model: {ev['n'] or 'all'} "
        f"test images (seed {ev['seed']}), PGD-{ev['attack']['steps']} (η={ev['attack']['step_size']:g}), "
        f"certified by the cascade {' → '.join(ev['methods'])} (cumulative), on each run's final model.pt."
    )
    if c.get("extra_seeds"):
        setup += (
            f" Extra seeds {', '.join(str(s) for s in c['extra_seeds'])}: the teacher and the students at "
            f"α = {results['alpha']:g} are trained again with each (the tables below are for seed "
            f"{c['seed']}, except the last, which covers every seed)."
        )
    machine = (
        f"Machine: {m['platform']}, {m['cpu_count']} CPUs (torch threads: {m['torch_threads']}), "
        f"GPU: {m['cuda'] or 'none'}; Python {m['python']}, torch {m['torch']}, auto_LiRPA "
        f"{m['auto_LiRPA']}, adcert {m['adcert']}. Training + evaluation of every run (sum over the runs): "
        f"{results['run_time_s'] / 60:.1f} min. Calls (finished at: runs trained / reused, wall time): "
        f"{calls}."
    )
    title = f"# Unified setup: {results['dataset'].upper()} ε = {results['eps']:g} (preset `{results['preset']}`)"
    gap_line = f"Certified accuracy at the shared α = {results['alpha']:g}, seed {c['seed']}, in points: {gaps}."
    return (
        "\n\n".join(
            [
                title,
                results["description"],
                setup,
                markdown_tables(results),
                gap_line,
                f"Command: `{results['command']}`",
                machine,
            ]
        )
        + "\n"
    )


def plot_results(results: dict, path: Path) -> Path:
    """Standard (x) vs certified (y) accuracy, one panel per bound method: a line per method over α.

    The shared-α point of each method is circled. The teacher is drawn where it lies, or, when
    it is far below the students (an empirically robust model certifies little), as an arrow
    on the lower edge with its numbers, so the students' region keeps its resolution.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = results["config"]["evaluation"]["methods"]
    colors = {"mtl-ibp": "tab:blue", "cc-ibp": "tab:green", "cc-dist": "tab:orange", "ad-cert": "tab:red"}
    students = [r for r in _main_seed_runs(results) if r["alpha"] is not None]
    others = [r for r in results["runs"] if r not in students and r["alpha"] is not None]
    fig, axes = plt.subplots(1, len(methods), figsize=(5.2 * len(methods), 4.6), dpi=120, squeeze=False)
    for ax, bound in zip(axes[0], methods):
        labels = []
        for method in results["config"]["methods"]:
            points = sorted((r for r in students if r["method"] == method), key=lambda r: r["alpha"])
            xs = [100 * r["standard_acc"] for r in points]
            ys = [100 * r["certified_acc"][bound] for r in points]
            teacher = " (with teacher)" if points and points[0]["uses_teacher"] else ""
            (line,) = ax.plot(xs, ys, "-", marker=".", color=colors.get(method), alpha=0.8, label=method + teacher)
            for r, x, y in zip(points, xs, ys):
                labels.append((f"α={r['alpha']:g}", x, y, line.get_color()))
                if r["main"]:
                    ax.plot(
                        x,
                        y,
                        marker="o",
                        markersize=9,
                        color=line.get_color(),
                        markeredgecolor="black",
                        linestyle="none",
                    )
            extra = [r for r in others if r["method"] == method]
            ax.plot(
                [100 * r["standard_acc"] for r in extra],
                [100 * r["certified_acc"][bound] for r in extra],
                marker="o",
                markersize=6,
                markerfacecolor="none",
                color=line.get_color(),
                linestyle="none",
            )
        ax.plot(
            [],
            [],
            marker="o",
            markersize=9,
            color="white",
            markeredgecolor="black",
            linestyle="none",
            label=f"shared α = {results['alpha']:g} (dots: α sweep)",
        )
        if others:
            ax.plot(
                [],
                [],
                marker="o",
                markersize=6,
                markerfacecolor="none",
                color="black",
                linestyle="none",
                label="shared α, other seeds",
            )
        low = min(100 * r["certified_acc"][bound] for r in students + others)
        for r in _main_seed_runs(results):
            if r["alpha"] is None:
                x, y = 100 * r["standard_acc"], 100 * r["certified_acc"][bound]
                floor = max(0.0, low - 8.0)
                if y >= floor:
                    ax.plot(x, y, marker="X", markersize=9, color="grey", linestyle="none", label="pgd teacher")
                else:
                    ax.set_ylim(bottom=floor - 1.0)
                    ax.plot(
                        x,
                        floor - 0.5,
                        marker="v",
                        markersize=9,
                        color="grey",
                        linestyle="none",
                        label=f"pgd teacher (below: {y:.1f} %)",
                    )
        place_labels(ax, labels)  # after the limits are set: no two α labels on top of each other
        ax.set_xlabel("standard accuracy (%)")
        ax.set_ylabel(f"certified accuracy, {bound} (%)")
        ax.set_title(f"certified by {' → '.join(methods[: methods.index(bound) + 1])}", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    n = results["config"]["evaluation"]["n"] or "all"
    fig.suptitle(
        f"Unified setup: {results['dataset'].upper()} ε = {results['eps']:g}, {results['model']}, "
        f"{n} test images (preset {results['preset']})",
        fontsize=11,
    )
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path

"""One page across the tuned-comparison benchmarks: the question adcert exists to answer.

Each benchmark's ``results.json`` (``study.py``) already holds its per-seed paired differences;
this module only lines them up, benchmark by benchmark, and says for each pair what the 95 %
interval allows one to conclude. A benchmark whose study has not finished is listed as such,
never left out, so the page cannot read as a verdict over benchmarks it does not hold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError
from ...io import read_json
from .presets import list_studies

METRIC = "complete"  # the verifier-certified accuracy the comparison is about


@dataclass(frozen=True)
class Benchmark:
    """A study folder: its name and, once the study has finished, its results."""

    name: str
    results: dict | None

    @property
    def finished(self) -> dict:
        """The results, for the tables (which take finished studies only)."""
        if self.results is None:
            raise ConfigError(f"{self.name}: the study has not finished (no results.json)")
        return self.results


def load_benchmark(folder: Path) -> Benchmark:
    """The study in ``folder``; ``results`` is None until its results.json exists."""
    folder = Path(folder)
    if not folder.is_dir():
        preset = folder.name.removeprefix("study-")
        if folder.name.startswith("study-") and preset in list_studies():
            return Benchmark(preset, None)
        raise ConfigError(
            f"{folder}: no such study folder; pass folders that study.py wrote (e.g. examples/results/study-mnist-0.1)"
        )
    results_path = folder / "results.json"
    if results_path.is_file():
        results = read_json(results_path)
        return Benchmark(results.get("study", folder.name), results)
    return Benchmark(folder.name.removeprefix("study-"), None)


def verdict(pair: str, difference: dict) -> str:
    """What the per-seed interval of ``first − second`` allows one to say, in words."""
    first, second = (p.strip() for p in pair.split(" - "))
    low, high = difference["ci95"]
    if difference["n"] < 2:
        return "one seed: no interval"
    if not difference.get("estimable", True):
        return "cannot be estimated (equal differences on every seed)"
    if low > 0:
        return f"{first} better"
    if high < 0:
        return f"{second} better"
    return "not separated"


def _spread(stat: dict) -> str:
    return f"{stat['mean']:.2f}" + ("" if stat["n"] < 2 else f" ± {stat['sd']:.2f}")


def _setting(chosen: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in chosen["params"].items())


def render_summary(benchmarks: list[Benchmark]) -> str:
    """The cross-benchmark page (markdown)."""
    done = [b for b in benchmarks if b.results is not None]
    lines = [
        "# Tuned comparison across benchmarks",
        "",
        "Built from each benchmark's `results.json` by `python examples/study_summary.py`; the "
        "per-benchmark pages hold the grids, timeouts and plots.",
        "",
    ]
    pending = [b for b in benchmarks if b.results is None]
    if pending:
        lines += [
            "Not finished, so not in the tables (their folders' progress.md say how far they got): "
            + ", ".join(b.name for b in pending)
            + ".",
            "",
        ]
    if not done:
        return "\n".join(lines) + "\n"
    lines += _accuracy_table(done) + _pair_table(done) + _settings_table(done)
    return "\n".join(lines) + "\n"


def _methods(done: list[Benchmark]) -> list[str]:
    seen: list[str] = []
    for b in done:
        seen += [m for m in b.finished["summary"] if m not in seen]
    return seen


def _accuracy_table(done: list[Benchmark]) -> list[str]:
    methods = _methods(done)
    lines = [
        "## Complete-certified test accuracy (%, mean ± sd over seeds; best in bold)",
        "",
        "| benchmark | images × seeds | " + " | ".join(methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for b in done:
        summary = b.finished["summary"]
        best = max(summary[m][METRIC]["mean"] for m in summary)
        cells = []
        for m in methods:
            stat = summary.get(m, {}).get(METRIC)
            text = "–" if stat is None else _spread(stat)
            cells.append(f"**{text}**" if stat is not None and stat["mean"] == best else text)
        lines.append(f"| {_title(b)} | {_images(b)} × {len(b.finished['seeds'])} | " + " | ".join(cells) + " |")
    return lines + [""]


def _title(b: Benchmark) -> str:
    r = b.finished
    return f"{r['dataset']} ε {r['eps']:g} ({r['model']})"


def _images(b: Benchmark) -> str:
    first_method = next(iter(b.finished["final"].values()))
    return str(next(iter(first_method.values()))["n"])


def _pair_table(done: list[Benchmark]) -> list[str]:
    lines = [
        "## Paired differences in complete-certified accuracy (points; per-seed 95 % t interval)",
        "",
        "| pair | benchmark | mean | 95 % interval | wins | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for pair in _pairs(done):
        for b in done:
            d = b.finished["paired"].get(pair, {}).get(METRIC)
            if d is None:
                continue
            lines.append(
                f"| {pair} | {_title(b)} | {d['mean']:+.2f} | [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}] | "
                f"{d['wins']}/{d['n']} | {verdict(pair, d)} |"
            )
    return lines + [""]


def _settings_table(done: list[Benchmark]) -> list[str]:
    lines = [
        "## Selected settings and teachers",
        "",
        "| benchmark | teacher clean / PGD-40 % (mean) | " + " | ".join(_methods(done)) + " |",
        "|---|---|" + "---|" * len(_methods(done)),
    ]
    for b in done:
        teachers = list(b.finished["teacher"].values())
        clean = 100 * sum(t["standard"] for t in teachers) / len(teachers)
        pgd = 100 * sum(t["pgd"] for t in teachers) / len(teachers)
        chosen = b.finished["chosen"]
        cells = [_setting(chosen[m]) if m in chosen else "–" for m in _methods(done)]
        lines.append(f"| {_title(b)} | {clean:.2f} / {pgd:.2f} | " + " | ".join(cells) + " |")
    return lines + [""]


def plot_pairs(benchmarks: list[Benchmark], path: Path) -> list[tuple[str, str]]:
    """A forest plot: every pair's mean difference in complete-certified accuracy with its 95 %
    interval, one row per (pair, benchmark); a zero line to read the verdicts off. Returns the rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        (pair, b, b.finished["paired"][pair][METRIC])
        for pair in _pairs(benchmarks)
        for b in benchmarks
        if b.results is not None and METRIC in b.finished["paired"].get(pair, {})
    ]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.4), dpi=120)
    for i, (pair, _, d) in enumerate(rows):
        low, high = d["ci95"]
        color = {
            f"{pair.split(' - ')[0].strip()} better": "tab:green",
            f"{pair.split(' - ')[-1].strip()} better": "tab:red",
        }.get(verdict(pair, d), "tab:gray")
        ax.plot([low, high], [i, i], color=color, linewidth=2)
        ax.plot(d["mean"], i, "o", color=color)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ends = [0.0] + [v for _, _, d in rows for v in d["ci95"]]
    margin = 0.1 * (max(ends) - min(ends)) + 0.1
    ax.set_xlim(min(ends) - margin, max(ends) + margin)
    ax.set_yticks(range(len(rows)), [f"{pair}  ({_title(b)})" for pair, b, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("complete-certified accuracy difference, points (per-seed 95 % t interval)")
    ax.set_title("green: first better, red: second better, gray: not separated", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return [(pair, b.name) for pair, b, _ in rows]


def _pairs(benchmarks: list[Benchmark]) -> list[str]:
    pairs: list[str] = []
    for b in benchmarks:
        if b.results is not None:
            pairs += [p for p in b.finished["paired"] if p not in pairs]
    return pairs


def summary_json(benchmarks: list[Benchmark]) -> str:
    """The numbers of the page, for scripts: per benchmark, per pair, the difference and its verdict."""
    out: dict[str, dict] = {}
    for b in benchmarks:
        if b.results is None:
            out[b.name] = {"finished": False}
            continue
        out[b.name] = {
            "finished": True,
            "pairs": {
                pair: dict(metrics[METRIC], verdict=verdict(pair, metrics[METRIC]))
                for pair, metrics in b.finished["paired"].items()
                if METRIC in metrics
            },
        }
    return json.dumps(out, indent=1, sort_keys=True) + "\n"

"""The tuned comparison's report, from results.json alone: markdown tables, and the two plots
(``plot.png``, ``curves.png``) drawn by ``experiments/plots.py``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from ...io import read_json
from ..plots import COLORS, plot_curves, plot_study  # noqa: F401 (the plots live in experiments/plots.py)
from ..stats import excludes_zero_words


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _spread(s: dict) -> str:
    return f"{s['mean']:.2f}" + ("" if s["n"] < 2 else f" ± {s['sd']:.2f}")


def render_markdown(results: dict) -> str:
    lines = [
        f"# Tuned comparison `{results['study']}`: {results['dataset']}, ε = {results['eps']:g}, {results['model']}",
        "",
        results["description"],
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {results['machine']['processor']}, "
        f"{results['machine']['cpu_count']} CPUs, torch {results['machine']['torch']}; "
        f"wall time of the last call {results['wall_time_s'] / 60:.1f} min, "
        f"training time of all runs {results['train_time_s'] / 3600:.2f} h, evaluation time "
        f"{results.get('eval_time_s', 0.0) / 3600:.2f} h",
        "",
    ]
    paused = results.get("paused_epochs") or {}
    if paused:  # study/timing.py: a paused process's epochs count at the run's median epoch time
        lines[-1:-1] = [
            "",
            f"Training time without pauses; recorded {results['train_time_recorded_s'] / 3600:.2f} h. "
            "Epochs taken as paused (recorded → used, s): "
            + "; ".join(
                f"{run} epoch {p['epoch']} ({p['recorded_s']:.0f} → {p['used_s']:.0f})"
                for run, found in paused.items()
                for p in found
            ),
        ]
    machines = results.get("machines") or []
    if len(machines) > 1:  # resumed over sessions: say which machine trained how many runs
        lines[-1:-1] = ["", "Runs finished on: " + "; ".join(f"{m['machine']} ({m['runs']} runs)" for m in machines)]
    nodes = Counter(n["trained_on"] for n in (results.get("nodes") or {}).values() if n.get("trained_on"))
    if len(nodes) > 1:  # a Ray cluster: which node trained how many runs (results.json: each run's node)
        lines[-1:-1] = ["", "Trained on Ray nodes: " + "; ".join(f"{n} ({k} runs)" for n, k in sorted(nodes.items()))]
    lines += _soundness(results) + _teacher_table(results) + _final_table(results) + _paired_table(results)
    lines += _framework_tables(results) + _grid_tables(results)
    return "\n".join(lines) + "\n"


def _soundness(results: dict) -> list[str]:
    """First in the report: the verifier answers the evidence contradicted (the study failed on them)."""
    found = results.get("contradictions") or []
    if not found:
        return []
    return [
        f"## SOUNDNESS: {len(found)} contradicted verifier answers",
        "",
        "Each counts as not certified below; the study exited with a SoundnessError (exit 3).",
        "",
        *(f"- {c}" for c in found),
        "",
    ]


def _teacher_table(results: dict) -> list[str]:
    rows = [f"| {s} | {_pct(e['standard'])} | {_pct(e['pgd'])} |" for s, e in results["teacher"].items()]
    return [
        "## Teacher (PGD-AT, one per seed; the same one for every student of that seed)",
        "",
        "| seed | clean % | PGD-40 % |",
        "|---|---|---|",
        *rows,
        "",
    ]


def _final_table(results: dict) -> list[str]:
    names = list(next(iter(results["summary"].values())))
    head = (
        "| method | selected | " + " | ".join(f"{n} %" for n in names) + " | timeouts | verifier errors | set aside |"
    )
    rows = []
    for method, metrics in results["summary"].items():
        runs = results["final"][method].values()
        not_certified = [sum(e.get(k, 0) for e in runs) for k in ("timeouts", "complete_errors", "set_aside")]
        chosen = json.dumps(results["chosen"][method]["params"], separators=(",", ":"))
        rows.append(
            f"| {method} | `{chosen}` | "
            + " | ".join(_spread(metrics[n]) for n in names)
            + "".join(f" | {k}" for k in not_certified)
            + " |"
        )
    n = next(iter(next(iter(results["final"].values())).values()))["n"]
    return [
        f"## Final evaluation: {n} test images, seeds {', '.join(map(str, results['seeds']))} (mean ± sd)",
        "",
        "Timeouts, verifier errors and set-aside answers (an unsat facing a point within VNN-COMP's 1e-4 "
        "tolerance of a counterexample) are summed over seeds; each counts as not certified.",
        "",
        head,
        "|" + "---|" * (len(names) + 5),
        *rows,
        "",
    ]


def _paired_table(results: dict, paired: dict | None = None, title: str = "Paired differences") -> list[str]:
    paired = results["paired"] if paired is None else paired
    if not paired:
        return []
    lines = [
        f"## {title} (per seed; points; 95 % t interval)",
        "",
        "| pair | metric | mean | 95 % interval | wins | excludes 0 |",
        "|---|---|---|---|---|---|",
    ]
    for pair, metrics in paired.items():
        for name, d in metrics.items():
            lines.append(
                f"| {pair} | {name} | {d['mean']:+.2f} | [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}] | "
                f"{d['wins']}/{d['n']} | {excludes_zero_words(d)} |"
            )
    return lines + [""]


def _framework_tables(results: dict) -> list[str]:
    """The selected settings under the other framework (study/config.py FrameworkArm), side by side."""
    arm = results.get("framework_arm")
    if not arm:
        return []
    name, names = arm["name"], list(next(iter(arm["summary"].values())))
    lines = [
        f"## The same selected settings under the {name} framework (this study's data, network, teachers)",
        "",
        f"Each method's selected loss parameters trained again with every seed under the {name} "
        "schedule, optimiser, training attack and recipe; evaluated as the final evaluation above. "
        f"*This framework − {name}* is the paired difference per seed: the part of a number that is the framework.",
        "",
        "| method | " + " | ".join(f"{n} % ({name})" for n in names) + " | complete: this framework − " + name + " |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for method, metrics in arm["summary"].items():
        d = (arm.get("study_minus_arm") or {}).get(method, {}).get("complete")
        diff = f"{d['mean']:+.2f} [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]" if d else "–"
        lines.append(f"| {method} | " + " | ".join(_spread(metrics[n]) for n in names) + f" | {diff} |")
    lines.append("")
    return lines + _paired_table(results, arm.get("paired") or {}, f"Paired differences under the {name} framework")


def _grid_tables(results: dict) -> list[str]:
    lines = ["## Selection on the validation holdout (first seed; complete verifier at the selection timeout)", ""]
    if any(r.get("extension") for r in results["grid"]):
        lines += [
            "Points marked *past the edge* were added because the choice sat on the edge of its grid: the "
            "chosen point with the laddered knob one value further out, until the choice lies inside or "
            "the ladder ends.",
            "",
        ]
    for method in results["chosen"]:
        rows = [r for r in results["grid"] if r["method"] == method]
        chosen = results["chosen"][method]["params"]
        lines += [
            f"### {method}",
            "",
            "| params | standard % | PGD % | complete % | timeouts | chosen |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            v = r["validation"]
            past = " *past the edge*" if r.get("extension") else ""
            lines.append(
                f"| `{json.dumps(r['params'], separators=(',', ':'))}`{past} | {_pct(v['standard'])} | "
                f"{_pct(v['pgd'])} | {_pct(v['complete'])} | {v['timeouts']} | "
                f"{'**yes**' if r['params'] == chosen else ''} |"
            )
        lines.append("")
    return lines


def rerender(out_dir: Path) -> str:
    """results.md from results.json (what a test checks the committed files against)."""
    return render_markdown(read_json(Path(out_dir) / "results.json"))

"""A finished study's ``results.json``: the chosen settings, the grid, the finals per seed, their
summaries and the paired differences (with 95 % intervals), and the machines and nodes it ran on."""

from __future__ import annotations

import os
from pathlib import Path

from ...io import read_json


def _keys_of(grid: dict, method: str) -> list[tuple[str, int]]:
    """The grid keys of ``method`` in order: its grid points, then its extensions."""
    return sorted(k for k in grid if k[0] == method)


def _results(cfg, records, final_records, chosen, grid, command, wall, out_dir: Path, arm_records=None) -> dict:
    from ..stats import mean_sd, paired_difference
    from ..unified import machine_info

    per_seed: dict[str, dict] = {m: {} for m in cfg.methods}
    for key, rec in final_records.items():
        seed = cfg.seeds[0] if key[-1] == "test" else key[1]
        per_seed[key[0]][seed] = rec["evals"]["test"]
    metric_names = ["standard", "pgd", "complete"] + [f"certified {b}" for b in cfg.final.methods]

    def value(e, name):
        return e["certified"][name.split(" ", 1)[1]] if name.startswith("certified ") else e[name]

    summary = {
        m: {name: mean_sd([100 * value(per_seed[m][s], name) for s in cfg.seeds]) for name in metric_names}
        for m in cfg.methods
    }
    pairs = {}
    for a, b in (p for p in _pairs(cfg.methods) if len(cfg.seeds) > 1):
        pairs[f"{a} - {b}"] = {
            name: paired_difference(
                [100 * value(per_seed[a][s], name) for s in cfg.seeds],
                [100 * value(per_seed[b][s], name) for s in cfg.seeds],
            )
            for name in ("complete", *(f"certified {x}" for x in cfg.final.methods))
        }
    teachers = {s: records["teacher", s]["evals"]["test"] for s in cfg.seeds}
    grid_rows = [
        {
            "method": m,
            "params": grid[m, i][0],
            "validation": records[m, i]["evals"]["validation"],
            "run_dir": os.path.relpath(records[m, i]["run_dir"], out_dir),
            "extension": i >= len(cfg.grid_points(m)),
        }
        for m in cfg.methods
        for _, i in _keys_of(grid, m)
    ]
    arm = _framework_arm(cfg, per_seed, arm_records or {}, metric_names, value)
    every = list(records.values()) + list(final_records.values()) + list((arm_records or {}).values())
    runs = {r["run_dir"]: r for r in every}  # a selected grid run is in both waves: count it once
    evals: dict[str, dict] = {d: {} for d in runs}
    for r in every:
        evals[r["run_dir"]].update(r["evals"])
    config = cfg.to_dict()
    config["data"]["data_dir"] = None  # results name no folder of the machine that ran them
    contradictions = list(
        dict.fromkeys(  # a selected grid run is in both waves: list its findings once
            f"{os.path.relpath(r['run_dir'], out_dir)} ({name}): {c}"
            for r in every
            for name, e in r["evals"].items()
            for c in e.get("contradictions", [])
        )
    )
    return {
        "study": cfg.name,
        "description": cfg.description,
        "command": command or f"python examples/study.py --preset {cfg.name}",
        "dataset": cfg.data.dataset,
        "eps": cfg.schedule.eps,
        "model": cfg.model.name,
        "seeds": list(cfg.seeds),
        "teacher": teachers,
        "chosen": chosen,
        "grid": grid_rows,
        "final": {m: {str(s): per_seed[m][s] for s in cfg.seeds} for m in cfg.methods},
        "summary": summary,
        "paired": pairs,
        "framework_arm": arm,
        "wall_time_s": round(wall, 1),
        "train_time_s": round(sum(runs[d]["train_time_s"] for d in runs), 1),
        "train_time_recorded_s": round(
            sum(runs[d].get("train_time_recorded_s", runs[d]["train_time_s"]) for d in runs), 1
        ),
        "paused_epochs": {
            os.path.relpath(d, out_dir): runs[d]["paused_epochs"] for d in runs if runs[d].get("paused_epochs")
        },
        "eval_time_s": round(sum(e["eval_time_s"] for d in runs for e in evals[d].values()), 1),
        "runs_trained_now": sum(r["trained_now"] for r in every),
        "machine": machine_info(),
        "machines": _machines(every),
        "nodes": {
            os.path.relpath(d, out_dir): {"trained_on": runs[d].get("trained_on"), "evaluated_on": runs[d].get("node")}
            for d in runs
        },
        "contradictions": contradictions,
        "config": config,
    }


def _framework_arm(cfg, per_seed: dict, arm_records: dict, metric_names: list[str], value) -> dict | None:
    """The selected settings under the other framework: per method its numbers, and the paired
    difference (this study's framework − the arm's) per method; the method pairs under the arm."""
    from ..stats import mean_sd, paired_difference

    if cfg.framework_arm is None or not arm_records:
        return None
    arm_seed = {m: {s: arm_records[m, s]["evals"]["test"] for s in cfg.seeds} for m in cfg.methods}
    compared = ("complete", *(f"certified {x}" for x in cfg.final.methods))

    def series(table, m, name):
        return [100 * value(table[m][s], name) for s in cfg.seeds]

    paired = len(cfg.seeds) > 1
    return {
        "name": cfg.framework_arm.name,
        "final": {m: {str(s): arm_seed[m][s] for s in cfg.seeds} for m in cfg.methods},
        "summary": {m: {n: mean_sd(series(arm_seed, m, n)) for n in metric_names} for m in cfg.methods},
        "study_minus_arm": {
            m: {n: paired_difference(series(per_seed, m, n), series(arm_seed, m, n)) for n in compared}
            for m in cfg.methods
        }
        if paired
        else {},
        "paired": {
            f"{a} - {b}": {n: paired_difference(series(arm_seed, a, n), series(arm_seed, b, n)) for n in compared}
            for a, b in _pairs(cfg.methods)
        }
        if paired
        else {},
    }


def _machines(records: list[dict]) -> list[dict]:
    """The machines that finished the runs (machine.json, written when a run is saved to a state), with counts."""
    seen: dict[str, dict] = {}
    for run_dir in dict.fromkeys(r["run_dir"] for r in records):
        path = Path(run_dir) / "machine.json"
        unrecorded = "not recorded (a run trained before adcert wrote machine.json at the end of training)"
        info = read_json(path) if path.is_file() else {"processor": unrecorded}
        cpu = info.get("cpu_model") or info.get("processor")
        key = f"{cpu} | {info.get('platform')} | {info.get('cpu_count')} CPUs"
        seen.setdefault(key, {"machine": key, "runs": 0})["runs"] += 1
    return list(seen.values())


def _pairs(methods) -> list[tuple[str, str]]:
    from .config import PAIRS

    return [(a, b) for a, b in PAIRS if a in methods and b in methods]

"""What a study's runs cost, robust to the process being paused.

A study of hours shares its machine: a session may stop its processes (SIGSTOP) while it measures
something else, and a wall clock keeps running through such a pause. One paused epoch then
counts for hours, and a training cost in results.json would say more about the pause than about
the loss. An epoch is taken as paused when it took more than ``PAUSE_FACTOR`` times the median
of the run's other epochs (a warm-up or the ε ramp costs well under 2×, measured) and more than
``PAUSE_MIN_S`` above it (tiny runs, such as CI's, vary by more than 4× in fractions of a second
under load; the pauses this is for last minutes to hours): its time is replaced by that median,
and every replacement is listed, with the recorded time beside it, so the correction can be
checked and undone.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

PAUSE_FACTOR = 4.0
PAUSE_MIN_S = 60.0


def epoch_times(metrics: Path) -> list[float]:
    """The ``time_s`` of every epoch in a run's metrics.jsonl (empty when there is none)."""
    if not Path(metrics).is_file():
        return []
    rows = [json.loads(line) for line in Path(metrics).read_text().splitlines() if line.strip()]
    return [float(r["time_s"]) for r in rows if "time_s" in r]


def paused_epochs(times: list[float], factor: float = PAUSE_FACTOR, min_excess_s: float = PAUSE_MIN_S) -> list[dict]:
    """The epochs over ``factor`` × the median of the others and ``min_excess_s`` above it, with the median used."""
    found = []
    for i, t in enumerate(times):
        others = times[:i] + times[i + 1 :]
        if len(others) < 2:
            continue
        typical = statistics.median(others)
        if t > factor * typical and t - typical > min_excess_s:
            found.append({"epoch": i + 1, "recorded_s": t, "used_s": typical})
    return found


def train_cost(metrics: Path, recorded_total: float) -> dict:
    """``train_time_s`` with paused epochs replaced, the recorded total and the replacements."""
    replaced = paused_epochs(epoch_times(metrics))
    excess = sum(p["recorded_s"] - p["used_s"] for p in replaced)
    # unrounded: a study sums these over dozens of runs and rounds once
    return {"train_time_s": recorded_total - excess, "train_time_recorded_s": recorded_total, "paused_epochs": replaced}

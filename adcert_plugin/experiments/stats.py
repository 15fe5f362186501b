"""Statistics that can tell: mean ± sd over seeds, and paired differences with a 95 % interval.

Runs of one seed share the data order, the initialisation and the teacher, so comparing two
methods seed by seed (a paired design) removes that shared noise; the interval is Student's t
on the per-seed differences: mean ± t_{0.975, n−1} · sd / √n. With 3 seeds t = 4.30, so an
interval excludes 0 only when the differences are consistent, which is the point. When every
seed gives the same difference the sd is 0 and the interval has no width: it cannot be
estimated (``estimable`` False), and no difference is claimed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

# Two-sided 95 % quantiles of Student's t, t_{0.975, df}, df = 1..30 (standard tables).
_T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)


def t_quantile_975(df: int) -> float:
    """t_{0.975, df}; beyond the table the normal 1.96 is within 2 %."""
    if df < 1:
        raise ValueError(f"a t interval needs df >= 1 (2 or more values); got df={df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96


def mean_sd(values: Sequence[float]) -> dict:
    """Mean and sample standard deviation (NaN sd for one value), with the values in order."""
    values = [float(v) for v in values]
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return {"mean": statistics.mean(values), "sd": sd, "n": len(values), "values": values}


def paired_difference(first: Sequence[float], second: Sequence[float]) -> dict:
    """``first − second`` seed by seed: mean, sd, 95 % interval, and how many seeds ``first`` won.

    Raises:
        ValueError: the two lists differ in length, or hold fewer than 2 values.
    """
    if len(first) != len(second):
        raise ValueError(f"paired values need equal lengths; got {len(first)} and {len(second)}")
    diffs = [float(a) - float(b) for a, b in zip(first, second)]
    if len(diffs) < 2:
        raise ValueError("a paired interval needs at least 2 seeds")
    summary = mean_sd(diffs)
    half = t_quantile_975(len(diffs) - 1) * summary["sd"] / math.sqrt(len(diffs))
    # Equal differences on every seed (2 seeds, both +2 points) give sd 0 and a zero-width interval:
    # that is no evidence of certainty, only too few seeds to see the spread. Say so; claim nothing.
    estimable = summary["sd"] > 0
    return {
        **summary,
        "ci95": [summary["mean"] - half, summary["mean"] + half],
        "wins": sum(d > 0 for d in diffs),
        "losses": sum(d < 0 for d in diffs),
        "estimable": estimable,
        "excludes_zero": estimable and (summary["mean"] - half > 0 or summary["mean"] + half < 0),
    }


def excludes_zero_words(difference: dict) -> str:
    """The "excludes 0" cell of a report: yes, no, or why it cannot be told."""
    if not difference.get("estimable", True):
        return f"cannot be estimated (the {difference['n']} per-seed differences are equal: sd 0)"
    return "yes" if difference["excludes_zero"] else "no"

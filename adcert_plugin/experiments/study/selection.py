"""Selection on the validation holdout, and the grid's extension past an edge.

``select`` picks the point with the highest complete-certified validation accuracy (ties: standard
accuracy, then the earlier point). A choice on the edge of its grid says only that the optimum may
lie further out: the MNIST ε 0.1 study chose α 0.5 (the largest value tried) for mtl-ibp and
ad-cert and α 0.01 (the smallest) for cc-ibp. So a study may name, per method, a ladder of values
for a knob (``StudyConfig.edge_extension``): while the chosen value is the smallest (largest)
value tried and the ladder goes further, the chosen point with that knob one rung further out is
trained and evaluated like a grid point, and selection is made again over everything tried.
It stops when the choice is inside the values tried or the ladder ends: a one-dimensional search
along each named knob, at the cost of one run per step instead of a wider product grid.
"""

from __future__ import annotations


def select(method: str, candidates: list[tuple[dict, dict]]) -> dict:
    """The point with the highest complete-certified validation accuracy (ties: standard, then order)."""
    scored = [
        (r["evals"]["validation"]["complete"], r["evals"]["validation"]["standard"], -i, i, p)
        for i, (p, r) in enumerate(candidates)
    ]
    best = max(scored)
    return {"method": method, "index": best[3], "params": best[4], "complete": best[0], "standard": best[1]}


def edge_points(ladders: dict, tried: list[dict], chosen: dict) -> list[dict]:
    """The points to try next: ``chosen`` with one laddered knob a rung past the values tried.

    ``ladders``: knob -> the values it may take, ascending. ``tried``: every point evaluated so far.
    A knob whose chosen value lies strictly inside the values tried gives nothing; at the lowest
    (highest) value tried it gives the next lower (higher) ladder value, if there is one.
    """
    new = []
    for knob, ladder in ladders.items():
        values = sorted({p[knob] for p in tried})
        lower = [v for v in ladder if v < values[0]]
        higher = [v for v in ladder if v > values[-1]]
        if chosen[knob] == values[0] and lower:
            new.append({**chosen, knob: lower[-1]})
        if chosen[knob] == values[-1] and higher:
            new.append({**chosen, knob: higher[0]})
    return [p for i, p in enumerate(new) if p not in tried and p not in new[:i]]

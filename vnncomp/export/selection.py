"""Which test samples a benchmark gets: correctly classified, drawn with ``np.random.default_rng(seed)``.

Optionally only those PGD does not break (``filter_pgd``), and only those a cheap bound does
not already certify (``skip_certified``), so that a complete verifier has something to decide.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from adcert_plugin.bounds.spec import InputBox, normalize
from adcert_plugin.errors import ConfigError, ExportError
from adcert_plugin.evaluation import select_indices

logger = logging.getLogger(__name__)

PGD: dict[str, Any] = {"steps": 50, "step_size": 0.1, "restarts": 2}
SKIP_METHODS = ("IBP", "CROWN-IBP", "CROWN")  # the cheap methods of adcert_plugin.bounds.METHODS
_BATCH = 256


def skip_method(method: str | None) -> str | None:
    """Validate a ``skip_certified`` method name (case-insensitive); None stays None."""
    if method is None:
        return None
    by_lower = {m.lower(): m for m in SKIP_METHODS}
    if not isinstance(method, str) or method.strip().lower() not in by_lower:
        raise ConfigError(
            f"unknown bound method {method!r} for --skip-certified; choose from {', '.join(SKIP_METHODS)}"
        )
    return by_lower[method.strip().lower()]


def _predict(model: torch.nn.Module, images: torch.Tensor, data_spec) -> torch.Tensor:
    with torch.no_grad():
        chunks = [
            model(normalize(images[i : i + _BATCH], data_spec.mean, data_spec.std)).argmax(1)
            for i in range(0, len(images), _BATCH)
        ]
    return torch.cat(chunks) if chunks else torch.zeros(0, dtype=torch.long)


def _pgd_robust(
    model, x: torch.Tensor, y: torch.Tensor, eps: float, data_spec, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(bool ``[B]``: PGD (margin loss) finds no misclassified point in the eps box, the points ``[B, C, H, W]``).

    The points are normalised; the benchmark keeps them as evidence (``evidence/``).
    """
    from adcert_plugin.attacks import AttackConfig, pgd_attack

    box = InputBox.from_pixels(x, eps, data_spec.mean, data_spec.std)
    cfg = AttackConfig(steps=PGD["steps"], step_size=PGD["step_size"], restarts=PGD["restarts"], objective="margin")
    x_adv = pgd_attack(model, box, y, cfg, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(x_adv).argmax(1) == y, x_adv.detach()


def _certifier(model, data_spec, eps: float, method: str):
    """A function ``bound(x, y)`` -> ``[B]``: the least lower bound ``method`` proves for the margins z_y − z_j
    over the box (> 0: certified).

    The model is wrapped once, in eval mode, through ``adcert_plugin.bounds`` (never auto_LiRPA directly).
    CROWN is taken elementwise with IBP's bound (the larger of the two lower bounds on each margin), as
    the reference verification does: on IBP-trained networks CROWN alone is often looser than IBP.
    """
    from adcert_plugin.bounds import wrap_model

    bounded = wrap_model(model.eval(), data_spec.shape)

    def bound(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        lowers = [torch.zeros(0)]
        with torch.no_grad():
            for i in range(0, len(x), _BATCH):
                box = InputBox.from_pixels(x[i : i + _BATCH], eps, data_spec.mean, data_spec.std)
                lower = bounded.margin_lower(box, y[i : i + _BATCH], method)
                if method == "CROWN":  # both are sound lower bounds: the better one on each margin
                    lower = torch.maximum(lower, bounded.margin_lower(box, y[i : i + _BATCH], "IBP"))
                lowers.append(lower.amin(dim=1).float())
        return torch.cat(lowers)

    return bound


def _examine(model, images, labels, block, data_spec, eps, seed, filter_pgd, bound, counts) -> list:
    """(index, PGD-robust, qualifies, attack point, bound or None) per sample of ``block``.

    Only the samples PGD lets through are bounded.
    """
    robust, points = _pgd_robust(model, images[block], labels[block], eps, data_spec, seed)
    robust = robust.tolist()
    counts["pgd_examined"] += len(robust)
    counts["pgd_robust"] += sum(robust)
    lowers: list[float | None] = [None] * len(robust)
    if bound is not None:
        todo = [i for i, flag in enumerate(robust) if flag or not filter_pgd]
        rows = block[torch.as_tensor(todo, dtype=torch.long)]
        found = bound(images[rows], labels[rows]).tolist()
        counts["bound_examined"] += len(found)
        counts["bound_certified"] += sum(value > 0 for value in found)
        for i, value in zip(todo, found):
            lowers[i] = value
    return [
        (index, bool(flag), (flag or not filter_pgd) and not (low is not None and low > 0), point, low)
        for index, flag, point, low in zip(block.tolist(), robust, points, lowers)
    ]


def _none_qualify(n_correct: int, filter_pgd: bool, skip_certified: str | None, counts: dict) -> ExportError:
    """The error for a selection that found no sample, saying which filter emptied it."""
    if n_correct and skip_certified and counts["bound_examined"] == counts["bound_certified"] > 0:
        which = "correctly classified" + (" and PGD-robust" if filter_pgd else "")
        return ExportError(
            f"every {which} sample is already certified by {skip_certified}; drop --skip-certified or raise --eps"
        )
    return ExportError(
        "no test sample qualifies (none correctly classified" + (" and PGD-robust)" if filter_pgd else ")")
    )


def sample_range(total: int, start: int | None, end: int | None) -> tuple[int, int]:
    """The test-index range ``[start, end)`` samples are drawn from, checked as adcert-eval checks it."""
    select_indices(total, start, end, None, 0)  # raises ConfigError: reversed, empty, or outside the split
    return (start or 0), (total if end is None else end)


def select_samples(
    model,
    images,
    labels,
    data_spec,
    eps,
    n,
    seed,
    filter_pgd,
    skip_certified=None,
    start: int | None = None,
    end: int | None = None,
) -> dict:
    """Draw n correctly classified samples of test indices ``[start, end)``; attack them (and more,
    with ``filter_pgd``).

    With ``skip_certified`` (a method of ``SKIP_METHODS``) a sample also has to escape that
    bound: samples whose margins it proves positive over the eps box are skipped. The range is
    adcert-eval's ``--start/--end``: an export of the range an eval covered can be cross-checked
    with that eval's report (adcert-report).

    Besides the indices, the selection keeps each chosen sample's evidence: its PGD point
    (``points``, normalised) and the least margin lower bound of a cheap bound (``bound``:
    ``skip_certified``'s, else IBP's), so that verifier answers can be checked against both.
    """
    lo, hi = sample_range(len(labels), start, end)
    correct = lo + torch.nonzero(_predict(model, images[lo:hi], data_spec) == labels[lo:hi]).flatten().numpy()
    order = np.random.default_rng(seed).permutation(correct)
    chosen: list[tuple] = []
    counts = {"pgd_examined": 0, "pgd_robust": 0, "bound_examined": 0, "bound_certified": 0}
    filtering = filter_pgd or skip_certified is not None
    bound = _certifier(model, data_spec, eps, skip_certified) if skip_certified else None
    step = max(n, 32)
    for start in range(0, len(order), step):
        block = torch.as_tensor(order[start : start + (step if filtering else n)])
        for found in _examine(model, images, labels, block, data_spec, eps, seed + start, filter_pgd, bound, counts):
            if found[2] and len(chosen) < n:
                chosen.append(found)
        if len(chosen) >= n or not filtering:
            break
    if len(chosen) < n:
        logger.warning("only %d of %d requested samples qualify", len(chosen), n)
    if not chosen:
        raise _none_qualify(len(correct), filter_pgd, skip_certified, counts)
    indices = [found[0] for found in chosen]
    return {
        "indices": indices,
        "clean_correct": len(correct),
        "test_size": hi - lo,
        "pgd_flags": [found[1] for found in chosen],
        "skip_certified": skip_certified,
        "points": torch.stack([found[3] for found in chosen]),
        "bound": _chosen_bounds(model, images, labels, indices, data_spec, eps, skip_certified, chosen),
        **counts,
    }


def _chosen_bounds(model, images, labels, indices, data_spec, eps, skip_certified, chosen) -> dict:
    """``{"method", "lower": [...]}`` for the chosen samples: the filter's bounds, else IBP on them (cheap)."""
    if skip_certified is not None:
        return {"method": skip_certified, "lower": [float(found[4]) for found in chosen]}
    rows = torch.as_tensor(indices, dtype=torch.long)
    lower = _certifier(model, data_spec, eps, "IBP")(images[rows], labels[rows])
    return {"method": "IBP", "lower": [float(v) for v in lower]}

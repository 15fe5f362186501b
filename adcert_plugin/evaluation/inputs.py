"""What an evaluation is asked: methods, ε, the sample range, the checkpoint and its data split.

Every check here runs before any sample is evaluated, so bad input is a one-line error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from ..attacks import AttackConfig
from ..bounds import METHODS
from ..data import get_data_spec, load_split, validation_split
from ..errors import ConfigError, DataError
from ..training import load_model


def resolve_methods(methods: Sequence[str] | str) -> tuple[str, ...]:
    """Validate bound-method names (case-insensitive, comma lists allowed); cascade order."""
    names = methods.split(",") if isinstance(methods, str) else [p for m in methods for p in str(m).split(",")]
    names = [m.strip() for m in names if m.strip()]
    by_lower = {m.lower(): m for m in METHODS}
    unknown = [m for m in names if m.lower() not in by_lower]
    if unknown or not names:
        raise ConfigError(
            f"unknown bound method {', '.join(unknown) or '(none given)'}; choose from {', '.join(METHODS)}"
        )
    chosen = {by_lower[m.lower()] for m in names}
    return tuple(m for m in METHODS if m in chosen)


def training_eps(record: dict, checkpoint: Path) -> float:
    """The eps the checkpoint was trained for: ``config.schedule.eps``, else ``config.eps``."""
    config = record.get("config") or {}
    schedule = config.get("schedule")
    schedule = schedule if isinstance(schedule, dict) else {}
    value = schedule.get("eps", config.get("eps"))
    if value is None:
        raise ConfigError(f"{checkpoint} records no training eps; pass --eps")
    return float(value)


def select_indices(total: int, start: int | None, end: int | None, n: int | None, seed: int) -> list[int]:
    """Test indices in ``[start, end)``, or a seeded random ``n`` of them, ascending."""
    check_range(start, end)
    lo, hi = (0 if start is None else start), (total if end is None else end)
    if not 0 <= lo < hi <= total:
        raise ConfigError(
            f"sample range start={start}, end={end} is not inside the test split of {total} "
            f"images; pick indices in [0, {total})"
        )
    if n is None:
        return list(range(lo, hi))
    if not 1 <= n <= hi - lo:
        raise ConfigError(f"n={n} must be in 1..{hi - lo} (the size of the range [{lo}, {hi}))")
    pick = torch.randperm(hi - lo, generator=torch.Generator().manual_seed(seed))[:n]
    return sorted(lo + int(i) for i in pick)


def check_range(start: int | None, end: int | None) -> None:
    """Refuse a reversed or empty ``[start, end)`` before any data is read."""
    if start is not None and end is not None and start >= end:
        raise ConfigError(
            f"sample range start={start}, end={end} is reversed or empty: it selects "
            f"[{start}, {end}); pass --start below --end"
        )


def check_eps(eps: float) -> bool:
    """A pixel-space radius that means something: finite, in (0, 1] (images lie in [0, 1])."""
    return math.isfinite(eps) and 0 < eps <= 1


def _check_numbers(eps, batch_size, attack: AttackConfig) -> None:
    if eps is not None and not check_eps(float(eps)):
        raise ConfigError(
            f"eps={eps}: must be > 0 and at most 1 (pixel space, where images lie in [0, 1]; e.g. 0.1 for MNIST)"
        )
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}: must be ≥ 1")
    if attack.objective not in ("ce", "margin"):
        raise ConfigError(f"attack objective {attack.objective!r}: evaluation attacks ce or margin")
    if attack.eps_factor != 1.0:
        raise ConfigError(f"attack eps_factor={attack.eps_factor}: evaluation attacks inside the certified box (1.0)")


def _load_eval_split(dataset: str, split: str, data_dir, record: dict, checkpoint: Path):
    if split == "test":
        return load_split(dataset, "test", data_dir)
    if split != "validation":
        raise ConfigError(f"unknown split {split!r}; use test or validation")
    size = int(record.get("config", {}).get("data", {}).get("validation_size") or 0)
    if size <= 0:
        raise ConfigError(
            f"{checkpoint} was trained without a validation holdout (data.validation_size: 0); "
            "evaluate it on the test split"
        )
    return validation_split(*load_split(dataset, "train", data_dir), size)[1]


def _load(checkpoint: Path, arch: str | None, dataset: str | None):
    if arch is None:
        return load_model(checkpoint)
    if dataset is None:
        raise ConfigError("--arch needs --dataset (the input shape and class count come from it)")
    spec = get_data_spec(dataset)
    return load_model(checkpoint, arch=arch, in_shape=spec.shape, num_classes=spec.num_classes)


def _check_fit(record: dict, spec, checkpoint: Path) -> None:
    in_shape, classes = tuple(record["arch"]["in_shape"]), int(record["arch"]["num_classes"])
    if in_shape != tuple(spec.shape) or classes != spec.num_classes:
        raise DataError(
            f"data set {spec.name} has images {tuple(spec.shape)} and {spec.num_classes} classes, but "
            f"{checkpoint} expects {in_shape} and {classes}; pass the data set the model was trained on"
        )


def _check_data(x: torch.Tensor, y: torch.Tensor, record: dict, dataset: str) -> None:
    in_shape, classes = tuple(record["arch"]["in_shape"]), int(record["arch"]["num_classes"])
    if tuple(x.shape[1:]) != in_shape:
        raise DataError(f"{dataset} test images have shape {tuple(x.shape[1:])}, the model expects {in_shape}")
    if len(y) and not (int(y.min()) >= 0 and int(y.max()) < classes):
        raise DataError(f"{dataset} labels span {int(y.min())}..{int(y.max())}, the model has {classes} classes")


def _ranges(indices: list[int]) -> list[list[int]]:
    """Compress sorted indices into [first, last] runs (for config.json)."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return runs

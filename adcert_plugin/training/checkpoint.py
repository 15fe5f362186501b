"""Checkpoints: atomic writes (``io.atomic_file``), safe reads (``torch.load(weights_only=True)``).

An adcert checkpoint is a plain dict of tensors and primitives, never pickled code:

    {"format": "adcert-checkpoint", "version": 1,
     "arch": {"name": str, "in_shape": [C, H, W], "num_classes": K, "kwargs": {...}},
     "dataset": str | None,          # data-set registry name (mean/std come from it)
     "model": state_dict,            # the student only: no teacher, no projection head
     "config": dict,                 # the resolved run config, plain types
     "state": dict}                  # trainer state for --resume (optimizer, epoch, rng, ...)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..io import atomic_file
from ..models import create_model

FORMAT = "adcert-checkpoint"
VERSION = 1


def arch_record(name: str, in_shape, num_classes: int, kwargs: dict | None = None) -> dict:
    return {"name": name, "in_shape": [int(v) for v in in_shape], "num_classes": int(num_classes),
            "kwargs": _plain(dict(kwargs or {}))}


def _plain(value: Any) -> Any:
    """Turn tuples into lists recursively so a record survives weights_only loading and YAML."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def atomic_save(obj: Any, path: str | Path) -> Path:
    """torch.save, atomically."""
    with atomic_file(path, "wb") as f:
        torch.save(obj, f)
    return Path(path)


def save_checkpoint(path: str | Path, model: nn.Module, arch: dict, dataset: str | None = None,
                    config: dict | None = None, state: dict | None = None) -> Path:
    """Write an adcert checkpoint atomically."""
    record = {"format": FORMAT, "version": VERSION, "arch": arch, "dataset": dataset,
              "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
              "config": _plain(config or {}), "state": state or {}}
    return atomic_save(record, path)


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint file safely; raise CheckpointError with advice on failure."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the path of a model.pt or last.pt file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for bad files; wrap them at the boundary
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"cannot load {path} safely (weights_only=True): {first}") from err


def load_model(path: str | Path, arch: str | None = None, in_shape=None, num_classes: int | None = None,
               **kwargs) -> tuple[nn.Module, dict]:
    """Build and load the model of a checkpoint. Returns (model in eval mode, checkpoint record).

    A plain state_dict is accepted when ``arch``, ``in_shape`` and ``num_classes`` are given.
    """
    record = read_checkpoint(path)
    if isinstance(record, dict) and record.get("format") == FORMAT:
        spec = record["arch"]
    elif isinstance(record, dict) and arch is not None and in_shape is not None and num_classes is not None:
        spec = arch_record(arch, in_shape, num_classes, kwargs)
        record = {"format": FORMAT, "version": VERSION, "arch": spec, "dataset": None,
                  "model": record.get("state_dict", record), "config": {}, "state": {}}
    else:
        raise CheckpointError(f"{path} is not an adcert checkpoint; give --arch (and the data set) "
                              "to load it as a plain state_dict")
    model = create_model(spec["name"], spec["in_shape"], spec["num_classes"], **spec.get("kwargs", {}))
    try:
        model.load_state_dict(record["model"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit architecture {spec['name']!r}: "
                              f"{str(err).splitlines()[0]}") from err
    return model.eval(), record

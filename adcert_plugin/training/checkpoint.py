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

from ..errors import CheckpointError, UnknownModelError
from ..io import atomic_file
from ..models import create_model

FORMAT = "adcert-checkpoint"
VERSION = 1


def arch_record(name: str, in_shape, num_classes: int, kwargs: dict | None = None) -> dict:
    return {
        "name": name,
        "in_shape": [int(v) for v in in_shape],
        "num_classes": int(num_classes),
        "kwargs": _plain(dict(kwargs or {})),
    }


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


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    arch: dict,
    dataset: str | None = None,
    config: dict | None = None,
    state: dict | None = None,
) -> Path:
    """Write an adcert checkpoint atomically."""
    record = {
        "format": FORMAT,
        "version": VERSION,
        "arch": arch,
        "dataset": dataset,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": _plain(config or {}),
        "state": state or {},
    }
    return atomic_save(record, path)


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint file safely; raise CheckpointError with advice on failure.

    torch's own advice for a file weights_only refuses ("re-run with weights_only=False") is
    never passed on: that would execute the file's pickled code. The message says what the
    file is instead.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; pass the path of a file in it, e.g. {path / 'model.pt'}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the path of a model.pt or last.pt file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for bad files; wrap them at the boundary
        raise CheckpointError(f"cannot load {path}: {_why_unloadable(path, err)}") from err


def _why_unloadable(path: Path, err: Exception) -> str:
    """What a file torch.load(weights_only=True) refused is, in our words (never torch's advice)."""
    text = str(err)
    if path.stat().st_size == 0:
        return "the file is empty; pass the path of a model.pt or last.pt file"
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # neither torch's zip nor a pickle
        return (
            "it is not a PyTorch checkpoint (no zip or pickle header); pass the path of a model.pt or last.pt "
            "file written by adcert-train"
        )
    if "Unsupported global" in text or "Unsupported class" in text:
        return (
            "it holds pickled Python objects besides tensors and plain values, which adcert never loads "
            "(that could run code from the file); save only a state_dict of tensors, e.g. "
            "torch.save(model.state_dict(), path), and pass it with --arch"
        )
    return (
        "it starts like a PyTorch file but torch cannot read it: it is damaged or cut short (a copy or a "
        "download that did not finish?); copy it again, or pass another model.pt or last.pt"
    )


def check_record(record: dict, path: str | Path) -> dict:
    """Check an adcert checkpoint's fields before use; returns it with optional fields filled in.

    Raises:
        CheckpointError: a field is missing or of the wrong type (one line naming the field).
    """

    def bad(what: str) -> CheckpointError:
        return CheckpointError(
            f"{path} looks like an adcert checkpoint but {what}; the file is damaged or was "
            "not written by adcert: retrain, or export it again from the run that made it"
        )

    version = record.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"{path} is an adcert checkpoint of format version {version!r}, and this adcert reads "
            f"version {VERSION} and older: it was written by a newer adcert; upgrade adcert to read it"
        )
    arch = record.get("arch")
    if not isinstance(arch, dict):
        raise bad("has no 'arch' record")
    shape, classes = arch.get("in_shape"), arch.get("num_classes")
    if not isinstance(arch.get("name"), str):
        raise bad("its 'arch' record lacks the model name ('name')")
    if not (isinstance(shape, (list, tuple)) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape)):
        raise bad(f"its 'arch' record has no input shape [C, H, W] ('in_shape': {shape!r})")
    if not (isinstance(classes, int) and classes >= 1):
        raise bad(f"its 'arch' record has no class count ('num_classes': {classes!r})")
    if not isinstance(arch.get("kwargs", {}), dict):
        raise bad("its 'arch' record has 'kwargs' that are not a mapping")
    model = record.get("model")
    if not isinstance(model, dict) or not all(isinstance(v, torch.Tensor) for v in model.values()):
        raise bad("has no weights ('model' must be a state_dict of tensors)")
    check_finite(model, path)
    for key in ("config", "state"):
        if not isinstance(record.get(key) or {}, dict):
            raise bad(f"its {key!r} is not a mapping")
    if not isinstance(record.get("dataset"), (str, type(None))):
        raise bad(f"its 'dataset' is not a data-set name ({record.get('dataset')!r})")
    return {
        **record,
        "arch": {**arch, "kwargs": arch.get("kwargs", {})},
        "dataset": record.get("dataset"),
        "config": record.get("config") or {},
        "state": record.get("state") or {},
    }


def check_finite(state: dict, path: str | Path) -> None:
    """Refuse weights holding NaN or infinity: such a model's logits are NaN and its argmax meaningless."""
    for name, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(
                f"{path}: weight {name!r} holds {bad} NaN or infinite values, so the model's "
                "outputs are meaningless; use a checkpoint of an epoch before training diverged "
                "(best.pt, or last.pt of an earlier run)"
            )


def load_model(
    path: str | Path, arch: str | None = None, in_shape=None, num_classes: int | None = None, **kwargs
) -> tuple[nn.Module, dict]:
    """Build and load the model of a checkpoint. Returns (model in eval mode, checkpoint record).

    A plain state_dict is accepted when ``arch``, ``in_shape`` and ``num_classes`` are given.
    """
    record = read_checkpoint(path)
    if isinstance(record, dict) and record.get("format") == FORMAT:
        record = check_record(record, path)
        spec = record["arch"]
    elif isinstance(record, dict) and arch is not None and in_shape is not None and num_classes is not None:
        spec = arch_record(arch, in_shape, num_classes, kwargs)
        record = {
            "format": FORMAT,
            "version": VERSION,
            "arch": spec,
            "dataset": None,
            "model": record.get("state_dict", record),
            "config": {},
            "state": {},
        }
        check_finite(record["model"], path)
    else:
        raise CheckpointError(
            f"{path} is not an adcert checkpoint; give --arch (and the data set) to load it as a plain state_dict"
        )
    try:
        model = create_model(spec["name"], spec["in_shape"], spec["num_classes"], **spec.get("kwargs", {}))
    except (TypeError, ValueError, UnknownModelError) as err:
        raise CheckpointError(
            f"{path}: architecture {spec['name']!r} cannot be built from its record "
            f"(kwargs {spec.get('kwargs')}): {' '.join(str(err).split())}"
        ) from err
    try:
        model.load_state_dict(record["model"])
    except (RuntimeError, TypeError, AttributeError) as err:
        raise CheckpointError(
            f"{path}: weights do not fit architecture {spec['name']!r}: "
            f"{(str(err).splitlines() or [type(err).__name__])[0]}"
        ) from err
    return model.eval(), record

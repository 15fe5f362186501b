"""Load the frozen teacher of a distillation run from a checkpoint, checked against the student."""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError, ConfigError, UnknownModelError
from ..losses.teacher import Teacher
from ..models import split_head
from .checkpoint import load_model
from .presets import preset_writing


def load_teacher(
    path: str | Path,
    arch: str | None = None,
    in_shape=None,
    num_classes: int | None = None,
    expect_shape=None,
    expect_classes: int | None = None,
    expect_dataset: str | None = None,
    **arch_kwargs,
) -> Teacher:
    """Load a frozen teacher from an adcert checkpoint or a plain state_dict.

    Args:
        path: checkpoint file (adcert format, or a state_dict with ``arch``/``in_shape``/``num_classes``).
        arch, in_shape, num_classes, arch_kwargs: architecture of a plain state_dict.
        expect_shape: the student's input shape (C, H, W); a different teacher shape is refused.
        expect_classes: the student's number of classes; a different teacher K is refused.
        expect_dataset: the student's data set; a teacher checkpoint that records another one
            (Fashion-MNIST for an MNIST student: same shape, same K) is refused.

    Raises:
        ConfigError: the teacher does not fit the student's data set or is not a Sequential
            ending in Linear.
        CheckpointError: the file is missing (the message names the preset that trains it and
            --teacher), unsafe, malformed, or its weights do not fit the architecture.
    """
    if not Path(path).is_file() and not Path(path).is_dir():  # a folder: read_checkpoint says so
        preset = preset_writing(path)
        first = (
            f"train it first (adcert-train --preset {preset}) or " if preset else "train a pgd or trades teacher, or "
        )
        raise CheckpointError(
            f"teacher checkpoint {path} does not exist; {first}pass --teacher PATH (the model.pt of a teacher run)"
        )
    model, record = load_model(path, arch=arch, in_shape=in_shape, num_classes=num_classes, **arch_kwargs)
    spec = record["arch"]
    trained_on = record.get("dataset")
    if expect_dataset is not None and trained_on is not None and trained_on != expect_dataset:
        raise ConfigError(
            f"teacher {path} was trained on {trained_on} but the student trains on {expect_dataset}; "
            "use a teacher trained on the student's data set"
        )
    if expect_classes is not None and int(spec["num_classes"]) != int(expect_classes):
        raise ConfigError(
            f"teacher {path} predicts {spec['num_classes']} classes but the student has "
            f"{expect_classes}; use a teacher trained on the student's data set"
        )
    if expect_shape is not None and tuple(spec["in_shape"]) != tuple(expect_shape):
        raise ConfigError(
            f"teacher {path} takes inputs {tuple(spec['in_shape'])} but the data are "
            f"{tuple(expect_shape)}; use a teacher trained on the student's data set"
        )
    try:
        split_head(model)
    except UnknownModelError as err:
        raise ConfigError(f"teacher {path}: {err}; a teacher must be nn.Sequential ending in nn.Linear") from err
    return Teacher(model)

"""Run configuration: frozen dataclasses and strict YAML/JSON loading.

``__post_init__`` checks ranges and cross-field rules before any data is loaded; the layers
(defaults < preset < file < flags < ``--set``) are merged in ``layering.py``.

``eps`` is pixel-space; every ``*_epochs`` / ``milestones`` value counts epochs (1-based).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from .. import models
from ..attacks import AttackConfig
from ..errors import ConfigError, UnknownModelError
from ..io import atomic_file
from .strict import build, check, plain

Device = Literal["cpu", "cuda", "auto"]
Conventions = Literal["expressive-losses", "ctbench"]
Augmentation = Literal["none", "cifar", "tinyimagenet"]


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "mnist"
    data_dir: str | None = None  # None: the data rule (adcert_plugin.data.DATA_RULE)
    train_subset: int | None = None  # None: the whole training split
    test_subset: int | None = 1000  # the first N test images, evaluated after each epoch (None: all)
    validation_size: int = 0  # > 0: hold out this many training images (data.validation_split);
    # training never sees them, and the per-epoch check uses them, not test
    batch_size: int = 256  # the global batch (split across ranks under torchrun)
    augmentation: Augmentation | None = None  # None: the data set's default

    def __post_init__(self):
        from ..data import list_datasets

        known = list_datasets()
        check(self.dataset in known, "dataset", self.dataset, f"unknown data set; known: {', '.join(known)}")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        check(self.validation_size >= 0, "validation_size", self.validation_size, "must be >= 0 (0: no holdout)")
        for name in ("train_subset", "test_subset"):
            value = getattr(self, name)
            check(value is None or value >= 1, name, value, "must be >= 1 (or null for the whole split)")


@dataclass(frozen=True)
class ModelConfig(models.ModelConfig):
    ibp_init: bool = True  # Shi et al. IBP initialisation of every Conv/Linear but the last

    def __post_init__(self):
        if self.name not in models.list_models():
            close = difflib.get_close_matches(self.name, models.list_models(), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UnknownModelError(f"unknown model {self.name!r}{hint}; known: {', '.join(models.list_models())}")


@dataclass(frozen=True)
class LossConfig:
    """A registered loss and its parameters (checked against the loss's own config dataclass)."""

    name: str = "ibp"
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        self.create()  # raises UnknownLossError / ConfigError on a bad name or parameter

    def create(self):
        from ..losses import create_loss

        return create_loss(self.name, **self.params)


@dataclass(frozen=True)
class ScheduleConfig:
    """Epochs, the smoothed eps ramp (auto_LiRPA SmoothedScheduler) and the warm-up regulariser."""

    epochs: int = 70
    eps: float = 0.1  # target eps (pixel space); evaluation always uses it
    train_eps_mul: float = 1.0  # training eps = ramp value × this (MNIST: 2.0 at 0.1, 1.334 at 0.3)
    eps_start_epoch: int = 1  # first epoch of the ramp (1-based); earlier epochs are natural
    eps_length_epochs: int = 20  # ramp length; 0 = full eps from eps_start_epoch on
    mid: float = 0.25  # polynomial → linear switch, as a fraction of the ramp
    beta: float = 4.0  # polynomial exponent
    reg_lambda: float = 0.5  # warm-up regulariser weight λ (decays as λ·(1 − ε_t/ε_max))
    reg_tolerance: float = 0.5  # τ of the Shi et al. regularisers

    def __post_init__(self):
        check(self.epochs >= 1, "epochs", self.epochs, "must be >= 1")
        check(
            math.isfinite(self.eps) and 0 <= self.eps <= 1,
            "eps",
            self.eps,
            "must be in [0, 1]: pixel space, where images lie in [0, 1] (e.g. 0.1 for MNIST, 0.0314 for 8/255)",
        )
        check(self.train_eps_mul > 0, "train_eps_mul", self.train_eps_mul, "must be > 0")
        check(self.eps_start_epoch >= 1, "eps_start_epoch", self.eps_start_epoch, "must be >= 1 (1-based epoch)")
        check(self.eps_length_epochs >= 0, "eps_length_epochs", self.eps_length_epochs, "must be >= 0")
        check(0.0 <= self.mid < 1.0, "mid", self.mid, "must be in [0, 1)")
        check(self.beta >= 2.0, "beta", self.beta, "must be >= 2 (as in auto_LiRPA)")
        check(self.reg_lambda >= 0, "reg_lambda", self.reg_lambda, "must be >= 0")
        check(self.reg_tolerance > 0, "reg_tolerance", self.reg_tolerance, "must be > 0")

    @property
    def natural_epochs(self) -> int:
        """Epochs of natural training (eps = 0) before the ramp starts."""
        return self.eps_start_epoch - 1

    @property
    def ramp_end_epoch(self) -> int:
        """The last epoch of the ramp (the warm-up regulariser is active up to here)."""
        return self.eps_start_epoch + self.eps_length_epochs - 1


@dataclass(frozen=True)
class OptimConfig:
    """Adam, MultiStepLR (×gamma after each milestone epoch), clipping, L1, accumulation."""

    lr: float = 5e-4
    milestones: tuple[int, ...] = (50, 60)
    gamma: float = 0.2
    grad_clip: float | None = 10.0  # max gradient norm; null disables
    l1: float = 0.0  # coefficient of Σ|W| over Conv/Linear weights
    grad_acc_steps: int = 1

    def __post_init__(self):
        check(self.lr > 0, "lr", self.lr, "must be > 0")
        check(
            all(m >= 1 for m in self.milestones) and list(self.milestones) == sorted(set(self.milestones)),
            "milestones",
            list(self.milestones),
            "must be strictly increasing epochs >= 1",
        )
        check(0 < self.gamma <= 1, "gamma", self.gamma, "must be in (0, 1]")
        check(self.grad_clip is None or self.grad_clip > 0, "grad_clip", self.grad_clip, "must be > 0 or null")
        check(self.l1 >= 0, "l1", self.l1, "must be >= 0")
        check(self.grad_acc_steps >= 1, "grad_acc_steps", self.grad_acc_steps, "must be >= 1")


@dataclass(frozen=True)
class EvalConfig:
    """Per-epoch evaluation on the held-out test subset, at the target eps."""

    pgd_steps: int = 40
    pgd_step_size: float = 0.1  # relative to the box half-width (methods.md B.2.3)
    pgd_restarts: int = 1
    batch_size: int | None = None  # None: data.batch_size

    def __post_init__(self):
        check(self.pgd_steps >= 1, "pgd_steps", self.pgd_steps, "must be >= 1")
        check(self.pgd_step_size > 0, "pgd_step_size", self.pgd_step_size, "must be > 0")
        check(self.pgd_restarts >= 1, "pgd_restarts", self.pgd_restarts, "must be >= 1")
        check(self.batch_size is None or self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")

    def attack(self) -> AttackConfig:
        return AttackConfig(steps=self.pgd_steps, step_size=self.pgd_step_size, restarts=self.pgd_restarts)


@dataclass(frozen=True)
class RecipeConfig:
    """The training framework's conventions and what comes with them (methods.md Part A, §9).

    ``conventions``: ``expressive-losses`` (De Palma et al.: the loss alone, BN statistics of the
    adversarial batch while bounding, the attack in eval mode, plain CE in the ε-0 epochs) or
    ``ctbench`` (the AD-CERT paper's framework: the clean batch's BN statistics frozen for the
    attack (run in train mode), the adversarial forward and the bound; CTBench's PGD; the robust
    loss at ε = 0 in the ε-0 epochs). Under both: the total loss is (1 − w)·CE(f(x), y) + w·L_rob,
    w = ``robust_weight`` (linear from ``robust_weight_start`` over epochs
    ``robust_weight_epochs``, when given); SWA from ``swa_start_epoch`` (the running average of the
    weights, updated every ``swa_freq`` optimizer steps after that epoch's first step; the averaged
    model, its BN statistics re-estimated on the training set, is the run's ``model.pt``);
    ``pop_bn`` re-estimates the BN running statistics on the whole training set after each epoch.
    ``clean_forward`` (expressive-losses): a clean train-mode forward before the loss every step, as
    the expressive-losses code does, so the running statistics move with the clean batch and then
    the adversarial one (without it they move with the adversarial batch only); always on with w < 1.
    """

    conventions: Conventions = "expressive-losses"
    robust_weight: float = 1.0
    robust_weight_start: float | None = None
    robust_weight_epochs: tuple[int, ...] = ()  # (first, last) epoch of the linear ramp, 1-based
    swa_start_epoch: int | None = None
    swa_freq: int = 10
    pop_bn: bool = False
    clean_forward: bool = False

    def __post_init__(self):
        check(0.0 <= self.robust_weight <= 1.0, "robust_weight", self.robust_weight, "must be in [0, 1]")
        check(
            self.robust_weight_start is None or 0.0 <= self.robust_weight_start <= 1.0,
            "robust_weight_start",
            self.robust_weight_start,
            "must be in [0, 1] or null",
        )
        ramp = list(self.robust_weight_epochs)
        check(
            ramp == [] or (len(ramp) == 2 and 1 <= ramp[0] <= ramp[1]),
            "robust_weight_epochs",
            ramp,
            "must be [] or [first, last] epochs with 1 <= first <= last",
        )
        check(
            self.robust_weight_start is None or len(ramp) == 2,
            "robust_weight_start",
            self.robust_weight_start,
            "needs robust_weight_epochs: [first, last]",
        )
        check(
            self.swa_start_epoch is None or self.swa_start_epoch >= 1,
            "swa_start_epoch",
            self.swa_start_epoch,
            "must be >= 1 (1-based epoch) or null",
        )
        check(self.swa_freq >= 1, "swa_freq", self.swa_freq, "must be >= 1 (optimizer steps)")


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    teacher: str | None = None  # teacher checkpoint, for losses that need one
    seed: int = 100
    out_dir: str = "runs/adcert"
    device: Device = "cpu"

    def __post_init__(self):
        needs = self.loss.create().needs
        if "teacher" in needs and not self.teacher:
            raise ConfigError(
                f"loss {self.loss.name!r} needs a teacher; pass --teacher PATH "
                "(the model.pt of a pgd or trades run) or set `teacher:` in the config"
            )

    def to_dict(self) -> dict:
        return plain(dataclasses.asdict(self))


def config_from_dict(data: dict, source: str = "<dict>") -> TrainConfig:
    """Strictly build a TrainConfig from a (partial) nested dict; missing keys take defaults."""
    return build(TrainConfig, data, source)


# -- files ----------------------------------------------------------------------------------


def read_config_file(path: str | Path) -> dict:
    """Parse a YAML or JSON file into a dict (no validation)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder; pass a YAML/JSON file to --config")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass an existing YAML/JSON file to --config")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text file (not UTF-8); pass a YAML/JSON config to --config") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot parse {path}: {' '.join(str(err).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_config(path: str | Path) -> TrainConfig:
    """Read and strictly validate a config file."""
    return config_from_dict(read_config_file(path), str(path))


def save_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML, atomically."""
    with atomic_file(path, "w") as f:
        yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)
    return Path(path)

"""The unified-setup experiment's configuration: what every student shares, the teacher, the α grid.

``ExperimentConfig`` validates every loss name and parameter, and the evaluation methods,
before any data is loaded (``__post_init__`` builds each run's ``TrainConfig``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ..attacks import AttackConfig
from ..errors import ConfigError
from ..evaluation import DEFAULT_ATTACK, resolve_methods
from ..training import (
    DataConfig,
    EvalConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RecipeConfig,
    ScheduleConfig,
    TrainConfig,
)
from ..training.config import Device
from ..training.strict import plain

STUDENTS = ("mtl-ibp", "cc-ibp", "cc-dist", "ad-cert")
TEACHER_LOSS = "pgd"


@dataclass(frozen=True)
class EvalSettings:
    """How every model is evaluated (``evaluate``): the same subset, attack and bound cascade."""

    n: int | None = 1000  # seeded random test subset; None: the whole split
    methods: tuple[str, ...] = ("IBP", "CROWN")  # bound cascade (certified accuracy is cumulative)
    attack: AttackConfig = field(default_factory=lambda: DEFAULT_ATTACK)  # PGD-40, η = 0.035 (B.4.3)
    batch_size: int = 256
    seed: int = 0  # picks the subset and the PGD starts


@dataclass(frozen=True)
class TeacherSettings:
    """The PGD teacher: the students' data and model, no IBP init, its own schedule and attack."""

    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(train_eps_mul=1.0, reg_lambda=0.0))
    optim: OptimConfig = field(default_factory=OptimConfig)
    attack: AttackConfig = field(default_factory=lambda: AttackConfig(steps=10, step_size=0.25))  # PGD-10, ε/4


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything the students share, the teacher's recipe, the α grid and the evaluation."""

    name: str
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)  # the students' training attack
    monitor: EvalConfig = field(default_factory=EvalConfig)  # per-epoch check during training
    recipe: RecipeConfig = field(default_factory=RecipeConfig)  # the training conventions (expressive-losses/ctbench)
    teacher: TeacherSettings = field(default_factory=TeacherSettings)
    methods: tuple[str, ...] = STUDENTS
    alpha: float = 0.1  # the one α of the main comparison
    sweep: tuple[float, ...] = ()  # extra α values, for every method
    loss_params: dict = field(default_factory=dict)  # method -> other loss params (beta, tau, ...)
    evaluation: EvalSettings = field(default_factory=EvalSettings)
    seed: int = 100
    extra_seeds: tuple[int, ...] = ()  # retrain teacher + shared-α students with each
    device: Device = "cpu"

    def __post_init__(self):
        if self.seed in self.extra_seeds or len(set(self.extra_seeds)) != len(self.extra_seeds):
            raise ConfigError(
                f"experiment {self.name!r}: extra_seeds {list(self.extra_seeds)} must be distinct "
                f"and differ from seed={self.seed}"
            )
        for a in (self.alpha, *self.sweep):
            if not 0.0 <= a <= 1.0:
                raise ConfigError(f"experiment {self.name!r}: alpha={a} must be in [0, 1]")
        unknown = set(self.loss_params) - set(self.methods)
        if unknown:
            raise ConfigError(f"experiment {self.name!r}: loss_params for {sorted(unknown)}, which are not methods")
        resolve_methods(self.evaluation.methods)
        for method in self.methods:  # validates names and params before any data is loaded
            self.student_config(method, self.alpha, Path("."), Path("teacher.pt"))
        self.teacher_config(Path("."))

    def alphas(self) -> tuple[float, ...]:
        """The shared α and the sweep, ascending."""
        return tuple(sorted({self.alpha, *self.sweep}))

    def seeds(self) -> tuple[int, ...]:
        """The main seed, then the extra ones."""
        return (self.seed, *self.extra_seeds)

    def student_config(self, method: str, alpha: float, out_dir: Path, teacher: Path) -> TrainConfig:
        loss = LossConfig(method, {**self.loss_params.get(method, {}), "alpha": alpha})
        needs_teacher = "teacher" in loss.create().needs
        return TrainConfig(
            data=self.data,
            model=self.model,
            loss=loss,
            attack=self.attack,
            schedule=self.schedule,
            optim=self.optim,
            eval=self.monitor,
            recipe=self.recipe,
            teacher=str(teacher) if needs_teacher else None,
            seed=self.seed,
            out_dir=str(out_dir),
            device=self.device,
        )

    def teacher_config(self, out_dir: Path) -> TrainConfig:
        t = self.teacher
        return TrainConfig(
            data=self.data,
            model=dataclasses.replace(self.model, ibp_init=False),
            loss=LossConfig(TEACHER_LOSS, {}),
            attack=t.attack,
            schedule=t.schedule,
            optim=t.optim,
            eval=self.monitor,
            recipe=RecipeConfig(conventions=self.recipe.conventions),
            seed=self.seed,
            out_dir=str(out_dir),
            device=self.device,
        )

    def to_dict(self) -> dict:
        return plain(dataclasses.asdict(self))

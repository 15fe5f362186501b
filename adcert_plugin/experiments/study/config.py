"""The tuned comparison (issue 14): per-method grids selected on a validation holdout, then
a final evaluation of each selected setting over several seeds.

``StudyConfig`` holds what every run shares (data with its holdout, model, schedule, training
attack), the teacher's recipe, one grid per method (the cartesian product of its parameter
lists), how selection evaluates (validation samples, complete verifier, short timeout) and how
the final evaluation does (test samples, complete verifier, timeout, seeds).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path

from ...attacks import AttackConfig
from ...errors import ConfigError
from ...evaluation import DEFAULT_ATTACK, resolve_methods
from ...training import (
    DataConfig,
    EvalConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RecipeConfig,
    ScheduleConfig,
    TrainConfig,
)
from ...training.config import Device
from ...training.strict import plain
from ..config import TEACHER_LOSS, TeacherSettings

PAIRS = (("ad-cert", "mtl-ibp"), ("ad-cert", "cc-ibp"), ("ad-cert", "cc-dist"), ("cc-dist", "cc-ibp"))


@dataclass(frozen=True)
class StudyEval:
    """One evaluation setting: which samples, which bound cascade, which complete verifier."""

    n: int | None = 2000  # seeded subset of the split (None: all of it)
    methods: tuple[str, ...] = ("IBP", "CROWN")
    verifier: str | None = "neuralsat"  # complete verifier for what the cascade leaves open
    timeout: float = 60.0  # seconds per sample for the complete verifier
    attack: AttackConfig = field(default_factory=lambda: DEFAULT_ATTACK)  # PGD-40
    seed: int = 0
    jobs: int = 1  # verifier instances in parallel

    def __post_init__(self):
        resolve_methods(self.methods)
        if self.n is not None and self.n < 1:
            raise ConfigError(f"evaluation n={self.n} must be >= 1 (or null for the whole split)")
        if not self.timeout > 0:
            raise ConfigError(f"evaluation timeout={self.timeout} must be > 0 seconds")

    @classmethod
    def from_dict(cls, data: dict) -> StudyEval:
        """Back from ``dataclasses.asdict`` (how a setting crosses into a worker process)."""
        return cls(**{**data, "methods": tuple(data["methods"]), "attack": AttackConfig(**data["attack"])})


@dataclass(frozen=True)
class FrameworkArm:
    """Another training framework for the selected settings: how much of a gap is the framework.

    After selection, each method's selected loss parameters are trained again with every seed under
    these shared settings (the schedule, optimiser, training attack and recipe of another framework,
    e.g. the expressive-losses one of the ``mnist-0.1`` study), with the study's own data, network,
    teachers and final evaluation; results.json then holds both frameworks side by side.
    """

    name: str  # folder and column name, e.g. "expressive-losses"
    schedule: ScheduleConfig
    optim: OptimConfig
    attack: AttackConfig
    recipe: RecipeConfig = field(default_factory=RecipeConfig)

    def __post_init__(self):
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ConfigError(f"framework arm name {self.name!r}: give a plain folder name, e.g. expressive-losses")


@dataclass(frozen=True)
class StudyConfig:
    """A benchmark of the tuned comparison; ``grids[method][param]`` lists the values tried."""

    name: str
    description: str = ""
    data: DataConfig = field(default_factory=lambda: DataConfig(validation_size=5000))
    model: ModelConfig = field(default_factory=ModelConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    monitor: EvalConfig = field(default_factory=EvalConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)  # conventions, robust weight, SWA, population BN
    teacher: TeacherSettings = field(default_factory=TeacherSettings)
    grids: dict = field(default_factory=dict)  # method -> {param: [values]}
    fixed: dict = field(default_factory=dict)  # method -> {param: value}, not searched
    edge_extension: dict = field(default_factory=dict)  # method -> {param: ascending ladder} (study/selection.py)
    selection: StudyEval = field(default_factory=lambda: StudyEval(n=200, timeout=10.0))
    final: StudyEval = field(default_factory=StudyEval)
    seeds: tuple[int, ...] = (100, 101, 102)  # selection runs on the first; the rest retrain the choice
    processes: int = 2  # training processes at once (one torch thread each)
    device: Device = "cpu"
    framework_arm: FrameworkArm | None = None  # the selected settings also trained under another framework

    def __post_init__(self):
        if self.data.validation_size < 1:
            raise ConfigError(f"study {self.name!r}: data.validation_size must be > 0 (selection needs a holdout)")
        if not self.grids:
            raise ConfigError(f"study {self.name!r}: no grids; give each method its parameter lists")
        if len(set(self.seeds)) != len(self.seeds) or not self.seeds:
            raise ConfigError(f"study {self.name!r}: seeds {list(self.seeds)} must be distinct and not empty")
        if self.processes < 1:
            raise ConfigError(f"study {self.name!r}: processes={self.processes} must be >= 1")
        for method in self.grids:  # validates every name and value before any data is loaded
            for point in self.grid_points(method):
                self.student_config(method, point, Path("."), Path("teacher.pt"), self.seeds[0])
        self._check_edge_extension()
        self.teacher_config(Path("."), self.seeds[0])
        if self.framework_arm is not None:  # every method's first point must train under the arm too
            for method in self.grids:
                first = self.grid_points(method)[0]
                self.student_config(method, first, Path("."), Path("teacher.pt"), self.seeds[0], self.framework_arm)

    def _check_edge_extension(self) -> None:
        for method, ladders in self.edge_extension.items():
            if method not in self.grids:
                raise ConfigError(
                    f"study {self.name!r}: edge_extension names {method!r}, which has no grid "
                    f"(methods: {', '.join(self.grids)})"
                )
            for knob, ladder in ladders.items():
                if knob not in self.grids[method]:
                    raise ConfigError(
                        f"study {self.name!r}: edge_extension {method}.{knob}: {method}'s grid does "
                        f"not search {knob!r} (it searches {', '.join(self.grids[method])})"
                    )
                if list(ladder) != sorted(set(ladder)):
                    raise ConfigError(
                        f"study {self.name!r}: edge_extension {method}.{knob} = {list(ladder)} must "
                        "be strictly ascending"
                    )
                first = self.grid_points(method)[0]
                for value in ladder:  # every rung must make a valid loss before hours are spent
                    self.student_config(method, {**first, knob: value}, Path("."), Path("teacher.pt"), self.seeds[0])

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.grids)

    def grid_points(self, method: str) -> list[dict]:
        """Every combination of ``method``'s grid, in a fixed order (the first list varies slowest)."""
        grid = self.grids[method]
        names = list(grid)
        return [dict(zip(names, values)) for values in itertools.product(*(list(grid[n]) for n in names))]

    def student_config(
        self, method: str, point: dict, out_dir: Path, teacher: Path, seed: int, arm: FrameworkArm | None = None
    ) -> TrainConfig:
        """One student run; under ``arm``'s schedule, optimiser, attack and recipe when given."""
        loss = LossConfig(method, {**self.fixed.get(method, {}), **point})
        needs_teacher = "teacher" in loss.create().needs
        shared = arm or self
        return TrainConfig(
            data=self.data,
            model=self.model,
            loss=loss,
            attack=shared.attack,
            schedule=shared.schedule,
            optim=shared.optim,
            eval=self.monitor,
            recipe=shared.recipe,
            teacher=str(teacher) if needs_teacher else None,
            seed=seed,
            out_dir=str(out_dir),
            device=self.device,
        )

    def teacher_config(self, out_dir: Path, seed: int) -> TrainConfig:
        """The teacher sees the same training images as the students (the holdout stays unseen); it trains
        under the students' conventions with w = 1, no SWA and no population BN."""
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
            seed=seed,
            out_dir=str(out_dir),
            device=self.device,
        )

    def to_dict(self) -> dict:
        return plain(dataclasses.asdict(self))


def point_name(method: str, point: dict) -> str:
    """A run folder name that says its parameters: ``cc-dist-alpha0.1-beta1-distance=mse``."""
    parts = [f"{k}{v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items()]
    return "-".join([method, *parts])


def final_dir(out_dir: Path, seed: int, method: str, params: dict) -> Path:
    """Where the selected setting of ``method`` is retrained with ``seed`` (named by its point)."""
    return Path(out_dir) / f"seed{seed}" / "final" / point_name(method, params)


def arm_dir(out_dir: Path, seed: int, arm: FrameworkArm, method: str, params: dict) -> Path:
    """Where the selected setting of ``method`` trains under framework ``arm`` with ``seed``."""
    return Path(out_dir) / f"seed{seed}" / f"framework-{arm.name}" / point_name(method, params)

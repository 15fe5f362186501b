"""Experiment presets (``list_experiments``): ``cpu``, ``cpu-ctbench``, ``paper``, ``smoke``, registered on import.

Each description says why the preset looks the way it does; results.md repeats it.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from ..attacks import AttackConfig
from ..errors import ConfigError
from ..training import DataConfig, EvalConfig, ModelConfig, OptimConfig, RecipeConfig, ScheduleConfig
from .config import EvalSettings, ExperimentConfig, TeacherSettings


class PresetRegistry:
    """Named configs of one kind (``what``: "experiment", "study"): register once, look up with a hint."""

    def __init__(self, what: str):
        self.what, self._items = what, dict[str, Any]()

    def register(self, cfg):
        if cfg.name in self._items:
            raise ConfigError(f"{self.what} preset {cfg.name!r} is registered twice")
        self._items[cfg.name] = cfg
        return cfg

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str):
        if name not in self._items:
            close = difflib.get_close_matches(name, list(self._items), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown {self.what} preset {name!r}{hint}; known: {', '.join(self.names())}")
        return self._items[name]


_EXPERIMENTS = PresetRegistry("experiment")


def register_experiment(cfg: ExperimentConfig) -> ExperimentConfig:
    """Register a preset under ``cfg.name``; a duplicate name is an error."""
    return _EXPERIMENTS.register(cfg)


def list_experiments() -> list[str]:
    return _EXPERIMENTS.names()


def get_experiment(name: str) -> ExperimentConfig:
    return _EXPERIMENTS.get(name)


def _ramp(epochs: int, length: int, teacher: bool = False, **kw) -> ScheduleConfig:
    """MNIST ε = 0.1 ramp from epoch 1; students train at 2ε (B.2.4), the teacher at ε without reg."""
    return ScheduleConfig(
        epochs=epochs,
        eps=0.1,
        eps_start_epoch=1,
        eps_length_epochs=length,
        train_eps_mul=1.0 if teacher else 2.0,
        reg_lambda=0.0 if teacher else 0.5,
        **kw,
    )


_ONE_STEP = AttackConfig(steps=1, step_size=10.0)  # B.4.2: 1 step, η = 10 (a vertex of the box)

register_experiment(
    ExperimentConfig(
        name="cpu",
        description=(
            "CPU scale, under an hour on 2 cores with one torch thread. The students follow the mnist-small-* "
            "training presets (small-cnn, 20k MNIST images, 10 epochs, lr 1e-3) with the MNIST ε = 0.1 recipe of "
            "methods.md B.4.2 (train ε ×2, 1-step attack, warm-up regulariser, L1 1e-5, the MTL-IBP value); the "
            "teacher is mnist-small-teacher's (PGD-10, 6 epochs) on the same images. One α = 0.1 for all four: in a "
            "pilot (10k images, 5 epochs) α = 0.01 left every student almost without IBP certificates and α = 0.5 "
            "cost ~7 points of standard accuracy; 0.1 lies between for every loss and is the B.4.2 CC-IBP value. "
            "CROWN costs ~0.1 s per small-cnn sample here and only runs on what IBP leaves undecided, so it is "
            "affordable. Differences of a point or two are within the noise of 1000 test images and one seed."
        ),
        data=DataConfig(dataset="mnist", train_subset=20000, test_subset=500, batch_size=100),
        model=ModelConfig(name="small-cnn"),
        schedule=_ramp(10, 4),
        optim=OptimConfig(lr=1e-3, milestones=(8,), gamma=0.2, grad_clip=10.0, l1=1e-5),
        attack=_ONE_STEP,
        monitor=EvalConfig(pgd_steps=10, pgd_step_size=0.25),
        teacher=TeacherSettings(
            schedule=_ramp(6, 3, teacher=True),
            optim=OptimConfig(lr=1e-3, milestones=(5,), gamma=0.2, grad_clip=10.0, l1=0.0),
        ),
        alpha=0.1,
        sweep=(0.01, 0.5),
        evaluation=EvalSettings(n=1000, methods=("IBP", "CROWN")),
        seed=100,
        device="cpu",
    )
)

register_experiment(
    ExperimentConfig(
        name="smoke",
        description="Smoke test: 200 training / 50 test images, 1 epoch of 4 batches; checks the pipeline, "
        "not the methods.",
        data=DataConfig(dataset="mnist", train_subset=200, test_subset=50, batch_size=50),
        model=ModelConfig(name="small-cnn", kwargs={"width": 8, "linear_size": 32}),
        schedule=_ramp(1, 1),
        optim=OptimConfig(lr=1e-3, milestones=(1,), l1=1e-5),
        attack=_ONE_STEP,
        monitor=EvalConfig(pgd_steps=2, pgd_step_size=0.5),
        teacher=TeacherSettings(
            schedule=_ramp(1, 1, teacher=True),
            optim=OptimConfig(lr=1e-3, milestones=(1,)),
            attack=AttackConfig(steps=3, step_size=0.5),
        ),
        alpha=0.5,
        sweep=(0.1,),
        evaluation=EvalSettings(
            n=50, methods=("IBP", "CROWN"), attack=AttackConfig(steps=5, step_size=0.25), batch_size=50
        ),
        seed=0,
        device="cpu",
    )
)

register_experiment(
    ExperimentConfig(
        name="paper",
        description=(
            "Paper scale, a GPU job (13 CNN7 trainings of 70 epochs): CNN7 on all of MNIST at ε = 0.1 with the "
            "methods.md B.4.2 row (batch 256, lr 5e-4 ×0.2 at 50/60, ramp 1/20, train ε ×2, 1-step attack); the "
            "teacher is the mnist-0.1-pgd recipe. One α = 0.1 (the CC-IBP value) with its L1 2e-6 for all; the sweep "
            "adds 0.01 (the MTL-IBP value) and 0.5, so both B.4.2 points lie on every curve. Certified by IBP → "
            "CROWN-IBP on the whole test split: full CROWN on CNN7 costs far more per sample and would run on "
            "nearly every image for the teacher; certify finished models completely with vnncomp/."
        ),
        data=DataConfig(dataset="mnist", train_subset=None, test_subset=1000, batch_size=256),
        model=ModelConfig(name="cnn7"),
        schedule=_ramp(70, 20),
        optim=OptimConfig(lr=5e-4, milestones=(50, 60), gamma=0.2, grad_clip=10.0, l1=2e-6),
        attack=_ONE_STEP,
        monitor=EvalConfig(),
        teacher=TeacherSettings(
            schedule=_ramp(70, 20, teacher=True),
            optim=OptimConfig(lr=5e-4, milestones=(50, 60), gamma=0.2, grad_clip=10.0, l1=0.0),
        ),
        alpha=0.1,
        sweep=(0.01, 0.5),
        evaluation=EvalSettings(n=None, methods=("IBP", "CROWN-IBP")),
        seed=100,
        device="auto",
    )
)

register_experiment(
    dataclasses.replace(
        get_experiment("cpu"),
        name="cpu-ctbench",
        description=(
            "The `cpu` experiment in the AD-CERT paper's framework (recipe.conventions: ctbench, methods.md §9): "
            "the clean batch's BN statistics frozen for the attack, the adversarial forward and the bound; the "
            "CTBench MNIST 0.1 recipe's attack (PGD-10, 3 restarts, step 0.25), robust weight 0.7, population BN "
            "after each epoch and SWA over the last epoch; everything else as `cpu`, so the two presets differ "
            "by the framework only."
        ),
        attack=AttackConfig(steps=10, step_size=0.25, restarts=3),
        recipe=RecipeConfig(conventions="ctbench", robust_weight=0.7, swa_start_epoch=10, pop_bn=True),
    )
)

"""Presets of the tuned comparison: ``mnist-0.1``, ``mnist-0.3``, ``fmnist-0.1`` (CPU scale) and
``smoke`` (the whole path in a minute, for CI). ``get_study(name)``, ``list_studies()``.

CPU-scale choices, shared by the three benchmarks:
- small-cnn (16/32 channels, the quickstart's network): a complete verifier decides most of its
  open properties within a minute on a CPU; CNN7 would need the GPU that this project rarely has.
- all 60k training images minus a 5k holdout for selection (the same holdout for every run);
  the teacher trains on the same 55k, so the holdout is unseen by every model it judges.
- 20 epochs with the ε ramp over epochs 2–11 (methods.md B.4.2 shortened in proportion), the
  1-step training attack; train ε ×2 on MNIST 0.1 and ×1.334 on MNIST 0.3 (B.2.4, the paper's
  multipliers), ×1 on Fashion-MNIST (the papers train it at ε).
- grids: α for all four methods; for cc-dist also β, the distance and the feature point; for
  ad-cert also τ and the combination. A choice on an α edge extends the grid along
  ``ALPHA_LADDER`` (0.001 … 0.9), one run per step, until the choice lies inside. Selection
  evaluates 200 validation images with the complete verifier at 10 s, the final evaluation 2000
  test images at 60 s, over seeds 100–102.
"""

from __future__ import annotations

import dataclasses

from ...attacks import AttackConfig
from ...attacks.ctbench_pgd import default_step_size
from ...training import DataConfig, EvalConfig, ModelConfig, OptimConfig, RecipeConfig, ScheduleConfig
from ..config import TeacherSettings
from ..presets import PresetRegistry
from .config import FrameworkArm, StudyConfig, StudyEval

_STUDIES = PresetRegistry("study")


def register_study(cfg: StudyConfig) -> StudyConfig:
    return _STUDIES.register(cfg)


def list_studies() -> list[str]:
    return _STUDIES.names()


def get_study(name: str) -> StudyConfig:
    return _STUDIES.get(name)


ALPHAS = (0.01, 0.1, 0.5)
GRIDS = {
    "mtl-ibp": {"alpha": ALPHAS},
    "cc-ibp": {"alpha": ALPHAS},
    "cc-dist": {"alpha": (0.1, 0.5), "beta": (0.1, 1.0), "distance": ("mse", "cosine"), "feature_point": ("adv",)},
    "ad-cert": {"alpha": ALPHAS, "tau": (1.0, 4.0), "combination": ("loss", "logit")},
}
# A choice on the edge of its α grid is followed outwards along this ladder (study/selection.py).
ALPHA_LADDER = (0.001, 0.01, 0.1, 0.5, 0.9)
EDGE_EXTENSION = {method: {"alpha": ALPHA_LADDER} for method in GRIDS}
_ONE_STEP = AttackConfig(steps=1, step_size=10.0)


def _schedule(eps: float, train_mul: float, epochs: int = 20, teacher: bool = False) -> ScheduleConfig:
    return ScheduleConfig(
        epochs=epochs,
        eps=eps,
        eps_start_epoch=1,
        eps_length_epochs=max(1, epochs // 2),
        train_eps_mul=1.0 if teacher else train_mul,
        reg_lambda=0.0 if teacher else 0.5,
    )


def _optim(epochs: int, l1: float) -> OptimConfig:
    return OptimConfig(lr=1e-3, milestones=(max(1, int(0.8 * epochs)),), gamma=0.2, grad_clip=10.0, l1=l1)


def _cpu_study(name: str, dataset: str, eps: float, train_mul: float, description: str) -> StudyConfig:
    return StudyConfig(
        name=name,
        description=description,
        data=DataConfig(dataset=dataset, validation_size=5000, test_subset=1000, batch_size=100),
        model=ModelConfig(name="small-cnn"),
        schedule=_schedule(eps, train_mul),
        optim=_optim(20, 1e-5),
        attack=_ONE_STEP,
        monitor=EvalConfig(pgd_steps=10, pgd_step_size=0.25),
        teacher=TeacherSettings(
            schedule=_schedule(eps, 1.0, epochs=10, teacher=True),
            optim=_optim(10, 0.0),
            attack=AttackConfig(steps=10, step_size=0.25),
        ),
        grids=GRIDS,
        edge_extension=EDGE_EXTENSION,
        selection=StudyEval(n=200, timeout=10.0),
        final=StudyEval(n=2000, timeout=60.0),
        seeds=(100, 101, 102),
        processes=2,
        device="cpu",
    )


register_study(_cpu_study("mnist-0.1", "mnist", 0.1, 2.0, "MNIST at ε = 0.1, small-cnn, CPU scale."))
register_study(_cpu_study("mnist-0.3", "mnist", 0.3, 1.334, "MNIST at ε = 0.3, small-cnn, CPU scale."))
register_study(_cpu_study("fmnist-0.1", "fashion-mnist", 0.1, 1.0, "Fashion-MNIST at ε = 0.1, small-cnn, CPU scale."))

register_study(
    StudyConfig(
        name="smoke",
        description="The whole path in a few minutes: 1000 training images, 2 epochs, two grid points for one "
        "method and one for the rest, two seeds, NeuralSAT on what the bounds leave open in the final "
        "evaluation; checks the pipeline, not the methods.",
        data=DataConfig(dataset="mnist", validation_size=200, train_subset=2000, test_subset=50, batch_size=50),
        model=ModelConfig(name="small-cnn", kwargs={"width": 8, "linear_size": 32}),
        schedule=_schedule(0.02, 1.0, epochs=2),
        optim=dataclasses.replace(_optim(2, 1e-5), lr=5e-3),
        attack=_ONE_STEP,
        monitor=EvalConfig(pgd_steps=2, pgd_step_size=0.5),
        teacher=TeacherSettings(
            schedule=_schedule(0.02, 1.0, epochs=2, teacher=True),
            optim=dataclasses.replace(_optim(2, 0.0), lr=5e-3),
            attack=AttackConfig(steps=2, step_size=0.5),
        ),
        grids={
            "mtl-ibp": {"alpha": (0.1, 0.5)},
            "cc-ibp": {"alpha": (0.5,)},
            "cc-dist": {"alpha": (0.5,)},
            "ad-cert": {"alpha": (0.5,)},
        },
        edge_extension={"mtl-ibp": {"alpha": (0.05, 0.1, 0.5, 0.7)}},  # one more run: whichever α wins is an edge
        selection=StudyEval(n=20, verifier=None, attack=AttackConfig(steps=5, step_size=0.25)),
        final=StudyEval(n=20, verifier="neuralsat", timeout=5.0, jobs=2, attack=AttackConfig(steps=5, step_size=0.25)),
        seeds=(0, 1),
        processes=2,
        device="cpu",
    )
)

register_study(
    StudyConfig(
        name="tiny",
        description="The study's machinery in about a minute of CPU: the smoke study's data and network, two "
        "teacher-free methods, one seed, no complete verifier; for the tests of where runs run (Ray), "
        "not for numbers.",
        data=DataConfig(dataset="mnist", validation_size=200, train_subset=1000, test_subset=50, batch_size=50),
        model=ModelConfig(name="small-cnn", kwargs={"width": 8, "linear_size": 32}),
        schedule=_schedule(0.02, 1.0, epochs=3),
        optim=dataclasses.replace(_optim(3, 1e-5), lr=5e-3),
        attack=_ONE_STEP,
        monitor=EvalConfig(pgd_steps=2, pgd_step_size=0.5),
        teacher=TeacherSettings(
            schedule=_schedule(0.02, 1.0, epochs=1, teacher=True),
            optim=dataclasses.replace(_optim(1, 0.0), lr=5e-3),
            attack=AttackConfig(steps=2, step_size=0.5),
        ),
        grids={"mtl-ibp": {"alpha": (0.1, 0.5)}, "cc-ibp": {"alpha": (0.5,)}},
        selection=StudyEval(n=20, verifier=None, attack=AttackConfig(steps=5, step_size=0.25)),
        final=StudyEval(n=20, verifier=None, attack=AttackConfig(steps=5, step_size=0.25)),
        seeds=(0,),
        processes=2,
        device="cpu",
    )
)


# -- the comparison again, with the papers' methods in the AD-CERT paper's framework (issue 37) ---------
# CTBench's MNIST recipes (methods.md §9) scaled to the CPU: 70 epochs → CTBENCH_EPOCHS, with the
# ramp (20 of 70), the lr milestones (50, 60) and the SWA start (the last 5 of 70) in proportion;
# the attack (PGD-10 × 3 restarts at 0.1, PGD-1 × 3 at 0.3), w, population BN and L1 as the recipe.
# The training set is CTBENCH_TRAIN images of the 55k left after the holdout (the same ones for every
# run): a ctbench step costs 5-8× an expressive-losses one (PGD × 3 restarts), so the full set for 70
# epochs is days on two cores. ad-cert and cc-dist at the reference defaults; grids: α along the
# ladder for all four, the reference's variants for ad-cert, β around the reference's 5 for cc-dist.
# ctbench-mnist-0.1 also trains the selected settings under the expressive-losses framework (the
# mnist-0.1 study's schedule, optimiser, one-step attack and recipe at the same budget), so its
# tables show how much of a gap is the framework. Earlier studies (mnist-0.1, mnist-0.3, fmnist-0.1)
# measured adcert's variants; they stay as they were.
CTBENCH_EPOCHS = 10
CTBENCH_TRAIN = 20000
CTBENCH_GRIDS = {
    "mtl-ibp": {"alpha": (0.01, 0.1, 0.5)},
    "cc-ibp": {"alpha": (0.01, 0.1, 0.5)},
    "ad-cert": {"alpha": (0.01, 0.1, 0.5), "variant": ("ad-cert", "rslad-cert")},
    "cc-dist": {"alpha": (0.01, 0.1, 0.5), "beta": (1.0, 5.0, 25.0)},
}


def _in_proportion(epoch_of_70: int, epochs: int) -> int:
    """An epoch of CTBench's 70-epoch MNIST recipe at the same fraction of ``epochs`` (at least 1)."""
    return max(1, round(epoch_of_70 * epochs / 70))


def _expressive_losses_arm(eps: float, train_mul: float, epochs: int, l1: float) -> FrameworkArm:
    """The mnist-0.1 study's framework (adcert's expressive-losses conventions) at ``epochs``."""
    return FrameworkArm(
        name="expressive-losses",
        schedule=_schedule(eps, train_mul, epochs=epochs),
        optim=_optim(epochs, l1),
        attack=_ONE_STEP,
        recipe=RecipeConfig(conventions="expressive-losses"),
    )


def _ctbench_study(
    name: str,
    dataset: str,
    eps: float,
    train_mul: float,
    steps: int,
    weight: float,
    pop_bn: bool,
    l1: float,
    description: str,
    arm: bool = False,
) -> StudyConfig:
    epochs = CTBENCH_EPOCHS
    schedule = ScheduleConfig(
        epochs=epochs,
        eps=eps,
        eps_start_epoch=1,
        eps_length_epochs=_in_proportion(20, epochs),
        train_eps_mul=train_mul,
        reg_lambda=0.5,
    )
    milestones = (_in_proportion(50, epochs), _in_proportion(60, epochs))
    optim = OptimConfig(lr=5e-4, milestones=milestones, gamma=0.2, grad_clip=10.0, l1=l1)
    teacher_epochs = max(2, epochs // 2)
    teacher_schedule = ScheduleConfig(
        epochs=teacher_epochs,
        eps=eps,
        eps_start_epoch=1,
        eps_length_epochs=max(1, teacher_epochs // 3),
        train_eps_mul=1.0,
        reg_lambda=0.0,
    )
    swa_start = epochs - _in_proportion(5, epochs) + 1  # CTBench averages the last 5 of 70 epochs
    return StudyConfig(
        name=name,
        description=description,
        data=DataConfig(
            dataset=dataset, validation_size=5000, train_subset=CTBENCH_TRAIN, test_subset=1000, batch_size=100
        ),
        model=ModelConfig(name="small-cnn"),
        schedule=schedule,
        optim=optim,
        attack=AttackConfig(steps=steps, step_size=default_step_size(steps), restarts=3),
        recipe=RecipeConfig(conventions="ctbench", robust_weight=weight, swa_start_epoch=swa_start, pop_bn=pop_bn),
        monitor=EvalConfig(pgd_steps=10, pgd_step_size=0.25),
        teacher=TeacherSettings(
            schedule=teacher_schedule,
            optim=_optim(teacher_epochs, 0.0),
            attack=AttackConfig(steps=10, step_size=default_step_size(10)),
        ),
        grids=CTBENCH_GRIDS,
        edge_extension=EDGE_EXTENSION,
        # alpha-beta-CROWN decides the properties NeuralSAT ran out of memory or time on (MNIST 0.3:
        # 19 killed for memory, 290 timeouts of 1163 in the mnist-0.3 study); csv mode, one process per run
        selection=StudyEval(n=200, timeout=10.0, verifier="abcrown"),
        final=StudyEval(n=2000, timeout=60.0, verifier="abcrown"),
        seeds=(100, 101, 102),
        processes=2,
        device="cpu",
        framework_arm=_expressive_losses_arm(eps, train_mul, epochs, l1) if arm else None,
    )


register_study(
    _ctbench_study(
        "ctbench-mnist-0.1",
        "mnist",
        0.1,
        2.0,
        10,
        0.7,
        True,
        1e-5,
        "MNIST at ε = 0.1 under the ctbench conventions (CTBench recipe scaled to 10 epochs on 20k images), "
        "the papers' ad-cert and cc-dist; the selected settings also under the expressive-losses framework.",
        arm=True,
    )
)
register_study(
    _ctbench_study(
        "ctbench-mnist-0.3",
        "mnist",
        0.3,
        1.334,
        1,
        1.0,
        False,
        1e-6,
        "MNIST at ε = 0.3 under the ctbench conventions (CTBench recipe scaled to 10 epochs on 20k images), "
        "the papers' ad-cert and cc-dist.",
    )
)
register_study(
    _ctbench_study(
        "ctbench-fmnist-0.1",
        "fashion-mnist",
        0.1,
        1.0,
        10,
        0.7,
        True,
        1e-5,
        "Fashion-MNIST at ε = 0.1 under the ctbench conventions (the MNIST 0.1 recipe scaled to 10 epochs "
        "on 20k images), the papers' ad-cert and cc-dist.",
    )
)

"""Named presets: the per-benchmark table of methods.md B.4.2 (CNN7) and small CPU runs.

Paper presets are ``<benchmark>-<loss>``, e.g. ``mnist-0.1-mtl-ibp``, ``cifar10-8-255-ad-cert``,
``tinyimagenet-1-255-pgd`` (the teacher). Students that need a teacher point at the teacher
preset's run: ``runs/<benchmark>-pgd/model.pt``. ``ad-cert`` and ``cc-dist`` start from the
``mtl-ibp`` / ``cc-ibp`` α and L1 of the same benchmark (methods.md Part A). The PGD teacher
uses PGD-10 with step ε/4, the same CNN7, schedule and epochs, no regulariser, no L1 and no
IBP init. Every preset has a twin under ``examples/configs/`` (name with ``-`` → ``_``).
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
from typing import Any

from ..errors import ConfigError
from .config import TrainConfig
from .ctbench_presets import ctbench_presets
from .strict import check_keys

_PRESETS: dict[str, dict] = {}
_SOURCES: dict[str, str] = {}


def register_preset(name: str, values: dict, source: str = "") -> None:
    """Register a (partial, nested) config under ``name``, with where its values come from."""
    if name in _PRESETS:
        raise ConfigError(f"preset {name!r} is registered twice")
    check_keys(TrainConfig, values, "", f"preset {name!r}")
    _PRESETS[name] = copy.deepcopy(values)
    _SOURCES[name] = source


def preset_source(name: str) -> str:
    """Where preset ``name``'s values come from (shown by ``adcert-train --list-presets``)."""
    get_preset(name)
    return _SOURCES.get(name, "")


def list_presets(pattern: str = "*") -> list[str]:
    """Registered preset names matching the fnmatch ``pattern``, sorted."""
    return sorted(n for n in _PRESETS if fnmatch.fnmatch(n, pattern))


def get_preset(name: str) -> dict:
    """A copy of preset ``name`` (a partial nested config dict)."""
    if name not in _PRESETS:
        close = difflib.get_close_matches(name, list(_PRESETS), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else "; see adcert-train --list-presets"
        raise ConfigError(f"unknown preset {name!r}{hint}")
    return copy.deepcopy(_PRESETS[name])


def preset_writing(checkpoint) -> str | None:
    """The preset whose run writes ``checkpoint`` (``<out_dir>/model.pt``), if one does."""
    from pathlib import PurePath

    wanted = PurePath(checkpoint)
    for name, values in sorted(_PRESETS.items()):
        if values.get("out_dir") and PurePath(values["out_dir"]) / "model.pt" == wanted:
            return name
    return None


# benchmark -> (dataset, eps, batch, epochs, milestones, start, length, train_eps_mul,
#               attack, reg_lambda, {loss: (alpha, l1)})
_ONE_STEP = {"steps": 1, "step_size": 10.0}
_BENCHMARKS = {
    "mnist-0.1": (
        "mnist",
        0.1,
        256,
        70,
        [50, 60],
        1,
        20,
        2.0,
        _ONE_STEP,
        0.5,
        {"cc-ibp": (0.1, 2e-6), "mtl-ibp": (1e-2, 1e-5)},
    ),
    "mnist-0.3": (
        "mnist",
        0.3,
        256,
        70,
        [50, 60],
        1,
        20,
        1.334,
        _ONE_STEP,
        0.5,
        {"cc-ibp": (0.3, 3e-6), "mtl-ibp": (8e-2, 1e-6)},
    ),
    "cifar10-2-255": (
        "cifar10",
        0.00784,
        128,
        160,
        [120, 140],
        2,
        80,
        1.0,
        {"steps": 8, "step_size": 0.25, "eps_factor": 2.1},
        0.5,
        {"cc-ibp": (1e-2, 3e-6), "mtl-ibp": (4e-3, 3e-6), "exp-ibp": (9.5e-2, 4e-6)},
    ),
    "cifar10-8-255": (
        "cifar10",
        0.03137,
        128,
        260,
        [180, 220],
        2,
        80,
        1.0,
        _ONE_STEP,
        0.5,
        {"cc-ibp": (0.5, 0.0), "mtl-ibp": (0.5, 1e-7), "exp-ibp": (0.5, 0.0)},
    ),
    "tinyimagenet-1-255": (
        "tinyimagenet",
        0.00392,
        128,
        160,
        [120, 140],
        2,
        80,
        1.0,
        _ONE_STEP,
        0.2,
        {"cc-ibp": (1e-2, 5e-5), "mtl-ibp": (1e-2, 5e-5), "exp-ibp": (4e-2, 5e-5)},
    ),
}
_DISTILLED_FROM = {"ad-cert": "mtl-ibp", "cc-dist": "cc-ibp"}
TEACHER_ATTACK = {"steps": 10, "step_size": 0.25}  # PGD-10, step ε/4 (relative to the half-width ε)


def _paper(bench: str, loss: str) -> dict:
    dataset, eps, batch, epochs, milestones, start, length, mul, attack, reg, alphas = _BENCHMARKS[bench]
    teacher = loss == "pgd"
    source = _DISTILLED_FROM.get(loss, loss)
    alpha, l1 = alphas.get(source, (None, 0.0))
    preset = {
        "data": {"dataset": dataset, "batch_size": batch},
        "model": {"name": "cnn7", "ibp_init": not teacher},
        "loss": {"name": loss, "params": {} if alpha is None else {"alpha": alpha}},
        "attack": dict(TEACHER_ATTACK if teacher else attack),
        "schedule": {
            "epochs": epochs,
            "eps": eps,
            "train_eps_mul": 1.0 if teacher else mul,
            "eps_start_epoch": start,
            "eps_length_epochs": length,
            "reg_lambda": 0.0 if teacher else reg,
        },
        "optim": {"lr": 5e-4, "milestones": milestones, "gamma": 0.2, "grad_clip": 10.0, "l1": 0.0 if teacher else l1},
        "out_dir": f"runs/{bench}-{loss}",
        "device": "auto",
    }
    if loss in _DISTILLED_FROM:
        preset["teacher"] = f"runs/{bench}-pgd/model.pt"
    return preset


_EXPRESSIVE = "expressive-losses recipe (De Palma et al. ICLR 2024 README commands, methods.md B.4.2)"
for _bench, _row in _BENCHMARKS.items():
    for _loss in ("pgd", "ibp", *sorted(_row[-1]), "ad-cert", "cc-dist"):
        register_preset(f"{_bench}-{_loss}", _paper(_bench, _loss), _EXPRESSIVE)

for _name, (_values, _source) in ctbench_presets().items():
    register_preset(_name, _values, _source)


# Small presets: MNIST subsets and small-cnn, minutes on a laptop CPU (set OMP_NUM_THREADS=1 on a
# busy machine). Students: 20k images, 10 epochs; the teacher: 10k images (a subset of the
# students' 20k, same seed), 6 epochs of PGD-10. 1000 training images are held out first
# (data.validation_size): the per-epoch check and best.pt use them, never the test images that
# adcert-eval and the quickstart report.
_SMALL: dict[str, Any] = {
    "data": {
        "dataset": "mnist",
        "train_subset": 20000,
        "test_subset": 1000,
        "validation_size": 1000,
        "batch_size": 100,
    },
    "model": {"name": "small-cnn"},
    "schedule": {"epochs": 10, "eps": 0.1, "eps_start_epoch": 1, "eps_length_epochs": 4},
    "optim": {"lr": 1e-3, "milestones": [8], "gamma": 0.2, "grad_clip": 10.0},
    "eval": {"pgd_steps": 10, "pgd_step_size": 0.25},
}


def _small(loss: dict, **sections) -> dict:
    preset: dict[str, Any] = {k: dict(v) for k, v in _SMALL.items()}
    preset["loss"] = loss
    for key, value in sections.items():
        if isinstance(value, dict):
            preset.setdefault(key, {}).update(value)
        else:
            preset[key] = value
    preset["device"] = "cpu"
    return preset


_SMALL_SOURCE = "adcert CPU preset (small-cnn, MNIST subset; expressive-losses conventions)"
register_preset(
    "mnist-small-teacher",
    _small(
        {"name": "pgd", "params": {}},
        data={"train_subset": 10000},
        model={"ibp_init": False},
        attack=dict(TEACHER_ATTACK),
        schedule={"epochs": 6, "eps_length_epochs": 3, "train_eps_mul": 1.0, "reg_lambda": 0.0},
        optim={"milestones": [5]},
        out_dir="runs/mnist-small-teacher",
    ),
    _SMALL_SOURCE,
)
_STUDENT = dict(attack=dict(_ONE_STEP), schedule={"train_eps_mul": 2.0, "reg_lambda": 0.5}, optim={"l1": 1e-5})
register_preset(
    "mnist-small-adcert",
    _small(
        {"name": "ad-cert", "params": {"alpha": 0.5}},
        teacher="runs/mnist-small-teacher/model.pt",
        out_dir="runs/mnist-small-adcert",
        **_STUDENT,
    ),
    _SMALL_SOURCE,
)
register_preset(
    "mnist-small-mtl-ibp",
    _small({"name": "mtl-ibp", "params": {"alpha": 0.5}}, out_dir="runs/mnist-small-mtl-ibp", **_STUDENT),
    _SMALL_SOURCE,
)
register_preset(
    "mnist-small-ibp", _small({"name": "ibp", "params": {}}, out_dir="runs/mnist-small-ibp", **_STUDENT), _SMALL_SOURCE
)

"""The framework arm (issue 37, item 3): the selected settings trained again under another framework.

A study with an arm retrains each method's selected loss parameters with every seed under the arm's
schedule, optimiser, attack and recipe (the study's data, network and teachers), evaluates them as
the final evaluation, and reports both frameworks side by side with paired differences.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from adcert_plugin.attacks import AttackConfig
from adcert_plugin.errors import ConfigError
from adcert_plugin.experiments.study.config import FrameworkArm, arm_dir
from adcert_plugin.experiments.study.presets import get_study
from adcert_plugin.experiments.study.report import render_markdown
from adcert_plugin.experiments.study.run import run_study
from adcert_plugin.training import RecipeConfig, RunDir
from adcert_plugin.training.config import config_from_dict


def _arm(cfg) -> FrameworkArm:
    """ctbench conventions with a two-step attack: differs from the tiny study in every shared knob."""
    return FrameworkArm(
        name="other",
        schedule=dataclasses.replace(cfg.schedule, epochs=2, eps_length_epochs=1),
        optim=dataclasses.replace(cfg.optim, lr=1e-3, milestones=(1,)),
        attack=AttackConfig(steps=2, step_size=0.5),
        recipe=RecipeConfig(conventions="ctbench", robust_weight=0.7),
    )


def test_a_student_under_the_arm_takes_the_arms_shared_settings_and_keeps_the_studys_own():
    cfg = get_study("ctbench-mnist-0.1")
    arm = cfg.framework_arm
    assert arm is not None and arm.name == "expressive-losses"
    point = cfg.grid_points("ad-cert")[0]
    own = cfg.student_config("ad-cert", point, Path("s"), Path("t/model.pt"), 101)
    other = cfg.student_config("ad-cert", point, Path("s"), Path("t/model.pt"), 101, arm)
    assert own.recipe.conventions == "ctbench" and other.recipe.conventions == "expressive-losses"
    assert (other.schedule, other.optim, other.attack) == (arm.schedule, arm.optim, arm.attack)
    assert other.attack.steps == 1 and own.attack.steps == 10 and own.attack.restarts == 3
    assert (other.data, other.model, other.loss, other.teacher, other.seed) == (
        own.data,
        own.model,
        own.loss,
        own.teacher,
        own.seed,
    )
    assert other.schedule.epochs == own.schedule.epochs  # the same budget in both frameworks
    assert get_study("ctbench-mnist-0.3").framework_arm is None


def test_an_arm_needs_a_plain_folder_name():
    cfg = get_study("tiny")
    with pytest.raises(ConfigError, match="plain folder name"):
        dataclasses.replace(_arm(cfg), name="../x")


def test_a_study_with_an_arm_trains_it_with_every_seed_and_reports_both_frameworks(data_dir, tmp_path, ray_local):
    tiny = get_study("tiny")
    cfg = dataclasses.replace(  # one method, one point: two teachers, two students, two under the arm
        tiny,
        data=dataclasses.replace(tiny.data, data_dir=str(data_dir)),
        grids={"mtl-ibp": {"alpha": (0.5,)}},
        seeds=(0, 1),
        framework_arm=_arm(tiny),
    )
    out = tmp_path / "study"
    results = run_study(cfg, out)
    arm = results["framework_arm"]
    assert arm["name"] == "other" and set(arm["final"]) == set(cfg.methods)
    for method in cfg.methods:
        params = results["chosen"][method]["params"]
        for seed in cfg.seeds:
            run = RunDir(arm_dir(out, seed, cfg.framework_arm, method, params))
            trained = config_from_dict(yaml.safe_load(run.config.read_text()), "test")
            assert trained.recipe.conventions == "ctbench" and trained.attack.steps == 2
            assert trained.schedule.epochs == 2 and trained.seed == seed
            assert arm["final"][method][str(seed)]["n"] == cfg.final.n
        difference = arm["study_minus_arm"][method]["complete"]
        own = [100 * results["final"][method][str(s)]["complete"] for s in cfg.seeds]
        other = [100 * arm["final"][method][str(s)]["complete"] for s in cfg.seeds]
        assert difference["mean"] == pytest.approx(sum(a - b for a, b in zip(own, other)) / 2)
    from adcert_plugin.experiments.study.progress import study_progress

    rows = [r for r in study_progress(cfg, out)["runs"] if r["role"] == "arm"]
    assert len(rows) == len(cfg.methods) * len(cfg.seeds) and all(r["evals"].get("test") for r in rows)
    page = render_markdown(results)
    assert "## The same selected settings under the other framework" in page, page
    for method in cfg.methods:
        assert any(line.startswith(f"| {method} | ") and line.count("[") == 1 for line in page.splitlines())

"""The training recipe: conventions, robust weight, SWA, population BN, and the ctbench presets."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from train_fixtures import tiny_config, weights, write_fake_mnist

from adcert_plugin.errors import ConfigError
from adcert_plugin.training import build_config, get_preset, list_presets, load_model, train
from adcert_plugin.training.averaging import WeightAverage, population_bn
from adcert_plugin.training.config import RecipeConfig
from adcert_plugin.training.presets import preset_source
from adcert_plugin.training.schedules import robust_weight_at


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_fake_mnist(tmp_path_factory.mktemp("data"))


def test_weight_average_is_the_mean_of_the_sampled_steps():
    param = nn.Parameter(torch.zeros(3))
    average = WeightAverage([param], start=2, freq=2)
    seen = []
    for step in range(1, 9):
        with torch.no_grad():
            param.fill_(float(step))
        if average.after_step(step):
            seen.append(step)
    assert seen == [4, 6, 8]  # after step 2, every 2nd step
    average.copy_into_params()
    assert param.tolist() == pytest.approx([6.0] * 3)


def test_population_bn_is_the_mean_of_batch_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    batches = [torch.randn(8, 3) * (i + 1) for i in range(3)]
    population_bn(model, batches)
    with torch.no_grad():
        hidden = [model[0](b) for b in batches]
    mean = torch.stack([h.mean(0) for h in hidden]).mean(0)
    var = torch.stack([h.var(0, unbiased=True) for h in hidden]).mean(0)
    assert torch.allclose(model[1].running_mean, mean, atol=1e-5)
    assert torch.allclose(model[1].running_var, var, atol=1e-5)
    assert model[1].momentum == 0.1


def test_robust_weight_schedule():
    assert robust_weight_at(5, 10, RecipeConfig(robust_weight=0.7)) == 0.7
    ramp = RecipeConfig(robust_weight=1.0, robust_weight_start=0.0, robust_weight_epochs=(2, 3))
    assert [robust_weight_at(s, 10, ramp) for s in (0, 10, 20, 30, 99)] == pytest.approx([0, 0, 0.5, 1, 1])
    with pytest.raises(ConfigError, match="robust_weight_epochs"):
        RecipeConfig(robust_weight_start=0.2)


def test_ctbench_presets_are_the_recipes():
    for bench in ("mnist-0.1", "mnist-0.3", "cifar10-2-255", "cifar10-8-255", "tinyimagenet-1-255"):
        for method in ("pgd", "mtl-ibp", "cc-ibp", "ad-cert", "cc-dist"):
            assert f"ctbench-{bench}-{method}" in list_presets()
    cfg = build_config(preset="ctbench-mnist-0.1-ad-cert")
    assert cfg.recipe.conventions == "ctbench" and cfg.recipe.robust_weight == 0.7 and cfg.recipe.pop_bn
    assert cfg.recipe.swa_start_epoch == 66 and cfg.attack.steps == 10 and cfg.attack.restarts == 3
    assert cfg.attack.step_size == 0.25 and cfg.loss.params == {"alpha": 0.02} and cfg.optim.l1 == 1e-5
    assert cfg.teacher == "runs/ctbench-mnist-0.1-pgd/model.pt"
    cifar = build_config(preset="ctbench-cifar10-2-255-cc-dist")
    assert cifar.attack.eps_factor == 2.0 and cifar.attack.step_size == 2.0 and cifar.schedule.eps_start_epoch == 2
    assert "CTBench" in preset_source("ctbench-mnist-0.3-mtl-ibp")
    assert "INFERRED" in preset_source("ctbench-mnist-0.3-pgd")
    assert get_preset("mnist-0.1-ad-cert").get("recipe") is None  # the expressive-losses presets are unchanged


def _rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_ctbench_runs_the_robust_loss_in_eps_zero_epochs(data_root, tmp_path):
    extra = {"schedule.eps_start_epoch": 2, "recipe.robust_weight": 0.5}
    ctb = train(tiny_config(data_root, tmp_path / "ctb", epochs=1, extra={**extra, "recipe.conventions": "ctbench"}))
    exp = train(tiny_config(data_root, tmp_path / "exp", epochs=1, extra=extra))
    ctb_row, exp_row = _rows(ctb.run_dir)[0], _rows(exp.run_dir)[0]
    assert ctb_row["eps_train"] == 0.0 and exp_row["eps_train"] == 0.0
    assert "train_lb" in ctb_row and "train_ce_clean" in ctb_row  # (1−w)·CE + w·L_rob at ε = 0
    assert "train_lb" not in exp_row  # expressive-losses: plain CE in the ε-0 epochs
    assert ctb.summary["conventions"] == "ctbench"


def test_swa_model_is_the_average_and_resume_keeps_it(data_root, tmp_path):
    extra = {
        "recipe.swa_start_epoch": 2,
        "recipe.swa_freq": 1,
        "model.name": "small-cnn",
        "model.kwargs": "{width: 4, linear_size: 16, bn: true}",
        "recipe.conventions": "ctbench",
    }
    straight = train(tiny_config(data_root, tmp_path / "a", epochs=3, extra=extra))
    assert straight.summary["swa"]["swa_updates"] == 2 * 4  # epochs 2 and 3, 4 steps each (256 / 64)
    last, final = weights(straight.run_dir / "last.pt"), weights(straight.run_dir / "model.pt")
    assert any(not torch.equal(last[k], final[k]) for k in last)  # model.pt is the average, not the last step
    train(tiny_config(data_root, tmp_path / "b", epochs=2, extra=extra))
    resumed = train(tiny_config(data_root, tmp_path / "b", epochs=3, extra=extra), resume=True)
    for key, value in weights(resumed.run_dir / "model.pt").items():
        assert torch.allclose(value.float(), final[key].float(), atol=1e-6), key
    model, _ = load_model(resumed.run_dir / "model.pt")
    assert model is not None


def test_clean_forward_moves_the_running_statistics_with_the_clean_batch_first(data_root, tmp_path):
    extra = {"model.name": "small-cnn", "model.kwargs": "{width: 4, linear_size: 16, bn: true}"}
    plain = train(tiny_config(data_root, tmp_path / "a", epochs=1, extra=extra))
    clean = train(tiny_config(data_root, tmp_path / "b", epochs=1, extra={**extra, "recipe.clean_forward": True}))
    a, b = weights(plain.run_dir / "model.pt"), weights(clean.run_dir / "model.pt")
    running = [k for k in a if k.endswith("running_mean")]
    assert running and any(not torch.allclose(a[k], b[k]) for k in running)

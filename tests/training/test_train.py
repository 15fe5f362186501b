"""train(): run-dir layout, checkpoints, resume equivalence, NaN handling, run-dir refusal."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
import yaml
from train_fixtures import tiny_config, weights, write_fake_mnist

from adcert_plugin.errors import ConfigError, TrainingError
from adcert_plugin.losses import register_loss, unregister_loss
from adcert_plugin.losses.base import LossOutput
from adcert_plugin.training import load_config, load_model, train


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_fake_mnist(tmp_path_factory.mktemp("data"))


def test_two_epochs_write_the_run_dir(data_root, tmp_path):
    cfg = tiny_config(data_root, tmp_path / "run")
    result = train(cfg)
    run = tmp_path / "run"
    assert result.run_dir == run
    assert {p.name for p in run.iterdir()} == {
        "config.yaml",
        "metrics.jsonl",
        "last.pt",
        "best.pt",
        "model.pt",
        "summary.json",
    }
    assert load_config(run / "config.yaml") == cfg
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for row in rows:
        for key in (
            "train_loss",
            "train_lb",
            "train_ce_adv",
            "eps_train",
            "lr",
            "clean_acc",
            "pgd_acc",
            "ibp_cert_acc",
            "time_s",
        ):
            assert key in row, key
        assert row["eps_eval"] == 0.05 and row["n_test"] == 32
    assert rows[0]["train_ce_clean"] > 0.5  # averaged over the natural batch only
    assert "train_reg" in rows[0] and rows[1]["reg_weight"] == 0.0
    assert rows[0]["lr"] == 5e-4 and rows[1]["lr"] == pytest.approx(1e-4)  # milestone after epoch 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary == result.summary
    assert summary["epochs"] == 2 and 0.0 <= summary["ibp_cert_acc"] <= summary["clean_acc"] <= 1.0
    assert summary["best"]["epoch"] in (1, 2)
    for name in ("last.pt", "best.pt", "model.pt"):
        record = torch.load(run / name, map_location="cpu", weights_only=True)
        assert record["format"] == "adcert-checkpoint" and record["config"]["loss"]["name"] == "mtl-ibp"
    state = torch.load(run / "last.pt", weights_only=True)["state"]
    assert {"epoch", "optimizer", "lr_scheduler", "loss_modules", "rng", "best"} <= set(state)
    model, _ = load_model(run / "model.pt")
    assert sum(p.numel() for p in model.parameters()) == 784 * 16 + 16 + 16 * 10 + 10


def test_resume_gives_the_uninterrupted_parameters(data_root, tmp_path):
    straight = train(tiny_config(data_root, tmp_path / "a", epochs=2)).run_dir
    train(tiny_config(data_root, tmp_path / "b", epochs=1))
    resumed = train(tiny_config(data_root, tmp_path / "b", epochs=2), resume=True).run_dir
    wa, wb = weights(straight / "model.pt"), weights(resumed / "model.pt")
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    rows_a = (straight / "metrics.jsonl").read_text().splitlines()
    rows_b = (resumed / "metrics.jsonl").read_text().splitlines()
    drop = lambda row: {k: v for k, v in json.loads(row).items() if "time" not in k}
    assert [drop(r) for r in rows_a] == [drop(r) for r in rows_b]


def test_resume_refuses_a_changed_config_and_a_missing_run(data_root, tmp_path):
    train(tiny_config(data_root, tmp_path / "run", epochs=1))
    with pytest.raises(ConfigError, match=r"different config \(seed: 3 → 4"):
        train(tiny_config(data_root, tmp_path / "run", epochs=2, extra={"seed": 4}), resume=True)
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(tiny_config(data_root, tmp_path / "empty", epochs=1), resume=True)


def test_existing_run_dir_is_refused_unless_forced(data_root, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(data_root, run, epochs=1))
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    with pytest.raises(ConfigError, match="already holds a run"):
        train(tiny_config(data_root, run, epochs=1))
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before
    (run / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="unknown key"):  # a bad new config leaves the old run intact
        train(tiny_config(data_root, run, epochs=1, extra={"optim.lrr": 1}), force=True)
    assert (run / "last.pt").exists()
    train(tiny_config(data_root, run, epochs=1, extra={"seed": 9}), force=True)
    assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == 9
    assert (run / "notes.txt").read_text() == "mine"


@dataclass(frozen=True)
class _NanConfig:
    pass


@pytest.fixture
def nan_loss():
    @register_loss("test-nan", config=_NanConfig, needs={"bounds"})
    def nan(ctx, cfg):
        """NaN once the eps ramp has started (natural batches never call the loss)."""
        logits = ctx.student_logits("clean")
        return LossOutput(logits.sum() * float("nan"), {})

    yield "test-nan"
    unregister_loss("test-nan")


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data_root, tmp_path, nan_loss):
    run = tmp_path / "run"
    extra = {"schedule.eps_start_epoch": 2, "schedule.eps_length_epochs": 0}  # epoch 1 natural, then the loss
    cfg = tiny_config(data_root, run, loss=nan_loss, epochs=3, extra=extra)
    with pytest.raises(TrainingError, match=r"non-finite loss nan at epoch 2, step 1/4.*last good checkpoint"):
        train(cfg)
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["state"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert not (run / "model.pt").exists() and not (run / "summary.json").exists()


def test_teacher_mismatch_is_a_config_error(data_root, tmp_path):
    from adcert_plugin.models import create_model
    from adcert_plugin.training import arch_record, save_checkpoint

    teacher = tmp_path / "teacher.pt"
    net = create_model("mlp", (1, 28, 28), 5, hidden=(8,))
    save_checkpoint(teacher, net, arch_record("mlp", (1, 28, 28), 5, {"hidden": [8]}), "mnist")
    cfg = tiny_config(data_root, tmp_path / "run", loss="ad-cert", epochs=1, extra={"teacher": str(teacher)})
    with pytest.raises(ConfigError, match="predicts 5 classes"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_distillation_trains_a_projection_outside_the_student(data_root, tmp_path):
    teacher_run = train(tiny_config(data_root, tmp_path / "teacher", loss="pgd", epochs=1)).run_dir
    cfg = tiny_config(
        data_root,
        tmp_path / "student",
        loss="cc-dist",
        epochs=1,
        extra={"teacher": str(teacher_run / "model.pt"), "model.kwargs": "{hidden: [12]}"},
    )
    train(cfg)  # widths differ (12 vs 16): a training-only projection, checkpointed apart from the student
    state = torch.load(tmp_path / "student" / "last.pt", weights_only=True)
    assert state["state"]["loss_modules"], "projection head state missing"
    assert not any("proj" in k for k in state["model"])


@dataclass(frozen=True)
class _KappaConfig:
    kappa: float = 0.0


def test_kappa_follows_the_ramp(data_root, tmp_path):
    seen = []

    @register_loss("test-kappa", config=_KappaConfig, needs={"bounds"})
    def kappa_spy(ctx, cfg):
        """Records κ, trains IBP."""
        seen.append(cfg.kappa)
        from adcert_plugin.losses.base import lb_loss

        return LossOutput(lb_loss(ctx.margin_lower("IBP")), {})

    try:
        extra = {"schedule.eps_length_epochs": 2}
        train(tiny_config(data_root, tmp_path / "run", loss="test-kappa", epochs=3, extra=extra))
    finally:
        unregister_loss("test-kappa")
    # 4 batches an epoch, ramp over batches 0..8: step 0 is natural (no loss call)
    assert seen == pytest.approx([1 - s / 8 for s in range(1, 8)] + [0.0] * 4)

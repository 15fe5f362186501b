"""What a run tells its user (issue 17): which images and eps each number is, best.pt by what the
loss trains for, a ramp that did not finish, failed starts, divergence causes, the teacher's data set."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
import torch
from train_fixtures import tiny_config, write_fake_mnist

from adcert_plugin.errors import CheckpointError, ConfigError, TrainingError
from adcert_plugin.evaluation import evaluate
from adcert_plugin.models import create_model
from adcert_plugin.training import RunDir, arch_record, build_config, save_checkpoint, train, trainer as T
from adcert_plugin.training.outcome import best_criterion


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_fake_mnist(tmp_path_factory.mktemp("data"))


def test_epoch_numbers_are_the_first_test_images_that_eval_end_n_evaluates(data_root, tmp_path):
    cfg = tiny_config(data_root, tmp_path / "run", epochs=1, extra={"data.test_subset": 40})
    result = train(cfg)
    assert "on the first 40 test images" in result.describe()
    report = evaluate(result.run_dir / "model.pt", data_dir=data_root, end=40, methods="IBP", out_dir=tmp_path / "eval")
    assert report.summary["n"] == result.summary["n_test"] == 40
    assert report.standard_acc == result.summary["clean_acc"]  # the same 40 images


def test_epoch_lines_and_summary_label_train_and_eval_eps(data_root, tmp_path, caplog):
    cfg = tiny_config(data_root, tmp_path / "run", epochs=2, extra={"schedule.train_eps_mul": 2.0})
    with caplog.at_level(logging.INFO, logger=T.__name__):
        result = train(cfg)
    epoch_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch 2:")]
    assert epoch_lines and "train eps 0.1;" in epoch_lines[0] and "at eval eps 0.05 " in epoch_lines[0]
    text = result.describe()
    assert "eval eps 0.05 (train eps reached 0.1)" in text
    assert result.summary["eps"] == 0.05 and result.summary["eps_train_reached"] == pytest.approx(0.1)


def test_a_run_shorter_than_its_ramp_warns_and_records_the_eps_it_reached(data_root, tmp_path, caplog):
    short = tiny_config(data_root, tmp_path / "short", epochs=1, extra={"schedule.eps_length_epochs": 4})
    with caplog.at_level(logging.WARNING, logger=T.__name__):
        result = train(short)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["eps"] == 0.05 and 0 <= summary["eps_reached"] < 0.05
    assert len(summary["warnings"]) == 1 and "before its eps ramp ends (epoch 4)" in summary["warnings"][0]
    assert any("before its eps ramp ends" in r.getMessage() for r in caplog.records)
    assert "warning: the run stopped at epoch 1" in result.describe()
    full = train(tiny_config(data_root, tmp_path / "full", epochs=2))  # a 1-epoch ramp: done
    assert full.summary["eps_reached"] == pytest.approx(0.05) and full.summary["warnings"] == []


def test_a_teachers_best_checkpoint_is_its_best_pgd_epoch(data_root, tmp_path):
    cfg = tiny_config(data_root, tmp_path / "teacher", loss="pgd", epochs=3, extra={"optim.milestones": "[2]"})
    result = train(cfg)
    rows = RunDir(result.run_dir).read_metrics()
    best = result.summary["best"]
    assert best["criterion"] == "pgd_acc"
    wanted = max(rows, key=lambda r: (r["pgd_acc"], r["clean_acc"], -r["epoch"]))
    assert best["epoch"] == wanted["epoch"] and best["pgd_acc"] == wanted["pgd_acc"]
    saved = torch.load(result.run_dir / "best.pt", weights_only=True)
    assert saved["state"]["epoch"] == best["epoch"]
    assert "by PGD (best.pt)" in result.describe()
    assert best_criterion({"attack", "bounds"}) == "ibp_cert_acc" and best_criterion({"attack"}) == "pgd_acc"


def test_a_failed_start_leaves_nothing_and_names_the_learning_rate(data_root, tmp_path):
    out = tmp_path / "run"
    blown = tiny_config(data_root, out, epochs=1, extra={"optim.lr": 1e30, "optim.grad_clip": "null"})
    with pytest.raises(TrainingError) as err:
        train(blown)
    message = str(err.value)
    assert "the weights blew up" in message and "lower optim.lr (now 1e+30)" in message
    assert not out.exists()  # nothing left: the same folder takes a new run without --force
    assert train(tiny_config(data_root, out, epochs=1)).summary["epochs"] == 1


def test_a_loss_non_finite_before_any_update_does_not_blame_the_learning_rate(data_root, tmp_path, monkeypatch):
    def nan_loss(self, x, y, eps, reg_weight, robust_weight=1.0):
        return torch.tensor(float("nan"), requires_grad=True), {}

    monkeypatch.setattr(T._Trainer, "loss_terms", nan_loss)
    with pytest.raises(TrainingError) as err:
        train(tiny_config(data_root, tmp_path / "run", epochs=1))
    assert "learning rate is not the cause" in str(err.value) and "lower optim.lr" not in str(err.value)


def test_interrupted_first_epoch_leaves_an_existing_folder_as_it_was(data_root, tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")

    def interrupt(self, epoch):
        raise KeyboardInterrupt

    monkeypatch.setattr(T._Trainer, "train_epoch", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(data_root, out, epochs=1))
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def _teacher(path, dataset):
    net = create_model("mlp", (1, 28, 28), 10, hidden=(8,))
    return save_checkpoint(path, net, arch_record("mlp", (1, 28, 28), 10, {"hidden": [8]}), dataset)


def test_a_teacher_of_another_data_set_with_the_same_shape_is_refused(data_root, tmp_path):
    teacher = _teacher(tmp_path / "fashion.pt", "fashion-mnist")
    cfg = tiny_config(data_root, tmp_path / "run", loss="ad-cert", extra={"teacher": str(teacher)})
    with pytest.raises(ConfigError, match="trained on fashion-mnist but the student trains on mnist"):
        train(cfg)
    assert not (tmp_path / "run").exists()
    ok = tiny_config(
        data_root,
        tmp_path / "ok",
        loss="ad-cert",
        epochs=1,
        extra={"teacher": str(_teacher(tmp_path / "mnist.pt", "mnist"))},
    )
    assert train(ok).summary["epochs"] == 1


def test_a_student_presets_missing_teacher_names_its_preset_and_teacher_flag(data_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs/mnist-small-teacher/model.pt is relative: not there
    cfg = build_config(preset="mnist-small-adcert", flags={"data.data_dir": str(data_root)})
    with pytest.raises(CheckpointError) as err:
        train(cfg)
    assert "adcert-train --preset mnist-small-teacher" in str(err.value) and "--teacher PATH" in str(err.value)


def test_a_last_pt_without_trainer_state_cannot_be_resumed_and_says_so(data_root, tmp_path):
    out = tmp_path / "run"
    train(tiny_config(data_root, out, epochs=1))
    record = torch.load(out / "last.pt", weights_only=True)
    del record["state"]["optimizer"]
    torch.save(record, out / "last.pt")
    with pytest.raises(CheckpointError, match="cannot be resumed.*'optimizer'.*--force"):
        train(dataclasses.replace(tiny_config(data_root, out, epochs=2)), resume=True)

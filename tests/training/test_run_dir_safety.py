"""Issue 36: --force keeps the old run until the new one has a checkpoint; one writer per run
folder (two processes); --resume records the epochs it ran to."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner
from train_fixtures import tiny_config, tiny_sets, write_fake_mnist

from adcert_plugin.cli import train_cmd
from adcert_plugin.errors import ConfigError, TrainingError
from adcert_plugin.io import LOCK_NAME
from adcert_plugin.training import train, trainer as trainer_module


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_fake_mnist(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def finished(data_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    train(tiny_config(data_root, run, epochs=1))
    return run


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _copy(src, dst):
    dst.mkdir(parents=True)
    for name, data in _files(src).items():
        (dst / name).write_bytes(data)
    return dst


def _fail_in_epoch_1(monkeypatch, error):
    def boom(self, epoch):
        raise error

    monkeypatch.setattr(trainer_module._Trainer, "train_epoch", boom)


@pytest.mark.parametrize("error", [KeyboardInterrupt(), TrainingError("diverged")], ids=["ctrl-c", "divergence"])
def test_force_puts_the_old_run_back_when_no_epoch_finishes(data_root, finished, tmp_path, monkeypatch, error):
    run = _copy(finished, tmp_path / "run")
    (run / "notes.txt").write_text("mine")
    before = _files(run)
    _fail_in_epoch_1(monkeypatch, error)
    with pytest.raises(type(error)):
        train(tiny_config(data_root, run, epochs=1, extra={"seed": 9}), force=True)
    assert _files(run) == before  # model.pt, last.pt, config.yaml: byte for byte
    assert sorted(p.name for p in run.iterdir()) == sorted(before)  # no .replaced-run, no lock left


def test_force_replaces_the_old_run_once_an_epoch_is_saved(data_root, finished, tmp_path):
    run = _copy(finished, tmp_path / "run")
    train(tiny_config(data_root, run, epochs=1, extra={"seed": 9}), force=True)
    assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == 9
    assert not (run / ".replaced-run").exists() and not (run / LOCK_NAME).exists()


def test_cli_ctrl_c_under_force_says_the_old_run_is_kept(data_root, finished, tmp_path, monkeypatch):
    run = _copy(finished, tmp_path / "run")
    _fail_in_epoch_1(monkeypatch, KeyboardInterrupt())
    args = [a for s in tiny_sets(data_root, run, epochs=1) for a in ("--set", s)] + ["--force"]
    result = CliRunner().invoke(train_cmd, args)
    assert result.exit_code == 130
    assert "the run that was in" in result.output and "kept as it was" in result.output
    assert "nothing was kept" not in result.output
    assert (run / "model.pt").read_bytes() == (finished / "model.pt").read_bytes()


HOLD = """
import sys, time
from adcert_plugin.io import FolderLock
with FolderLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(folder, seconds=60.0):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_with_one_line(data_root, tmp_path):
    run = tmp_path / "run"
    holder = _holder(run)
    try:
        args = [a for s in tiny_sets(data_root, run, epochs=1) for a in ("--set", s)]
        result = CliRunner().invoke(train_cmd, args)
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "is being written by pid" in lines[0] and str(holder.pid) in lines[0]
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]
    finally:
        holder.kill()
        holder.wait()
    train(tiny_config(data_root, run, epochs=1))  # the holder died: its lock is stale, not in the way
    assert (run / "model.pt").is_file() and not (run / LOCK_NAME).exists()


def test_two_train_processes_into_one_folder(data_root, tmp_path):
    """Started together: one trains, the other is refused (held, or finding the finished run); never both."""
    run = tmp_path / "run"
    args = [a for s in tiny_sets(data_root, run, epochs=8) for a in ("--set", s)]
    cmd = [sys.executable, "-c", "from adcert_plugin.cli import train_cmd; train_cmd()"] + args
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], errs
    refused = errs[[p.returncode for p in procs].index(2)]
    assert "is being written by pid" in refused or "already holds a run" in refused, refused
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert [yaml.safe_load(r)["epoch"] for r in rows] == list(range(1, 9))  # one writer's rows only


def test_resume_records_the_new_epoch_count(data_root, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(data_root, run, epochs=1))
    train(tiny_config(data_root, run, epochs=2), resume=True)
    assert yaml.safe_load((run / "config.yaml").read_text())["schedule"]["epochs"] == 2
    from adcert_plugin.training import read_checkpoint

    assert read_checkpoint(run / "model.pt")["config"]["schedule"]["epochs"] == 2
    before = _files(run)
    with pytest.raises(ConfigError, match="after epoch 2, past --epochs 1"):
        train(tiny_config(data_root, run, epochs=1), resume=True)
    assert _files(run) == before

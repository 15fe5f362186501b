"""One study per folder (study_lock): a second study on a taken folder refuses to start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from adcert_plugin.errors import ConfigError
from adcert_plugin.experiments.study import run as study_module
from adcert_plugin.experiments.study.presets import get_study
from adcert_plugin.experiments.study.state import study_lock

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")


def test_a_second_lock_on_a_folder_is_refused_until_the_first_is_released(tmp_path):
    with (
        study_lock(tmp_path / "out", None),
        pytest.raises(ConfigError, match=f"another study is running in {tmp_path / 'out'} \\(pid {os.getpid()}\\)"),
        study_lock(tmp_path / "elsewhere", tmp_path / "out"),
    ):
        pass
    with study_lock(tmp_path / "out"):  # released: free again
        pass
    with study_lock(tmp_path / "same", tmp_path / "x" / ".." / "same"):  # one folder named twice: one lock
        pass


def test_a_study_refuses_to_start_in_a_folder_another_study_holds(tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("the study started training although its folder was taken")

    monkeypatch.setattr(study_module, "_run_wave", no_training)
    with study_lock(tmp_path / "state"), pytest.raises(ConfigError, match="another study is running"):
        study_module.run_study(get_study("smoke"), tmp_path / "out", state_dir=tmp_path / "state")


def test_the_lock_of_a_killed_study_is_free_at_once(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import time
        from adcert_plugin.experiments.study.state import study_lock
        with study_lock({str(tmp_path)!r}):
            print("held", flush=True)
            time.sleep(120)
        """),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError), study_lock(tmp_path):
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        with study_lock(tmp_path):  # no stale lock file to delete by hand
            pass
    finally:
        holder.kill()

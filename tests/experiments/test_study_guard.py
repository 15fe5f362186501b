"""One study per folder (study_lock), and pool workers that end with their study (stop_with_parent)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from adcert_plugin.errors import ConfigError
from adcert_plugin.experiments import study as study_module
from adcert_plugin.experiments.study_guard import study_lock
from adcert_plugin.experiments.study_presets import get_study

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock and fork are POSIX")


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie nobody has reaped yet counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_a_second_lock_on_a_folder_is_refused_until_the_first_is_released(tmp_path):
    busy = f"another study is running in {tmp_path / 'out'} \\(pid {os.getpid()}\\)"
    with study_lock(tmp_path / "out", None), pytest.raises(ConfigError, match=busy), \
            study_lock(tmp_path / "elsewhere", tmp_path / "out"):
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
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from adcert_plugin.experiments.study_guard import study_lock
        with study_lock({str(tmp_path)!r}):
            print("held", flush=True)
            time.sleep(120)
        """)], cwd=ROOT, stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
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


def test_a_pool_worker_exits_when_its_study_is_killed():
    """The study's process is SIGKILLed while its worker runs a long job: the worker must not go on."""
    study = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import concurrent.futures as futures, multiprocessing, os, time
        from adcert_plugin.experiments.study_guard import stop_with_parent
        if __name__ == "__main__":
            pool = futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                               initializer=stop_with_parent, initargs=(os.getpid(), 0.1))
            print(pool.submit(os.getpid).result(), flush=True)
            pool.submit(time.sleep, 120)
            time.sleep(120)
        """)], cwd=ROOT, stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stderr=subprocess.DEVNULL)  # the killed study's resource tracker warns of leaked semaphores: expected
    worker = None
    try:
        worker = int(study.stdout.readline())
        assert _alive(worker)
        study.send_signal(signal.SIGKILL)
        study.wait(10)
        assert _wait_gone(worker, 15), "the worker outlived its study"
    finally:
        study.kill()
        if worker and _alive(worker):
            os.kill(worker, signal.SIGKILL)


def test_the_study_pool_starts_its_workers_with_the_parent_watch(monkeypatch):
    seen = {}

    class Pool:
        def __init__(self, *args, **kwargs):
            seen.update(kwargs)
            raise KeyboardInterrupt  # the pool's arguments are all this test needs

    monkeypatch.setattr(study_module.futures, "ProcessPoolExecutor", Pool)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # _run_wave sets them for its workers; restored after
        monkeypatch.setenv(name, os.environ.get(name, ""))
    with pytest.raises(KeyboardInterrupt):
        study_module._run_wave(get_study("mnist-0.1"), [("key", None, [])], "a wave")
    assert seen["initializer"] is study_module.stop_with_parent and seen["initargs"] == (os.getpid(),)

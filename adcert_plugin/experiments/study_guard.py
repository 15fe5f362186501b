"""One study per folder, and no worker left behind.

A study of hours is stopped and resumed many times, sometimes by killing its process. Two things
must then hold, or two processes train into the same run folder and each overwrites the other's
checkpoints:

- ``study_lock``: a second study on the same output or state folder refuses to start while the
  first runs. The lock is an ``flock`` on a file in the folder, so the kernel frees it when the
  holder dies, however it dies; nothing stale is left to delete by hand.
- ``stop_with_parent``: a worker process exits when the study that started it is gone. A pool
  worker is a child of the study's process; killed with SIGTERM or SIGKILL, that process cannot
  tell its workers, and they would go on training for as long as their run takes.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

from ..errors import ConfigError

LOCK_NAME = ".study.lock"


@contextlib.contextmanager
def study_lock(*folders):
    """Hold an exclusive lock on each folder given (None skipped) for the block; ConfigError if taken."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        yield
        return
    handles = []
    try:
        unique = {Path(f).resolve(): Path(f) for f in reversed(folders) if f is not None}  # one lock per folder
        for folder in reversed(unique.values()):
            folder.mkdir(parents=True, exist_ok=True)
            handle = open(folder / LOCK_NAME, "a+")  # noqa: SIM115 - held for the study's life, closed below
            handles.append(handle)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise ConfigError(f"another study is running in {folder} ({holder}); wait for it to finish or "
                                  "stop it, then run this command again") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}\n")
            handle.flush()
        yield
    finally:
        for handle in handles:
            handle.close()  # closing the file releases its flock


def stop_with_parent(parent_pid: int, poll_s: float = 1.0) -> None:
    """Pool initializer: exit this worker within ``poll_s`` once ``parent_pid`` is no longer its parent.

    A thread watches the parent pid (portable, unlike Linux's PR_SET_PDEATHSIG); the worker's own
    children (a verifier's fork server) watch this worker in turn and end with it.
    """
    def watch():
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(1)  # the run folder keeps its last finished epoch; a resumed study continues from it

    threading.Thread(target=watch, name="stop-with-parent", daemon=True).start()

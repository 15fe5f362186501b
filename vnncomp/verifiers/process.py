"""One verifier process with a wall limit, its output in a log file; all of them stopped at once on Ctrl-C.

Each verifier runs in a process group of its own (what it starts itself is killed with it), so
Ctrl-C in the terminal reaches adcert only: :func:`stop_all` then kills every verifier still
running and no new one starts (:data:`STOPPING`) until the next :func:`reset_stop`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from adcert_plugin.errors import VerifierError

STOPPING = threading.Event()  # set by stop_all: start nothing new
_LIVE: set[int] = set()  # process-group ids of the verifiers running now
_LOCK = threading.Lock()


class Stopped(Exception):
    """A verifier was not started, or was killed, because the run is being stopped (Ctrl-C)."""


@dataclass(frozen=True)
class Command:
    """How to start a verifier on one instance (``cwd`` default: the results folder)."""

    argv: list[str]
    env: dict | None = None
    cwd: Path | None = None


def track(pgid: int) -> None:
    """A verifier's process group that :func:`stop_all` must kill (forked runs register theirs)."""
    with _LOCK:
        if STOPPING.is_set():
            _kill_group(pgid)
        _LIVE.add(pgid)


def untrack(pgid: int) -> None:
    with _LOCK:
        _LIVE.discard(pgid)


def stop_all() -> int:
    """Start no new verifier and kill every running one; returns how many were killed."""
    with _LOCK:
        STOPPING.set()
        live = list(_LIVE)
    for pgid in live:
        _kill_group(pgid)
    return len(live)


def reset_stop() -> None:
    """Allow verifiers to start again (a new run in the same process)."""
    STOPPING.clear()


def check_not_stopping() -> None:
    if STOPPING.is_set():
        raise Stopped("the run is being stopped")


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_process(
    command: Command, log_file: Path, limit: float, verifier: str, default_cwd: Path
) -> tuple[int | None, float]:
    """Run ``command`` with its output in ``log_file``; (exit status or None when killed, seconds).

    Raises:
        Stopped: The run is being stopped (before the start, or the process was killed for it).
        VerifierError: The verifier cannot be started.
    """
    check_not_stopping()
    start = time.monotonic()
    with log_file.open("w") as log:
        try:
            proc = subprocess.Popen(
                command.argv,
                cwd=command.cwd or default_cwd,
                env=command.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as err:
            raise VerifierError(f"cannot start {verifier} ({command.argv[0]}): {err}") from err
        track(proc.pid)
        try:
            status = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()
            return None, time.monotonic() - start
        finally:
            _kill_group(proc.pid)  # what the verifier left running in its group goes with it
            untrack(proc.pid)
    if STOPPING.is_set():
        raise Stopped("killed: the run is being stopped")
    return status, time.monotonic() - start

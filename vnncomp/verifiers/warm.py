"""A verifier run forked from a process that has already imported the verifier (``fork_server.py``).

NeuralSAT spends about 6.5 s of every instance importing torch and its own modules before its
clock starts, abCROWN's single mode about as much; a benchmark's complete step runs them on tens
to hundreds of instances. A runner that names the modules its script imports (``preload``) gets
one fork server per worker thread, and each instance runs as a fork of it: its own process,
folder, environment, log and wall limit, as before, without the imports. Anything wrong with the
server (it cannot import, it dies, it stops answering) sends that run, and every later one, back
to one fresh process per instance. ``ADCERT_VERIFIER_FORK=0`` does that from the start.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from adcert_plugin.errors import VerifierError

from .process import STOPPING, Command, Stopped, check_not_stopping, run_process, track, untrack

logger = logging.getLogger(__name__)

SERVER = Path(__file__).with_name("fork_server.py")
ENV_SWITCH = "ADCERT_VERIFIER_FORK"
READY_SECONDS = 300.0  # the imports, on a busy machine
ANSWER_SLACK = 30.0  # beyond a run's own limit, before the server counts as lost


def enabled() -> bool:
    """Forked runs are on unless ``ADCERT_VERIFIER_FORK=0`` (and the platform can fork)."""
    return hasattr(os, "fork") and os.environ.get(ENV_SWITCH, "1").strip() != "0"


class ServerLost(VerifierError):
    """The fork server stopped answering; the caller goes back to fresh processes."""


class ForkServer:
    """One ``fork_server.py`` under ``python``, for ``script``, with ``modules`` imported."""

    def __init__(self, python: str, script: str, modules: Sequence[str], env: dict | None, cwd: Path, log_file: Path):
        with Path(log_file).open("a") as log:
            self.proc = subprocess.Popen(
                [python, str(SERVER), script, *modules],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )  # Ctrl-C is adcert's to handle
        assert self.proc.stdin is not None and self.proc.stdout is not None  # both PIPE
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.script, self._buffer = script, b""
        try:
            ready = self._message(READY_SECONDS)
        except ServerLost:
            self.close()
            raise
        if not ready.get("ready"):
            self.close()
            raise ServerLost(f"fork server for {script} did not start: {ready.get('error', ready)}")
        self.import_seconds = float(ready.get("import_seconds", 0.0))

    def run(self, command: Command, log_file: Path, limit: float, default_cwd: Path) -> tuple[int | None, float]:
        """``command`` (``[python, script, *args]``) as a fork; ``run_process``'s (status, seconds).

        ``limit`` is the fork's own: the caller gives a forked run a short grace (its imports are
        done), a fresh one a grace that covers them (common.FORKED_GRACE, STARTUP_GRACE).
        """
        request = {
            "args": command.argv[2:],
            "cwd": str(command.cwd or default_cwd),
            "log": str(log_file),
            "env": dict(command.env if command.env is not None else os.environ),
            "limit": limit,
        }
        pid = None
        check_not_stopping()
        try:
            self.stdin.write((json.dumps(request) + "\n").encode())
            self.stdin.flush()
            pid = self._message(ANSWER_SLACK)["pid"]
            track(pid)  # the fork leads its own process group: Ctrl-C's stop_all kills it
            answer = self._message(limit + ANSWER_SLACK)
        except (OSError, KeyError, ValueError, ServerLost) as err:
            if pid is not None:
                _kill_group(pid)
            self.close()
            if STOPPING.is_set():
                raise Stopped("the run is being stopped") from err
            raise ServerLost(f"fork server for {self.script} lost: {err}") from err
        except BaseException:  # Ctrl-C, SIGTERM: the run stops with its caller, not at its limit
            if pid is not None:
                _kill_group(pid)
            raise
        finally:
            if pid is not None:
                untrack(pid)
        if STOPPING.is_set():
            raise Stopped("killed: the run is being stopped")
        return answer["status"], float(answer["seconds"])

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for stream in (self.stdin, self.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def _message(self, seconds: float) -> dict:
        """The server's next line as JSON, within ``seconds``."""
        deadline = time.monotonic() + seconds
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            readable = select.select([self.stdout], [], [], max(0.0, left))[0] if left > 0 else []
            if not readable:
                raise ServerLost(f"no answer within {seconds:.0f} s")
            chunk = os.read(self.stdout.fileno(), 1 << 16)
            if not chunk:
                raise ServerLost(f"it exited (status {self.proc.wait()})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError as err:
            raise ServerLost(f"unreadable answer {line[:80]!r}") from err


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class WarmPool:
    """Per-thread fork servers for a runner with ``preload``; otherwise plain ``run_process``.

    ``run`` has ``run_process``'s signature. Used as a context manager: the servers end with it.
    """

    def __init__(self, runner, results_dir: Path):
        self.modules = tuple(getattr(runner, "preload", ()) or ())
        self.active = bool(self.modules) and enabled()
        self.verifier, self.log_file = runner.name, Path(results_dir) / "fork-server.log"
        self._local, self._lock = threading.local(), threading.Lock()
        self._servers: list[ForkServer] = []

    def __enter__(self) -> WarmPool:
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            for server in self._servers:
                server.close()
            self._servers.clear()

    def forked(self, command: Command) -> bool:
        """Whether ``command`` would run as a fork (the pool is on and it is ``python script ...``)."""
        return self.active and len(command.argv) >= 2 and command.argv[1].endswith(".py")

    def run(
        self, command: Command, log_file: Path, limit: float, verifier: str, default_cwd: Path
    ) -> tuple[int | None, float]:
        if not self.forked(command):
            return run_process(command, log_file, limit, verifier, default_cwd)
        try:
            return self._server(command, default_cwd).run(command, log_file, limit, default_cwd)
        except ServerLost as err:
            logger.warning("%s; running %s as fresh processes from now on (%s)", err, verifier, self.log_file)
            self.active = False
            return run_process(command, log_file, limit, verifier, default_cwd)

    def _server(self, command: Command, cwd: Path) -> ForkServer:
        server = getattr(self._local, "server", None)
        if server is None or server.proc.poll() is not None:
            server = ForkServer(command.argv[0], command.argv[1], self.modules, command.env, cwd, self.log_file)
            self._local.server = server
            with self._lock:
                self._servers.append(server)
        return server

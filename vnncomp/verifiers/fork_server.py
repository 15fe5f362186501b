"""Run one script many times, each run a fork of a process that imported its modules once.

    python fork_server.py SCRIPT [MODULE ...]

A verifier that is a Python program (NeuralSAT's ``main.py``) spends seconds importing torch
and its own modules before it looks at an instance, and it runs once per instance. This
server, started under the verifier's own interpreter, imports MODULE ... once, then for every
request forks a child that runs SCRIPT as ``__main__`` with the request's arguments, working
folder, environment and log file, exactly as a fresh ``python SCRIPT ARGS`` would after its
imports. The server itself never runs the script, so no run sees another's state.

Protocol: one JSON object per line, on the server's original stdout (whatever else is printed
there, by the imports for one, goes to its stderr). Ready: ``{"ready": true, "import_seconds": s}``
(or ``{"error": "..."}`` and exit). Request on stdin:
``{"args": [...], "cwd": str, "log": str, "env": {...}, "limit": s}``.
Replies on stdout: ``{"pid": n}`` when the child starts, then ``{"status": code, "seconds": s}``;
``status`` is the exit code, negative for a signal, ``null`` when the child outlived ``limit``
and was killed (with every process it started). The server exits at the end of stdin.

Standard library only: it runs in the verifier's environment, not adcert's.
"""

from __future__ import annotations

import importlib
import json
import os
import runpy
import signal
import sys
import time
import traceback

POLL_SECONDS = 0.02


_REPLIES = 1  # the fd replies go to: the original stdout, kept apart from anything else written there


def _reply(message: dict) -> None:
    os.write(_REPLIES, (json.dumps(message) + "\n").encode())


def _child(script: str, request: dict) -> int:
    """The forked run: its own session, folder, environment and log; SCRIPT as __main__."""
    os.setsid()  # one process group, so a kill at the limit takes whatever the script started
    os.chdir(request["cwd"])
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # never read the server's requests, nor what its stdin had buffered of them
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the child
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = [script, *request["args"]]
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as end:
        code = end.code if isinstance(end.code, int) else (0 if end.code is None else 1)
        if end.code is not None and not isinstance(end.code, int):
            sys.stderr.write(f"{end.code}\n")  # as python reports sys.exit("message")
    except BaseException:  # noqa: BLE001 - reported like an uncaught exception, as python would
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)


def _wait(pid: int, limit: float, start: float, client: int) -> int | None:
    """The child's exit code (negative: killed by that signal); None after a kill at ``limit``.

    When the client that started this server is gone, the child is killed and the server exits:
    a run in its own session would otherwise outlive whoever wanted its answer.
    """
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if os.getppid() != client:
            _kill(pid)
            sys.exit(0)
        if time.monotonic() - start > limit:
            _kill(pid)
            return None
        time.sleep(POLL_SECONDS)


def serve(script: str, modules: list[str]) -> None:
    global _REPLIES
    sys.stdout.flush()
    _REPLIES = os.dup(1)
    os.dup2(2, 1)  # what the imports print (gurobipy's licence line) goes to the server's log
    sys.path[0] = os.path.dirname(script)  # as `python SCRIPT` has it, not this server's folder
    start = time.monotonic()
    try:
        for name in modules:
            importlib.import_module(name)
    except BaseException as err:  # noqa: BLE001 - the client falls back to one process per run
        _reply({"error": f"cannot import {name}: {type(err).__name__}: {err}"})
        return
    client = os.getppid()
    _reply({"ready": True, "import_seconds": time.monotonic() - start})
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        sys.stderr.flush()
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child never returns into this loop, whatever happens
            code = 1
            try:
                os.close(_REPLIES)
                code = _child(script, request)
            except BaseException:  # noqa: BLE001 - setting the child up failed (a missing folder)
                traceback.print_exc()
            finally:
                os._exit(code)
        _reply({"pid": pid})
        status = _wait(pid, float(request["limit"]), start, client)
        _reply({"status": status, "seconds": time.monotonic() - start})


if __name__ == "__main__":
    serve(os.path.abspath(sys.argv[1]), sys.argv[2:])

"""Forked verifier runs (warm.py, fork_server.py): each run as a fresh process would be, with a wall limit."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from vnncomp.verifiers.process import Command
from vnncomp.verifiers.warm import WarmPool

# Records what it saw. ``shared_state`` is preloaded by the server: a fresh process sees one run in it.
SCRIPT = textwrap.dedent("""
    import json, os, pathlib, subprocess, sys, time
    import shared_state
    shared_state.runs.append(sys.argv[1])
    out, mode = pathlib.Path(sys.argv[1]), sys.argv[2]
    out.write_text(json.dumps({"runs": shared_state.runs, "cwd": os.getcwd(), "env": os.environ.get("WARM_TEST"),
                               "args": sys.argv[1:], "name": __name__, "stdin": sys.stdin.read()}))
    if mode == "exit3":
        sys.exit(3)
    if mode == "raise":
        raise RuntimeError("out of cheese")
    if mode == "sleep":  # with a grandchild that would outlive it
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        pathlib.Path(str(out) + ".grandchild").write_text(str(child.pid))
        time.sleep(60)
    if mode == "kill-server":  # only ever its fork server, never whoever runs it fresh
        cmdline = pathlib.Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
        if b"fork_server.py" in cmdline:
            os.kill(os.getppid(), 9)
            time.sleep(2)
    print("done", mode)
""")

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork servers need os.fork")


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("ADCERT_VERIFIER_FORK", "1")
    folder = tmp_path / "verifier"
    folder.mkdir()
    (folder / "main.py").write_text(SCRIPT)
    # printing at import, as gurobipy does: not an answer of the server's
    (folder / "shared_state.py").write_text("print('Restricted license')\nruns = []\n")
    work = tmp_path / "work"
    work.mkdir()
    return folder / "main.py", work


def _command(script: Path, work: Path, name: str, mode: str = "ok", env: str = "x") -> Command:
    return Command(
        [sys.executable, str(script), str(work / f"{name}.json"), mode], env={**os.environ, "WARM_TEST": env}, cwd=work
    )


def _run(pool: WarmPool, command: Command, work: Path, name: str, limit: float = 30.0):
    return pool.run(command, work / f"{name}.log", limit, "fake", work.parent)


def _pool(work: Path, preload=("shared_state",)) -> WarmPool:
    return WarmPool(SimpleNamespace(name="fake", preload=preload), work)


def test_forked_runs_are_fresh_and_see_their_own_arguments_folder_and_environment(setup):
    script, work = setup
    with _pool(work) as pool:
        assert pool.forked(_command(script, work, "a"))
        for name, env in (("a", "first"), ("b", "second")):
            status, seconds = _run(pool, _command(script, work, name, env=env), work, name)
            assert status == 0 and 0 < seconds < 20
        assert len(pool._servers) == 1  # one server served both
    assert "Restricted license" in (work / "fork-server.log").read_text()
    for name, env in (("a", "first"), ("b", "second")):
        seen = json.loads((work / f"{name}.json").read_text())
        assert seen["runs"] == [str(work / f"{name}.json")]  # nothing left by the run before
        assert seen == {
            **seen,
            "cwd": str(work),
            "env": env,
            "args": [str(work / f"{name}.json"), "ok"],
            "name": "__main__",
            "stdin": "",
        }
        assert (work / f"{name}.log").read_text().strip() == "done ok"


def test_exit_codes_and_exceptions_come_back_as_python_reports_them(setup):
    script, work = setup
    with _pool(work) as pool:
        assert _run(pool, _command(script, work, "e", "exit3"), work, "e")[0] == 3
        assert _run(pool, _command(script, work, "r", "raise"), work, "r")[0] == 1
    log = (work / "r.log").read_text()
    assert "Traceback" in log and "RuntimeError: out of cheese" in log


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")  # killed; only its reaping is left to whoever adopted it


def test_a_run_past_its_limit_is_killed_with_everything_it_started(setup):
    script, work = setup
    with _pool(work) as pool:
        start = time.monotonic()
        status, seconds = _run(pool, _command(script, work, "s", "sleep"), work, "s", limit=2.0)
        assert status is None and 1.9 <= seconds < 15 and time.monotonic() - start < 20
        grandchild = int((work / "s.json.grandchild").read_text())
        deadline = time.monotonic() + 5
        while not _gone(grandchild) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(grandchild)
        assert _run(pool, _command(script, work, "after", "ok"), work, "after")[0] == 0  # the server lives on


CLIENT = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from vnncomp.verifiers.process import Command
    from vnncomp.verifiers.warm import ForkServer
    script, work = Path(sys.argv[1]), Path(sys.argv[2])
    server = ForkServer(sys.executable, str(script), ("shared_state",), dict(os.environ), work, work / "server.log")
    (work / "server.pid").write_text(str(server.proc.pid))
    server.run(Command([sys.executable, str(script), str(work / "s.json"), "sleep"], dict(os.environ), work),
               work / "s.log", 60.0, work)
""")


def test_a_run_ends_with_the_client_that_wanted_it(setup):
    script, work = setup
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    client = subprocess.Popen([sys.executable, "-c", CLIENT, str(script), str(work)], env=env)
    deadline = time.monotonic() + 60
    while not (work / "s.json.grandchild").is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    run = json.loads((work / "s.json").read_text())
    assert run["args"][1] == "sleep"
    client.kill()
    client.wait()
    server, grandchild = int((work / "server.pid").read_text()), int((work / "s.json.grandchild").read_text())
    deadline = time.monotonic() + 10
    while not (_gone(server) and _gone(grandchild)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(server) and _gone(grandchild)


def test_a_forked_run_gets_the_limit_it_is_given_whatever_the_imports_took(setup):
    # the caller sizes it (common.FORKED_GRACE for a fork, STARTUP_GRACE for a fresh process)
    script, work = setup
    (script.parent / "slow_import.py").write_text("import time\ntime.sleep(1.0)\n")
    with _pool(work, preload=("shared_state", "slow_import")) as pool:
        status, seconds = _run(pool, _command(script, work, "s", "sleep"), work, "s", limit=3.0)
        assert pool._servers[0].import_seconds >= 1.0
    assert status is None and 2.9 <= seconds < 3.8


def test_a_server_that_cannot_import_falls_back_to_fresh_processes(setup, caplog):
    script, work = setup
    with caplog.at_level(logging.WARNING), _pool(work, preload=("shared_state", "no_such_module_here")) as pool:
        assert _run(pool, _command(script, work, "a"), work, "a")[0] == 0
        assert not pool.active and "no_such_module_here" in caplog.text
    assert (work / "fork-server.log").is_file()  # the server's own output goes beside the results
    assert json.loads((work / "a.json").read_text())["runs"] == [str(work / "a.json")]


def test_a_server_lost_mid_run_hands_that_run_to_a_fresh_process(setup, caplog):
    script, work = setup
    with caplog.at_level(logging.WARNING), _pool(work) as pool:
        status, _ = _run(pool, _command(script, work, "k", "kill-server"), work, "k")
        assert status == 0 and not pool.active and "lost" in caplog.text
        assert (work / "k.log").read_text().strip().endswith("done kill-server")  # the fresh rerun's own log


def test_a_run_that_cannot_start_fails_alone(setup):
    script, work = setup
    with _pool(work) as pool:
        missing = Command(
            [sys.executable, str(script), str(work / "m.json"), "ok"], env=dict(os.environ), cwd=work / "no-such-folder"
        )
        assert _run(pool, missing, work, "m")[0] == 1
        assert _run(pool, _command(script, work, "a"), work, "a")[0] == 0 and pool.active
        assert len(pool._servers) == 1


def test_a_dead_idle_server_is_replaced(setup):
    script, work = setup
    with _pool(work) as pool:
        assert _run(pool, _command(script, work, "a"), work, "a")[0] == 0
        pool._servers[0].proc.kill()
        pool._servers[0].proc.wait()
        assert _run(pool, _command(script, work, "b"), work, "b")[0] == 0
        assert pool.active and len(pool._servers) == 2


def test_the_switch_turns_forking_off(setup, monkeypatch):
    script, work = setup
    monkeypatch.setenv("ADCERT_VERIFIER_FORK", "0")
    with _pool(work) as pool:
        assert not pool.forked(_command(script, work, "a"))
        assert _run(pool, _command(script, work, "a"), work, "a")[0] == 0 and not pool._servers
    with _pool(work, preload=()) as pool:
        assert not pool.forked(_command(script, work, "a"))

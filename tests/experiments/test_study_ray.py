"""Studies on Ray: a worker killed mid-training, a driver stopped and started again, two nodes on loopback.

The ``tiny`` preset (four short trainings, no complete verifier) keeps each study to about a minute.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from process_tree import descendants, titled, wait_gone

from adcert_plugin.experiments.study.presets import get_study
from adcert_plugin.experiments.study.run import run_study

ROOT = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).with_name("ray")
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")


def _tiny(data_dir):
    cfg = get_study("tiny")
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=str(data_dir)))


def _numbers(results: dict) -> dict:
    """What a study concludes, times left out."""
    final = {
        m: {s: {k: v for k, v in e.items() if k != "eval_time_s"} for s, e in seeds.items()}
        for m, seeds in results["final"].items()
    }
    grid = [
        (r["method"], r["params"], {k: v for k, v in r["validation"].items() if k != "eval_time_s"})
        for r in results["grid"]
    ]
    return {"final": final, "grid": grid, "chosen": results["chosen"]}


def _epochs(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    return (
        [json.loads(line)["epoch"] for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    )


def _runs(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.rglob("config.yaml"))


def _env() -> dict:
    return dict(
        os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )


def _study_command(out: Path, data_dir, *extra) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "examples" / "study.py"),
        "--preset",
        "tiny",
        "--out-dir",
        str(out),
        "--data-dir",
        str(data_dir),
        *extra,
    ]


def test_a_worker_killed_mid_training_is_retried_and_the_study_equals_an_uninterrupted_one(
    data_dir, tmp_path, ray_local
):
    cfg = _tiny(data_dir)
    plain = run_study(cfg, tmp_path / "plain")
    run = tmp_path / "killed" / "seed0" / "grid" / "mtl-ibp-alpha0.1"
    killed: list[int] = []

    def kill_after_the_first_epoch():
        deadline = time.monotonic() + 600
        while not killed and time.monotonic() < deadline and not (run / "summary.json").exists():
            if _epochs(run):
                for pid in titled(f"ray::adcert-run {run}"):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_after_the_first_epoch, daemon=True)
    killer.start()
    again = run_study(cfg, tmp_path / "killed")
    killer.join(5)
    assert killed, "the run finished before its worker could be killed"
    assert _numbers(again) == _numbers(plain)
    assert _epochs(run) == [1, 2, 3]  # resumed from its last epoch: no epoch trained twice
    assert again["nodes"]["seed0/grid/mtl-ibp-alpha0.1"]["trained_on"]


def test_a_study_stopped_with_sigterm_leaves_no_process_and_resumes_training_nothing_twice(data_dir, tmp_path):
    out = tmp_path / "study"
    log = (tmp_path / "first.log").open("w")
    driver = subprocess.Popen(_study_command(out, data_dir), cwd=tmp_path, env=_env(), stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 600
        while not any((r / "summary.json").is_file() for r in _runs(out)) and time.monotonic() < deadline:
            assert driver.poll() is None, (tmp_path / "first.log").read_text()
            time.sleep(0.2)
        family = descendants(driver.pid)
        assert any("ray::" in Path(f"/proc/{p}/cmdline").read_text() for p in family if os.path.exists(f"/proc/{p}"))
        driver.send_signal(signal.SIGTERM)  # what a scheduler sends
        assert driver.wait(120) == 130, (tmp_path / "first.log").read_text()
    finally:
        driver.kill()
    assert wait_gone(family, 60) == set(), "processes outlived the stopped study"
    assert "Interrupted." in (tmp_path / "first.log").read_text()
    finished = [r for r in _runs(out) if (r / "summary.json").is_file()]
    assert not list(tmp_path.glob("ray*")) and not (tmp_path / "logs").exists()  # Ray wrote nothing in the cwd

    second = subprocess.run(
        _study_command(out, data_dir), cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=900
    )
    assert second.returncode == 0, second.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["runs_trained_now"] == len(_runs(out)) - len(finished) and finished
    for run in _runs(out):
        assert _epochs(run) == list(range(1, len(_epochs(run)) + 1)) and _epochs(run), run  # each epoch once


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_study_on_a_two_node_loopback_cluster_runs_on_both_nodes(data_dir, tmp_path, monkeypatch):
    # Ray's token authentication, with a token of the test's own (nothing written to ~/.ray)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--block", "--disable-usage-stats"]
    nodes = []
    try:
        nodes.append(
            subprocess.Popen(
                [str(RAY), "start", "--head", f"--port={port}", "--include-dashboard=false", *common],
                env=_env(),
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        _wait_for_cluster(address, 1)
        nodes.append(
            subprocess.Popen(
                [str(RAY), "start", f"--address={address}", *common],
                env=_env(),
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        _wait_for_cluster(address, 2)
        done = subprocess.run(
            _study_command(tmp_path / "study", data_dir, "--ray-address", address),
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stderr
    finally:
        for node in nodes:
            node.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started
        for node in nodes:
            try:
                node.wait(60)
            except subprocess.TimeoutExpired:
                node.kill()
    results = json.loads((tmp_path / "study" / "results.json").read_text())
    where = {run: n["trained_on"] for run, n in results["nodes"].items()}
    assert len(set(where.values())) == 2, where  # both nodes trained runs
    assert " on " in done.stderr and all(node in done.stderr for node in set(where.values()))


def _wait_for_cluster(address: str, nodes: int, seconds: float = 180) -> None:
    """Until ``ray status`` at ``address`` counts ``nodes`` live nodes."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = subprocess.run(
            [str(RAY), "status", f"--address={address}"], capture_output=True, text=True, env=_env()
        )
        if status.returncode == 0 and status.stdout.count("node_") >= nodes:
            return
        time.sleep(1)
    raise AssertionError(
        f"the loopback cluster at {address} did not reach {nodes} nodes: {status.stdout}{status.stderr}"
    )

"""The benchmark scripts a GPU session runs as they are: they must keep working without one."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def test_epoch_throughput_runs_every_method_and_reports_each_against_plain_training(tmp_path):
    out = tmp_path / "rows.json"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "epoch_throughput.py"), "--device", "cpu",
                           "--steps", "1", "--batch", "4", "--losses", "ibp", "ad-cert", "--json", str(out)],
                          capture_output=True, text=True, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["loss"] for r in rows] == ["plain-ce", "ibp", "ad-cert"]
    assert rows[0]["x_plain"] == 1.0 and all(r["x_plain"] > 0 and r["peak_bytes"] > 0 for r in rows)
    assert all(abs(r["images_per_s"] * r["seconds_per_step"] - 4) < 1e-6 for r in rows)
    assert "| ad-cert |" in done.stdout

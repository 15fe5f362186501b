"""Package boundaries of vnncomp: no auto_LiRPA, no print, a torch-free verifier worker."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO

PACKAGE = REPO / "vnncomp"


def test_vnncomp_never_imports_auto_lirpa_and_never_prints():
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+auto_LiRPA", source, re.M), path
        # module level only: importing vnncomp must not pull in auto_LiRPA (the worker stays light)
        # bounds.spec (the threat model) may load at module level; the seam (bounds, bounds.lirpa) not
        assert not re.search(r"^(import|from)\s+adcert_plugin\.bounds(\.lirpa)?\s", source, re.M), (
            f"{path}: import adcert_plugin.bounds lazily, inside the function that needs it"
        )
        assert not re.search(r"(?<![\w.])print\(", source), path


def test_importing_vnncomp_does_not_load_auto_lirpa():
    code = (
        "import sys, vnncomp.export.benchmark, vnncomp.cli, vnncomp.results, vnncomp.verifiers; "
        "print('auto_LiRPA' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_marabou_worker_does_not_import_torch():
    code = "import sys, vnncomp.verifiers.marabou_worker, vnncomp.results; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_handle_errors_one_line_exit_codes_and_debug(monkeypatch):
    monkeypatch.delenv("ADCERT_DEBUG", raising=False)
    import click
    from click.testing import CliRunner

    from adcert_plugin.cli import handle_errors
    from adcert_plugin.errors import ConfigError, SoundnessError

    @click.command()
    @click.argument("kind")
    @handle_errors
    def cmd(kind):
        if kind == "config":
            raise ConfigError("loss.alpha=1.5 in run.yaml:\n  must be in [0, 1]")
        if kind == "soundness":
            raise SoundnessError("sample 3 certified but attacked")
        raise ValueError("a bug")

    runner = CliRunner()
    result = runner.invoke(cmd, ["config"])
    assert result.exit_code == 2
    assert result.output == "Error: ConfigError: loss.alpha=1.5 in run.yaml: must be in [0, 1]\n"
    assert runner.invoke(cmd, ["soundness"]).exit_code == 3
    debug = runner.invoke(cmd, ["config", "--debug"])
    assert isinstance(debug.exception, ConfigError) and "Error:" not in debug.output
    bug = runner.invoke(cmd, ["other"])
    assert isinstance(bug.exception, ValueError)

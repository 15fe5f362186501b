"""adcert-export --force removes only what an export made (issue 36): never a user's other files."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from test_vnncomp_benchmark import _export, checkpoint, no_pgd, synthetic  # noqa: F401 (fixtures)

from adcert_plugin.errors import ConfigError
from vnncomp.cli import export_cmd
from vnncomp.export.manifest import MANIFEST


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_force_replaces_an_earlier_export(tmp_path, checkpoint):
    out = tmp_path / "bench"
    _export(checkpoint, out, seed=0)
    listed = json.loads((out / MANIFEST).read_text())["files"]
    assert "instances.csv" in listed and "benchmark.json" in listed and "src/model.pt" in listed
    _export(checkpoint, out, seed=1, force=True)
    assert json.loads((out / "benchmark.json").read_text())["seed"] == 1


@pytest.mark.parametrize("case", ["unrelated folder", "parent of benchmarks", "benchmark with results", "a file"])
def test_force_refuses_anything_an_export_did_not_write(tmp_path, checkpoint, case):
    target = tmp_path / "target"
    if case == "unrelated folder":
        target.mkdir()
        (target / "thesis.tex").write_text("years of work")
    elif case == "parent of benchmarks":
        _export(checkpoint, target / "a")
        _export(checkpoint, target / "b", seed=3)
    elif case == "benchmark with results":
        _export(checkpoint, target)
        (target / "results").mkdir(exist_ok=True)
        (target / "results" / "neuralsat.csv").write_text("answers that took hours\n")
    else:
        target.write_text("not a folder")
    before = _tree(tmp_path)
    with pytest.raises(ConfigError) as err:
        _export(checkpoint, target, force=True)
    assert "choose another --out-dir" in str(err.value)
    assert _tree(tmp_path) == before


def test_force_replaces_an_export_from_before_the_manifest(tmp_path, checkpoint):
    out = tmp_path / "bench"
    _export(checkpoint, out)
    (out / MANIFEST).unlink()  # benchmarks exported before the manifest existed
    _export(checkpoint, out, seed=2, force=True)
    assert json.loads((out / "benchmark.json").read_text())["seed"] == 2
    (out / MANIFEST).unlink()
    (out / "mine.txt").write_text("x")
    with pytest.raises(ConfigError, match="mine.txt"):
        _export(checkpoint, out, force=True)


def test_cli_force_on_a_foreign_folder_is_one_line(tmp_path, checkpoint):
    target = tmp_path / "photos"
    target.mkdir()
    (target / "a.jpg").write_bytes(b"\xff\xd8")
    result = CliRunner().invoke(export_cmd, [str(checkpoint), "--out-dir", str(target), "--n", "2", "--force"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ConfigError") and "a.jpg" in lines[0]
    assert (target / "a.jpg").read_bytes() == b"\xff\xd8"

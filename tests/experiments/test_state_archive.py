"""A study's state committed as one archive (issue 39): deterministic, read as data only, and a
study resumes from it with nothing to train."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import shutil
import tarfile

import pytest
from conftest import REPO

from adcert_plugin.errors import DataError
from adcert_plugin.experiments.study.archive import archive_path, pack, unpack

RESULTS = REPO / "examples" / "results"


def _state(folder):
    """A small state folder: two runs, one with an evaluation, and a hidden lock file."""
    for run, body in (("seed1/teacher", "t"), ("seed1/grid/a", "a")):
        (folder / run).mkdir(parents=True)
        (folder / run / "metrics.jsonl").write_text(f'{{"epoch": 1, "run": "{body}"}}\n')
        (folder / run / "summary.json").write_text("{}\n")
    (folder / "seed1/teacher/eval-test").mkdir()
    (folder / "seed1/teacher/eval-test/summary.json").write_text('{"n": 2}\n')
    (folder / ".study.lock").write_text("")
    return folder


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_packing_the_same_files_gives_the_same_bytes_whatever_their_times(tmp_path):
    state = _state(tmp_path / "state")
    first = pack(state).read_bytes()
    assert archive_path(state) == tmp_path / "state.tar.gz"
    for path in state.rglob("*"):
        os.utime(path, (1, 1))
    (state / ".packed").unlink()  # force a second packing
    assert pack(state).read_bytes() == first
    with tarfile.open(archive_path(state)) as tar:
        names = tar.getnames()
        assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in tar.getmembers())
    assert names == sorted(names) and ".study.lock" not in names and ".packed" not in names


def test_a_folder_unchanged_since_its_last_packing_is_not_packed_again(tmp_path):
    state = _state(tmp_path / "state")
    archive = pack(state)
    os.utime(archive, (1, 1))
    pack(state)
    assert archive.stat().st_mtime == 1
    (state / "seed1/grid/a/summary.json").write_text('{"done": true}\n')
    pack(state)
    assert archive.stat().st_mtime != 1


def test_a_fresh_clone_gets_the_folder_back_whole(tmp_path):
    state = _state(tmp_path / "state")
    before = {k: v for k, v in _files(state).items() if not k.startswith(".")}
    shutil.copy(pack(state), tmp_path / "clone.tar.gz")
    clone = tmp_path / "clone"
    assert unpack(clone) == len(before)
    assert _files(clone) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".clone")]  # no staging folder left
    (tmp_path / "empty").mkdir()  # an empty folder (say, a stopped study's) is restored too
    shutil.copy(tmp_path / "clone.tar.gz", tmp_path / "empty.tar.gz")
    assert unpack(tmp_path / "empty") == len(before)


def test_a_folder_with_finished_runs_is_kept_and_an_archive_ahead_of_it_is_named(tmp_path, caplog):
    state = _state(tmp_path / "state")
    pack(state)
    shutil.rmtree(state / "seed1/grid")
    with caplog.at_level(logging.WARNING):
        assert unpack(state) == 0
    assert not (state / "seed1/grid").exists()
    assert "lacks 1 finished runs" in caplog.text and "seed1/grid/a" in caplog.text


@pytest.mark.parametrize("kind", ["parent", "absolute", "symlink"])
def test_an_archive_member_that_is_no_plain_file_inside_the_folder_is_refused(tmp_path, kind):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo({"parent": "../evil", "absolute": "/tmp/evil", "symlink": "seed1/link"}[kind])
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    (tmp_path / "state.tar.gz").write_bytes(buffer.getvalue())
    with pytest.raises(DataError, match="not a plain file inside the state folder"):
        unpack(tmp_path / "state")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "state").exists()


def test_a_damaged_archive_is_a_one_line_error(tmp_path):
    (tmp_path / "state.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="cannot be read as a state archive") as err:
        unpack(tmp_path / "state")
    assert "\n" not in str(err.value)


def test_a_committed_archive_restores_and_its_study_resumes_with_nothing_to_train(tmp_path):
    """MNIST ε 0.1 from a fresh clone: everything is restored, so it needs neither data nor training."""
    from adcert_plugin.experiments.study import get_study, run_study

    shutil.copy(RESULTS / "study-mnist-0.1" / "state.tar.gz", tmp_path / "state.tar.gz")
    cfg = dataclasses.replace(get_study("mnist-0.1"), processes=1)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=str(tmp_path / "no-data")))
    results = run_study(cfg, tmp_path / "out", state_dir=tmp_path / "state")
    committed = json.loads((RESULTS / "study-mnist-0.1" / "results.json").read_text())
    assert results["runs_trained_now"] == 0
    for key in ("chosen", "grid", "final", "summary"):
        assert results[key] == committed[key], key
    # paired differences gained an "estimable" flag (issue 36) after these results were committed
    for pair, metrics in committed["paired"].items():
        for metric, difference in metrics.items():
            now = {k: v for k, v in results["paired"][pair][metric].items() if k != "estimable"}
            assert now == difference, (pair, metric)

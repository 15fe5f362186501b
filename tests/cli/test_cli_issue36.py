"""Issue 36 (round two of a new user's bad inputs): each class of fault, one test or table each.

Checkpoints that are silently wrong (NaN weights, a future format), misleading checkpoint
messages, OS faults (full disk, read-only, a file in the path) as one line, a second writer
into an eval report, NaN timeouts and broken instances.csv files, ε as 2/255, the umask.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from test_cli_bad_input import _commands, _good, _one_line, _set_args, data_root  # noqa: F401 (fixture)

from adcert_plugin.cli import eval_cmd, train_cmd
from adcert_plugin.io import LOCK_NAME, atomic_write_text
from vnncomp.cli import export_cmd, report_cmd, verify_cmd


def _error(result, kind: str) -> str:
    """The error line of a refused command (progress lines such as "loaded mnist/test" may come first)."""
    lines = result.output.strip().splitlines()
    assert result.exit_code not in (0, None) and "Traceback" not in result.output, result.output
    assert lines[-1].startswith(f"Error: {kind}: ") and sum(ln.startswith("Error") for ln in lines) == 1, lines
    return lines[-1]


def _record(tmp_path):
    return torch.load(_good(tmp_path / "good.pt"), weights_only=True)


@pytest.mark.parametrize("command", ["eval", "export", "teacher"])
@pytest.mark.parametrize("case", ["nan weights", "inf weights", "future version", "folder", "random bytes"])
def test_checkpoints_silently_wrong_or_misnamed(data_root, tmp_path, command, case):
    path = tmp_path / "bad.pt"
    if case in ("nan weights", "inf weights"):
        record = _record(tmp_path)
        key = next(iter(record["model"]))
        record["model"][key][0, 0] = float("nan") if case == "nan weights" else float("inf")
        torch.save(record, path)
        fragment = "NaN or infinite"
    elif case == "future version":
        record = _record(tmp_path)
        record["version"] = 99
        torch.save(record, path)
        fragment = "format version 99"
    elif case == "folder":
        path.mkdir()
        fragment = "is a folder"
    else:
        path.write_bytes(os.urandom(4096))
        fragment = "not a PyTorch checkpoint"
    cmd, args = _commands(data_root, tmp_path, path)[command]
    result = CliRunner().invoke(cmd, args)
    if command == "export" and case == "folder":  # click's own check of the argument says it as well
        assert result.exit_code == 2 and "is a directory" in result.output
        return
    line = _one_line(result, "CheckpointError")
    assert fragment in line and "pickled Python objects" not in line and "does not exist" not in line
    assert not (tmp_path / "ev").exists() and not (tmp_path / "bench").exists() and not (tmp_path / "run").exists()


def _full_disk(monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)


def _read_only(monkeypatch, root):
    """Every create under ``root`` fails as on a read-only mount (tests run as root, so chmod cannot)."""
    real_open, real_mkdir = os.open, os.mkdir
    root = str(root)

    def guarded(fn):
        def call(path, *args, **kwargs):
            if os.fspath(path).startswith(root) and (fn is real_mkdir or (args and args[0] & os.O_CREAT)):
                raise OSError(errno.EROFS, "Read-only file system", os.fspath(path))
            return fn(path, *args, **kwargs)

        return call

    monkeypatch.setattr(os, "open", guarded(real_open))
    monkeypatch.setattr(os, "mkdir", guarded(real_mkdir))


def test_full_disk_is_one_line_on_train_and_eval(data_root, tmp_path, monkeypatch):
    model = _good(tmp_path / "m.pt")
    _full_disk(monkeypatch)
    result = CliRunner().invoke(train_cmd, _set_args(data_root, tmp_path / "run"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = result.output.strip().splitlines()[-1]  # after the "loaded mnist/..." lines
    assert line.startswith("Error: OutputError: ") and "disk is full" in line and str(tmp_path / "run") in line
    line = _error(
        CliRunner().invoke(
            eval_cmd,
            [
                str(model),
                "--data-dir",
                str(data_root),
                "--end",
                "8",
                "--methods",
                "IBP",
                "--out-dir",
                str(tmp_path / "ev"),
            ],
        ),
        "OutputError",
    )
    assert "disk is full" in line


def test_default_report_folder_in_a_read_only_place_names_out_dir(data_root, tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    model = _good(shared / "m.pt")
    _read_only(monkeypatch, shared)
    line = _error(
        CliRunner().invoke(eval_cmd, [str(model), "--data-dir", str(data_root), "--end", "8", "--methods", "IBP"]),
        "OutputError",
    )
    assert "default beside the checkpoint" in line and "pass --out-dir" in line and "read-only" in line
    result = CliRunner().invoke(
        eval_cmd,
        [
            str(model),
            "--data-dir",
            str(data_root),
            "--end",
            "8",
            "--methods",
            "IBP",
            "--out-dir",
            str(tmp_path / "mine"),
        ],
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("case", ["parent is a file", "out is a file"])
def test_output_paths_that_cannot_be_folders(data_root, tmp_path, case):
    model = _good(tmp_path / "m.pt")
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "sub" if case == "parent is a file" else tmp_path / "afile"
    for cmd, args in (
        (train_cmd, _set_args(data_root, out, without=("out_dir",)) + ["--out-dir", str(out)]),
        (eval_cmd, [str(model), "--data-dir", str(data_root), "--end", "8", "--out-dir", str(out)]),
        (export_cmd, [str(model), "--data-dir", str(data_root), "--n", "2", "--out-dir", str(out)]),
    ):
        line = _error(CliRunner().invoke(cmd, args), "ConfigError")
        assert "not a folder" in line or "is not a folder" in line, line
    assert (tmp_path / "afile").read_text() == "x"


def test_report_and_verify_out_checked_before_any_work(data_root, tmp_path):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "bench").mkdir()
    (tmp_path / "samples.jsonl").write_text("")
    for out, fragment in ((tmp_path, "is a folder"), (tmp_path / "afile" / "r.json", "is a file, not a folder")):
        line = _one_line(
            CliRunner().invoke(
                report_cmd, [str(tmp_path / "samples.jsonl"), str(tmp_path / "bench"), "--out", str(out)]
            ),
            "ConfigError",
        )
        assert fragment in line
        line = _one_line(CliRunner().invoke(verify_cmd, [str(tmp_path / "bench"), "--out", str(out)]), "ConfigError")
        assert fragment in line


HOLD = """
import sys, time
from adcert_plugin.io import FolderLock
with FolderLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_eval_into_one_report_folder_is_refused(data_root, tmp_path):
    model, report = _good(tmp_path / "m.pt"), tmp_path / "ev"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(report)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        args = [
            str(model),
            "--data-dir",
            str(data_root),
            "--end",
            "8",
            "--methods",
            "IBP",
            "--out-dir",
            str(report),
            "--overwrite",
        ]
        line = _error(CliRunner().invoke(eval_cmd, args), "ConfigError")
        assert f"pid {holder.pid}" in line and "being written" in line
        assert sorted(p.name for p in report.iterdir()) == [LOCK_NAME]
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("value", ["nan", "inf", "-5", "0"])
def test_timeouts_must_be_positive_numbers(data_root, tmp_path, value):
    model = _good(tmp_path / "m.pt")
    result = CliRunner().invoke(
        export_cmd, [str(model), "--data-dir", str(data_root), "--out-dir", str(tmp_path / "b"), "--timeout", value]
    )
    assert result.exit_code == 2 and "--timeout" in result.output and not (tmp_path / "b").exists()
    (tmp_path / "bench").mkdir(exist_ok=True)
    result = CliRunner().invoke(verify_cmd, [str(tmp_path / "bench"), "--timeout", value])
    assert result.exit_code == 2 and "--timeout" in result.output


def _bench(data_root, tmp_path):
    model = _good(tmp_path / "m.pt")
    bench = tmp_path / "bench"
    result = CliRunner().invoke(
        export_cmd, [str(model), "--data-dir", str(data_root), "--out-dir", str(bench), "--n", "2", "--eps", "0.01"]
    )
    assert result.exit_code == 0, result.output
    return bench


@pytest.mark.parametrize("case", ["nan timeout", "negative timeout", "empty"])
def test_instances_csv_that_would_mislead_the_verifier(data_root, tmp_path, case):
    bench = _bench(data_root, tmp_path)
    rows = (bench / "instances.csv").read_text().splitlines()
    if case == "empty":
        text = ""
    else:
        onnx, vnnlib, _ = rows[0].split(",")
        text = f"{onnx},{vnnlib},{'nan' if case == 'nan timeout' else '-3'}\n"
    (bench / "instances.csv").write_text(text)
    from adcert_plugin.errors import ConfigError
    from vnncomp.export.instances import read_instances

    with pytest.raises(ConfigError, match="lists no instances" if case == "empty" else "positive number of seconds"):
        read_instances(bench)  # what adcert-verify, adcert-report and the evidence check read


def test_eps_as_a_fraction_everywhere(data_root, tmp_path):
    model = _good(tmp_path / "m.pt")
    result = CliRunner().invoke(
        eval_cmd,
        [
            str(model),
            "--data-dir",
            str(data_root),
            "--end",
            "4",
            "--methods",
            "IBP",
            "--eps",
            "2/255",
            "--out-dir",
            str(tmp_path / "ev"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert abs(__import__("json").loads(result.stdout)["eps"] - 2 / 255) < 1e-15
    result = CliRunner().invoke(
        export_cmd,
        [str(model), "--data-dir", str(data_root), "--out-dir", str(tmp_path / "b"), "--n", "1", "--eps", "2/255"],
    )
    assert result.exit_code == 0, result.output
    from adcert_plugin.training import build_config

    assert build_config(sets=["schedule.eps=2/255"]).schedule.eps == 2 / 255
    assert build_config(flags={"schedule.eps": 2 / 255}).schedule.eps == 2 / 255
    result = CliRunner().invoke(train_cmd, _set_args(data_root, tmp_path / "run") + ["--eps", "2/0"])
    assert result.exit_code == 2 and "not a finite number" in result.output


def test_files_respect_the_umask(data_root, tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        model = _good(tmp_path / "m.pt")
        result = CliRunner().invoke(
            eval_cmd,
            [
                str(model),
                "--data-dir",
                str(data_root),
                "--end",
                "4",
                "--methods",
                "IBP",
                "--out-dir",
                str(tmp_path / "ev"),
            ],
        )
        assert result.exit_code == 0, result.output
    finally:
        os.umask(old)
    for path in (tmp_path / "a.txt", model, tmp_path / "ev" / "summary.json", tmp_path / "ev" / "config.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_ctrl_c_while_a_console_script_starts_is_quiet(monkeypatch):
    import signal

    from adcert_plugin.cli import startup

    monkeypatch.setattr(signal, "signal", lambda sig, handler: installed.append(handler))
    monkeypatch.setattr(signal, "getsignal", lambda sig: installed[-1] if installed else signal.default_int_handler)
    installed = []
    monkeypatch.setattr(sys, "argv", ["python", "-m", "pytest"])
    startup.quiet_interrupt_while_starting()
    assert installed == []  # a library import (tests, notebooks) leaves Ctrl-C alone
    monkeypatch.setattr(sys, "argv", ["/venv/bin/adcert-train", "--preset", "x"])
    startup.quiet_interrupt_while_starting()
    assert installed == [startup._starting]
    with pytest.raises(SystemExit) as stop:
        startup._starting(signal.SIGINT, None)
    assert stop.value.code == 130
    startup.command_started()
    assert installed[-1] is signal.default_int_handler

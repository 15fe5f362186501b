"""Bad input by class, on every command that takes it (issue 17): malformed checkpoints, devices that
are not there, eps outside pixel space, reversed ranges, files torch refuses; Ctrl-C; warnings."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from train_fixtures import tiny_sets, write_fake_mnist

from adcert_plugin.cli import eval_cmd, losses_cmd, train_cmd
from adcert_plugin.models import create_model
from adcert_plugin.training import arch_record, save_checkpoint, trainer as T
from vnncomp.cli import export_cmd


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_fake_mnist(tmp_path_factory.mktemp("data"))


def _good(path):
    torch.manual_seed(0)
    net = create_model("mlp", (1, 28, 28), 10, hidden=[8])
    return save_checkpoint(
        path, net, arch_record("mlp", (1, 28, 28), 10, {"hidden": [8]}), "mnist", {"schedule": {"eps": 0.05}}
    )


def _set_args(data_root, out, without=(), **extra):
    sets = [s for s in tiny_sets(data_root, out, extra=extra or None) if s.split("=")[0] not in without]
    return [a for s in sets for a in ("--set", s)]


def _commands(data_root, tmp_path, checkpoint):
    """How each command takes a checkpoint: (command, args)."""
    return {
        "eval": (eval_cmd, [str(checkpoint), "--data-dir", str(data_root), "--out-dir", str(tmp_path / "ev")]),
        "export": (export_cmd, [str(checkpoint), "--data-dir", str(data_root), "--out-dir", str(tmp_path / "bench")]),
        "teacher": (
            train_cmd,
            _set_args(data_root, tmp_path / "run", **{"loss.name": "ad-cert"}) + ["--teacher", str(checkpoint)],
        ),
    }


def _one_line(result, kind: str) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code != 0 and len(lines) == 1, result.output
    assert lines[0].startswith(f"Error: {kind}: "), lines[0]
    return lines[0]


def _drop(record: dict, dotted: str) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        record = record[key]
    del record[last]


MALFORMED = [
    "arch",
    "arch.name",
    "arch.in_shape",
    "arch.num_classes",
    "model",
    "weights not tensors",
    "kwargs wrong",
    "config not a mapping",
]


@pytest.mark.parametrize("command", ["eval", "export", "teacher"])
@pytest.mark.parametrize("damage", MALFORMED)
def test_a_checkpoint_that_looks_like_ours_but_lacks_a_field_is_one_line(data_root, tmp_path, command, damage):
    record = torch.load(_good(tmp_path / "good.pt"), weights_only=True)
    if damage == "weights not tensors":
        record["model"] = {"0.weight": [1, 2]}
    elif damage == "kwargs wrong":
        record["arch"]["kwargs"] = {"hidden": [8], "colour": "red"}
    elif damage == "config not a mapping":
        record["config"] = [1, 2]
    else:
        _drop(record, damage)
    torch.save(record, tmp_path / "bad.pt")
    cmd, args = _commands(data_root, tmp_path, tmp_path / "bad.pt")[command]
    line = _one_line(CliRunner().invoke(cmd, args), "CheckpointError")
    assert "bad.pt" in line
    assert not (tmp_path / "bench").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["eval", "export", "teacher"])
@pytest.mark.parametrize("kind", ["text", "empty", "pickled module"])
def test_files_torch_refuses_never_advise_weights_only_false(data_root, tmp_path, command, kind):
    path = tmp_path / "odd.pt"
    if kind == "text":
        path.write_text("not a checkpoint\n")
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        torch.save(create_model("mlp", (1, 28, 28), 10, hidden=[8]), path)  # a whole pickled nn.Module
    cmd, args = _commands(data_root, tmp_path, path)[command]
    line = _one_line(CliRunner().invoke(cmd, args), "CheckpointError")
    assert "weights_only" not in line and "Weights only" not in line
    if kind == "pickled module":
        assert "pickled Python objects" in line and "state_dict" in line


DEVICES = ["cuda", "cuda:7", "tpu", "cuda:x"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("command", ["train", "eval"])
def test_a_device_that_is_not_there_is_one_line_on_every_command(data_root, tmp_path, command, device):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 CUDA devices")
    if command == "train":  # --device is a choice there (cpu, cuda, auto): others are usage errors
        result = CliRunner().invoke(train_cmd, _set_args(data_root, tmp_path / "run") + ["--device", device])
        if device != "cuda":
            lines = result.output.strip().splitlines()
            assert result.exit_code == 2 and len(lines) == 1 and "Invalid value for '--device'" in lines[0]
            return
    else:
        result = CliRunner().invoke(
            eval_cmd,
            [
                str(_good(tmp_path / "m.pt")),
                "--data-dir",
                str(data_root),
                "--device",
                device,
                "--out-dir",
                str(tmp_path / "ev"),
            ],
        )
    line = _one_line(result, "ConfigError")
    assert device in line and ("not there" in line or "unknown device" in line)
    assert not (tmp_path / "run").exists() and not (tmp_path / "ev").exists()


@pytest.mark.parametrize("eps", ["1.5", "inf", "nan"])
@pytest.mark.parametrize("command", ["train", "eval", "export"])
def test_eps_outside_pixel_space_is_refused_everywhere(data_root, tmp_path, command, eps):
    model = str(_good(tmp_path / "m.pt"))
    if command == "train":
        result = CliRunner().invoke(
            train_cmd, _set_args(data_root, tmp_path / "run", without=("schedule.eps",)) + ["--eps", eps]
        )
    elif command == "eval":
        result = CliRunner().invoke(eval_cmd, [model, "--data-dir", str(data_root), "--eps", eps])
    else:
        result = CliRunner().invoke(
            export_cmd, [model, "--data-dir", str(data_root), "--eps", eps, "--out-dir", str(tmp_path / "bench")]
        )
    if eps in ("inf", "nan"):  # refused while parsing the option (issue 36: never a NaN radius)
        line = result.output.strip()
        assert result.exit_code == 2 and "Invalid value for '--eps'" in line and len(line.splitlines()) == 1
    else:
        line = _one_line(result, "ConfigError")
    assert "1]" in line and "pixel space" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


@pytest.mark.parametrize("command", ["eval", "export"])
def test_a_reversed_sample_range_is_called_reversed(data_root, tmp_path, command):
    cmd = eval_cmd if command == "eval" else export_cmd
    args = [str(_good(tmp_path / "m.pt")), "--data-dir", str(data_root), "--start", "30", "--end", "10"]
    line = _one_line(CliRunner().invoke(cmd, args + ["--out-dir", str(tmp_path / "o")]), "ConfigError")
    assert "reversed" in line and "not inside" not in line
    outside = CliRunner().invoke(cmd, [*args[:3], "--end", "100000", "--out-dir", str(tmp_path / "o")])
    assert outside.exit_code == 2 and "not inside the test split of 64" in outside.output.strip().splitlines()[-1]


def test_losses_pattern_matching_nothing_says_so():
    result = CliRunner().invoke(losses_cmd, ["nothing-*"])
    line = _one_line(result, "RegistryError")
    assert "no registered loss matches 'nothing-*'" in line and "ad-cert" in line and result.exit_code == 2
    assert CliRunner().invoke(losses_cmd, ["cc-*"]).output.split()[0] == "cc-dist"


def test_ctrl_c_in_training_prints_the_exact_resume_command(data_root, tmp_path, monkeypatch):
    out = tmp_path / "run"
    args = _set_args(data_root, out, **{"schedule.epochs": 3}) + ["--seed", "5"]
    real = T._Trainer.evaluate

    def evaluate_until_epoch_2(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(T._Trainer, "evaluate", evaluate_until_epoch_2)
    result = CliRunner().invoke(train_cmd, args)
    assert result.exit_code == 130 and "Aborted" not in result.output
    said = result.stderr.strip().splitlines()[-1]
    assert said.startswith("Interrupted.") and "to continue from it: adcert-train " in said
    command = shlex.split(said.split("to continue from it: ", 1)[1])
    assert command[0] == "adcert-train" and command[-1] == "--resume"
    monkeypatch.setattr(T._Trainer, "evaluate", real)
    again = CliRunner().invoke(train_cmd, command[1:])
    assert again.exit_code == 0, again.output
    assert json.loads((out / "summary.json").read_text())["epochs"] == 3


def test_ctrl_c_before_the_first_epoch_leaves_a_folder_the_same_command_reuses(data_root, tmp_path, monkeypatch):
    out = tmp_path / "run"
    args = _set_args(data_root, out, **{"schedule.epochs": 1})

    def interrupt(self, epoch):
        raise KeyboardInterrupt

    monkeypatch.setattr(T._Trainer, "train_epoch", interrupt)
    result = CliRunner().invoke(train_cmd, args)
    assert result.exit_code == 130 and "run the same command again" in result.stderr
    monkeypatch.undo()
    assert CliRunner().invoke(train_cmd, args).exit_code == 0  # no --force needed


def test_ctrl_c_in_eval_prints_the_resume_command(data_root, tmp_path, monkeypatch):
    from adcert_plugin.evaluation import cascade

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cascade, "evaluate_block", interrupt)
    args = [str(_good(tmp_path / "m.pt")), "--data-dir", str(data_root), "--end", "8", "--overwrite"]
    result = CliRunner().invoke(eval_cmd, args)
    assert result.exit_code == 130
    said = result.stderr.strip().splitlines()[-1]
    assert said.endswith("--end 8 --resume") and "--overwrite" not in said and "adcert-eval " in said


def test_eval_output_has_no_torch_deprecation_warning(data_root, tmp_path):
    """auto_LiRPA's CROWN path calls torch.jit.script, whose DeprecationWarning is not the user's business."""
    model = _good(tmp_path / "m.pt")
    code = "import sys; from adcert_plugin.cli import eval_cmd; sys.argv[0] = 'adcert-eval'; eval_cmd()"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("ADCERT_DEBUG", None)
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(model),
            "--data-dir",
            str(data_root),
            "--end",
            "64",
            "--methods",
            "CROWN",
            "--eps",
            "0.001",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["counts"]["pgd_robust"] > 0  # so CROWN (and torch.jit.script) ran
    assert "Warning" not in run.stderr and "warnings.warn" not in run.stderr, run.stderr

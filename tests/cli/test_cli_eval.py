"""adcert-eval through click's CliRunner: bad inputs give one line and an exit code; a real run."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from adcert_plugin import bounds
from adcert_plugin.cli import eval_cmd
from adcert_plugin.models import create_model
from adcert_plugin.training import arch_record, save_checkpoint


@pytest.fixture
def files(tmp_path):
    """An adcert checkpoint (MNIST-shaped MLP), a plain state_dict and a file that is no checkpoint."""
    torch.manual_seed(0)
    model = create_model("mlp", (1, 28, 28), 10, hidden=[32])
    save_checkpoint(
        tmp_path / "model.pt",
        model,
        arch_record("mlp", (1, 28, 28), 10, {"hidden": [32]}),
        "mnist",
        {"schedule": {"eps": 0.01}},
    )
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    (tmp_path / "notes.pt").write_text("not a checkpoint\n")
    return tmp_path


BAD_INPUTS = [
    (["missing.pt"], "CheckpointError: ", "does not exist", 1),
    (["plain.pt"], "CheckpointError: ", "not an adcert checkpoint", 1),
    (["notes.pt"], "CheckpointError: ", "cannot load", 1),
    (["plain.pt", "--arch", "mlp"], "ConfigError: ", "--arch needs --dataset", 2),
    (["plain.pt", "--arch", "cnn7", "--dataset", "mnist"], "CheckpointError: ", "do not fit", 1),
    (["model.pt", "--dataset", "cifar10"], "DataError: ", "expects (1, 28, 28)", 1),
    (["model.pt", "--eps", "0"], "ConfigError: ", "eps=0", 2),
    (["model.pt", "--eps", "-0.1"], "ConfigError: ", "must be > 0", 2),
    (["model.pt", "--methods", "IBP,deepz"], "ConfigError: ", "unknown bound method deepz", 2),
    (["model.pt", "--data-dir", "{tmp}/nowhere"], "DataError: ", "does not exist", 1),
    (["model.pt", "--pgd-steps", "0"], "Error: ", "--pgd-steps", 2),
]


@pytest.mark.parametrize("args,kind,fragment,code", BAD_INPUTS, ids=[" ".join(a[0]) for a in BAD_INPUTS])
def test_eval_cmd_bad_input_is_one_line(files, args, kind, fragment, code):
    before = sorted(p.name for p in files.iterdir())
    args = [str(files / args[0])] + [a.replace("{tmp}", str(files)) for a in args[1:]]
    result = CliRunner().invoke(eval_cmd, args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code, result.output
    assert len(lines) == 1 and lines[0].startswith("Error: ") and kind in lines[0] and fragment in lines[0], lines
    assert sorted(p.name for p in files.iterdir()) == before  # nothing written


def test_eval_cmd_names_the_env_var_a_missing_data_dir_came_from(files):
    missing = str(files / "nowhere")
    from_env = CliRunner().invoke(eval_cmd, [str(files / "model.pt")], env={"ADCERT_DATA": missing})
    from_option = CliRunner().invoke(
        eval_cmd, [str(files / "model.pt"), "--data-dir", missing + "2"], env={"ADCERT_DATA": missing}
    )
    assert from_env.exit_code == from_option.exit_code == 1
    assert f"{missing} (from $ADCERT_DATA) does not exist" in from_env.stderr
    assert f"{missing}2 (from --data-dir) does not exist" in from_option.stderr


def test_eval_cmd_help_ends_with_an_example():
    result = CliRunner().invoke(eval_cmd, ["--help"])
    assert result.exit_code == 0
    assert result.output.rstrip().splitlines()[-1].strip().startswith("adcert-eval ")
    for option in ("--eps", "--methods", "--resume", "--pgd-restarts", "--out-dir", "--json"):
        assert option in result.output


def test_eval_cmd_json_run_and_soundness_exit_code(files, data_dir, monkeypatch):
    args = [
        str(files / "model.pt"),
        "--data-dir",
        str(data_dir),
        "--end",
        "40",
        "--methods",
        "crown",
        "--methods",
        "IBP",
        "--batch-size",
        "16",
        "--json",
    ]
    result = CliRunner().invoke(eval_cmd, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n"] == 40 and summary["methods"] == ["IBP", "CROWN"] and summary["eps"] == 0.01
    out = files / "eval-0.01"
    assert (out / "samples.jsonl").is_file() and json.loads((out / "summary.json").read_text()) == summary
    assert "certified CROWN" in result.stderr  # the table

    again = CliRunner().invoke(eval_cmd, args)  # a finished report is not silently replaced
    assert again.exit_code == 2 and "--resume" in again.stderr
    resumed = CliRunner().invoke(eval_cmd, args + ["--resume"])
    assert resumed.exit_code == 0 and json.loads(resumed.stdout)["counts"] == summary["counts"]

    honest = bounds.BoundedNet.margin_lower
    monkeypatch.setattr(
        bounds.BoundedNet,
        "margin_lower",
        lambda self, box, y, method="IBP", stats_input=None: honest(self, box, y, method) + 100,
    )
    bad = CliRunner().invoke(eval_cmd, args + ["--overwrite"])
    assert summary["counts"]["pgd_robust"] > 0  # so some sample is bounded
    assert bad.exit_code == 3
    assert bad.stderr.strip().splitlines()[-1].startswith("Error: SoundnessError: ")
    assert "SOUNDNESS ERRORS" in bad.stderr  # the table is still printed
    assert json.loads((out / "summary.json").read_text())["soundness_errors"]

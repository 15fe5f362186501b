"""adcert-train: a real run through the CLI, and a table of bad inputs (one-line errors)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from train_fixtures import tiny_sets, write_fake_mnist

from adcert_plugin.cli import train_cmd
from adcert_plugin.losses import register_loss, unregister_loss
from adcert_plugin.losses.base import LossOutput
from adcert_plugin.models import create_model
from adcert_plugin.training import arch_record, save_checkpoint


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_fake_mnist(tmp_path_factory.mktemp("data"))


def _args(
    data_root: Path, out: Path, loss: str = "mtl-ibp", epochs: int = 1, extra: dict | None = None, flags: list[str] = ()
) -> list[str]:
    """--set args of a tiny run, minus the keys that ``flags`` set (--set would beat the flags)."""
    beaten = {"--loss": "loss.name=", "--out-dir": "out_dir=", "--data-dir": "data.data_dir="}
    drop = tuple(beaten[f] for f in flags if f in beaten)
    sets = [s for s in tiny_sets(data_root, out, loss, epochs, extra) if not s.startswith(drop or ("\0",))]
    return [a for s in sets for a in ("--set", s)] + list(flags)


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_help_ends_with_an_example():
    result = CliRunner().invoke(train_cmd, ["--help"])
    assert result.exit_code == 0
    lines = result.output.rstrip().splitlines()
    assert "Example:" in result.output and lines[-1].strip().startswith("adcert-train --preset")
    for option in (
        "--config",
        "--preset",
        "--loss",
        "--teacher",
        "--dataset",
        "--data-dir",
        "--eps",
        "--epochs",
        "--out-dir",
        "--seed",
        "--device",
        "--set",
        "--resume",
        "--force",
        "--debug",
    ):
        assert option in result.output


def test_list_presets():
    result = CliRunner().invoke(train_cmd, ["--list-presets"])
    assert result.exit_code == 0 and "mnist-small-adcert" in result.output.split()


def test_cli_trains_and_resumes(data_root, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(train_cmd, _args(data_root, out) + ["--epochs", "1", "--seed", "5"])
    assert result.exit_code == 0, result.output
    assert "IBP-certified" in result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 1 and "ibp_cert_acc" in summary
    again = CliRunner().invoke(train_cmd, ["--resume", "--out-dir", str(out), "--epochs", "2"])  # from config.yaml
    assert again.exit_code == 0, again.output
    assert json.loads((out / "summary.json").read_text())["epochs"] == 2


def _teacher(path: Path, in_shape, classes: int) -> Path:
    net = create_model("mlp", in_shape, classes, hidden=(8,))
    return save_checkpoint(path, net, arch_record("mlp", in_shape, classes, {"hidden": [8]}), None)


BAD = [
    # (name, extra args, message fragment, exit code)
    ("unknown loss flag", ["--loss", "mtl-ipb"], "Invalid value for '--loss'", 2),
    ("unknown loss name", ["--set", "loss.name=mtl-ipb"], "UnknownLossError: unknown loss 'mtl-ipb'", 2),
    ("missing teacher", ["--loss", "ad-cert"], "ConfigError: loss 'ad-cert' needs a teacher", 2),
    ("teacher classes", ["--loss", "ad-cert", "--teacher", "{classes}"], "predicts 5 classes", 2),
    ("teacher shape", ["--loss", "ad-cert", "--teacher", "{shape}"], "takes inputs (3, 32, 32)", 2),
    ("teacher file", ["--loss", "ad-cert", "--teacher", "{tmp}/none.pt"], "CheckpointError", 1),
    ("missing data dir", ["--data-dir", "{tmp}/nodata"], "DataError: data directory", 1),
    ("unknown config key", ["--config", "{bad_yaml}"], "unknown key 'schedule.epoch'", 2),
    ("bad range", ["--set", "optim.lr=-1"], "optim.lr=-1.0 in --set: must be > 0", 2),
    ("bad set", ["--set", "optim.lr"], "--set expects KEY=VALUE", 2),
    ("unknown preset", ["--preset", "mnist-smal-teacher"], "unknown preset", 2),
    ("existing run", ["--out-dir", "{existing}"], "already holds a run", 2),
    ("unstarted run", ["--out-dir", "{unstarted}"], "finished no epoch (config.yaml; no last.pt)", 2),
    ("nothing to resume", ["--resume"], "nothing to resume", 2),
    ("resume and force", ["--out-dir", "{existing}", "--resume", "--force"], "contradict", 2),
    ("cuda missing", ["--device", "cuda"], "CUDA is not available", 2),
]


@pytest.mark.parametrize("name,extra,fragment,code", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gives_one_line_and_changes_nothing(name, extra, fragment, code, data_root, tmp_path):
    if name == "cuda missing":
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
    (tmp_path / "bad.yaml").write_text("schedule:\n  epoch: 3\n")
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "config.yaml").write_text("seed: 1\n")
    (existing / "last.pt").write_bytes(b"")
    unstarted = tmp_path / "unstarted"  # left by a start that failed before its first epoch (older adcert)
    unstarted.mkdir()
    (unstarted / "config.yaml").write_text("seed: 1\n")
    subs = {
        "{tmp}": str(tmp_path),
        "{bad_yaml}": str(tmp_path / "bad.yaml"),
        "{existing}": str(existing),
        "{unstarted}": str(unstarted),
        "{classes}": str(_teacher(tmp_path / "t5.pt", (1, 28, 28), 5)),
        "{shape}": str(_teacher(tmp_path / "t32.pt", (3, 32, 32), 10)),
    }
    args = []
    for a in extra:
        for key, value in subs.items():
            a = a.replace(key, value)
        args.append(a)
    before = _snapshot(tmp_path)
    result = CliRunner().invoke(train_cmd, _args(data_root, tmp_path / "out", flags=args))
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert fragment in lines[0]
    assert _snapshot(tmp_path) == before


@dataclass(frozen=True)
class _Empty:
    pass


def test_nan_loss_is_a_one_line_training_error(data_root, tmp_path):
    @register_loss("cli-nan", config=_Empty, needs={"bounds"})
    def nan(ctx, cfg):
        """Always NaN."""
        return LossOutput(ctx.student_logits("clean").sum() * float("nan"), {})

    try:
        extra = {"schedule.eps_start_epoch": 2, "schedule.eps_length_epochs": 0}
        result = CliRunner().invoke(train_cmd, _args(data_root, tmp_path / "run", "cli-nan", 2, extra))
    finally:
        unregister_loss("cli-nan")
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: TrainingError: non-finite loss nan at epoch 2, step 1/4")
    assert (tmp_path / "run" / "last.pt").exists()


def test_debug_keeps_the_traceback(data_root, tmp_path):
    result = CliRunner().invoke(train_cmd, _args(data_root, tmp_path / "out", flags=["--loss", "ad-cert", "--debug"]))
    assert result.exit_code != 0 and result.exception is not None
    assert type(result.exception).__name__ == "ConfigError"


def test_losses_command_lists_every_loss_with_params():
    from click.testing import CliRunner

    from adcert_plugin.cli import losses_cmd
    from adcert_plugin.losses import list_losses

    result = CliRunner().invoke(losses_cmd, ["--params"])
    assert result.exit_code == 0, result.output
    for name in list_losses():
        assert f"\n{name} " in "\n" + result.output
    assert "alpha = " in result.output and "needs: attack, bounds, teacher" in result.output
    only = CliRunner().invoke(losses_cmd, ["cc-*"])
    assert only.output.split()[0] == "cc-dist" and "mtl-ibp" not in only.output

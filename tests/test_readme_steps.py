"""The README's "pipeline, step by step" (issue 17): its commands parse, its steps cover the same
samples, and what they leave in a checkout is ignored by git."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess

import click
import pytest
from conftest import REPO

from adcert_plugin.cli import eval_cmd, losses_cmd, train_cmd
from adcert_plugin.training import get_preset
from vnncomp.cli import export_cmd, report_cmd, verify_cmd

COMMANDS = {"adcert-train": train_cmd, "adcert-eval": eval_cmd, "adcert-losses": losses_cmd,
            "adcert-export": export_cmd, "adcert-verify": verify_cmd, "adcert-report": report_cmd}


def _steps() -> list[list[str]]:
    """The adcert-* command lines of the step-by-step block, split as a shell would (comments dropped)."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"## The pipeline, step by step.*?```bash\n(.*?)```", text, re.S).group(1)
    lines = [shlex.split(line, comments=True) for line in block.splitlines()]
    return [words for words in lines if words and words[0] in COMMANDS]


def _option(words: list[str], name: str) -> str | None:
    return words[words.index(name) + 1] if name in words else None


def test_every_step_parses_with_its_command():
    steps = _steps()
    assert [w[0] for w in steps] == ["adcert-train", "adcert-train", "adcert-eval", "adcert-eval", "adcert-export",
                                     "adcert-verify", "adcert-report"]
    for words in steps:
        command = COMMANDS[words[0]]
        try:
            command.make_context(words[0], words[1:], resilient_parsing=False)
        except click.BadParameter as err:  # paths that exist only after the earlier steps ran
            assert "does not exist" in str(err), (words, err)
        except click.UsageError as err:
            pytest.fail(f"{shlex.join(words)}: {err}")


def test_the_export_draws_from_the_samples_the_eval_covers_and_the_report_reads_that_eval():
    train_teacher, train_student, evaluate, complete, export, verify, report = _steps()
    assert _option(evaluate, "--end") == _option(export, "--end") == _option(complete, "--end") is not None
    assert "--complete" in complete and "--resume" in complete  # the same report, completed
    assert complete[1] == evaluate[1]
    assert _option(evaluate, "--start") == _option(export, "--start")
    assert _option(train_student, "--teacher") == f"{_option(train_teacher, '--out-dir')}/model.pt"
    student = _option(train_student, "--out-dir")
    assert evaluate[1] == export[1] == f"{student}/model.pt"
    eps = get_preset(_option(train_student, "--preset"))["schedule"]["eps"]
    assert report[1:] == [f"{student}/eval-{eps:g}/samples.jsonl", _option(export, "--out-dir")]
    assert verify[1] == _option(export, "--out-dir")


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="not a git checkout")
@pytest.mark.parametrize("path", ["bench/adcert/instances.csv", "runs/adcert/model.pt", ".venv-neuralsat/bin/python",
                                  "bench/adcert/vnnlib/x.vnnlib.compiled", "failedMarabouQuery.ipq", "test_cex.txt",
                                  "vnncomp/failedMarabouQuery.ipq"])
def test_what_the_steps_and_verifiers_leave_is_ignored_by_git(path):
    result = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO)
    assert result.returncode == 0, f"{path} would show as untracked"

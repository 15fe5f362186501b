"""The pipeline's commands, as the README and the docs show them (issues 17, 39): they parse, the
steps cover the same samples, and what they leave in a checkout is ignored by git.

Every ``adcert-*`` or ``python examples/*.py`` line of a bash block in README.md or docs/*.md is
parsed by its click command, so a page cannot show a command or option that no longer exists.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess

import click
import pytest
from conftest import REPO

from adcert_plugin.cli import eval_cmd, losses_cmd, merge_cmd, train_cmd
from adcert_plugin.training import get_preset
from vnncomp.cli import export_cmd, report_cmd, verify_cmd

COMMANDS = {
    "adcert-train": train_cmd,
    "adcert-eval": eval_cmd,
    "adcert-losses": losses_cmd,
    "adcert-eval-merge": merge_cmd,
    "adcert-export": export_cmd,
    "adcert-verify": verify_cmd,
    "adcert-report": report_cmd,
}
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# where the pipeline is shown step by step: (page, the heading its bash block follows)
PIPELINES = [
    (REPO / "README.md", "## The pipeline in ten lines"),
    (REPO / "docs" / "getting-started.md", "## The pipeline, step by step"),
]


def _pipeline(page, heading) -> list[list[str]]:
    """The adcert-* command lines of the step-by-step block, split as a shell would (comments dropped)."""
    block = re.search(re.escape(heading) + r".*?```bash\n(.*?)```", page.read_text(), re.S).group(1)
    lines = [shlex.split(line, comments=True) for line in block.splitlines()]
    return [words for words in lines if words and words[0] in COMMANDS]


def _shown_commands() -> list[tuple[str, list[str]]]:
    """(page, words) for every command line of every bash block of the README and the docs."""
    shown = []
    for page in PAGES:
        for block in re.findall(r"^ *```bash\n(.*?)^ *```", page.read_text(), re.S | re.M):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):  # OMP_NUM_THREADS=1 python ...
                    words = words[1:]
                if words and (
                    words[0] in COMMANDS or (words[:2] and words[0] == "python" and words[1].startswith("examples/"))
                ):
                    shown.append((page.relative_to(REPO).as_posix(), words))
    return shown


def _script_command(path: str) -> click.Command:
    spec = importlib.util.spec_from_file_location(f"shown_{path.replace('/', '_')[:-3]}", REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _parse(words: list[str]) -> None:
    """Parse a shown command line with its click command, as the shell would run it."""
    command, args = (COMMANDS[words[0]], words[1:]) if words[0] in COMMANDS else (_script_command(words[1]), words[2:])
    try:
        command.make_context(words[0], args, resilient_parsing=False)
    except click.BadParameter as err:  # paths that exist only after the earlier steps ran
        assert "does not exist" in str(err), (words, err)
    except click.UsageError as err:
        pytest.fail(f"{shlex.join(words)}: {err}")


def test_the_pages_show_commands():
    pages = {page for page, _ in _shown_commands()}
    assert {"README.md", "docs/getting-started.md", "docs/cli.md", "docs/verifiers.md", "docs/studies.md"} <= pages


@pytest.mark.parametrize(
    "page, words", _shown_commands(), ids=lambda v: v if isinstance(v, str) else shlex.join(v)[:60]
)
def test_every_shown_command_parses_with_its_command(page, words):
    _parse(words)


def _option(words: list[str], name: str) -> str | None:
    return words[words.index(name) + 1] if name in words else None


@pytest.mark.parametrize("page, heading", PIPELINES, ids=lambda v: getattr(v, "name", v))
def test_every_step_parses_with_its_command(page, heading):
    steps = _pipeline(page, heading)
    assert [w[0] for w in steps] == [
        "adcert-train",
        "adcert-train",
        "adcert-eval",
        "adcert-eval",
        "adcert-export",
        "adcert-verify",
        "adcert-report",
    ]
    for words in steps:
        _parse(words)


def test_the_readme_and_the_docs_show_the_same_pipeline():
    assert _pipeline(*PIPELINES[0]) == _pipeline(*PIPELINES[1])


@pytest.mark.parametrize("page, heading", PIPELINES, ids=lambda v: getattr(v, "name", v))
def test_the_export_draws_from_the_samples_the_eval_covers_and_the_report_reads_that_eval(page, heading):
    train_teacher, train_student, evaluate, complete, export, verify, report = _pipeline(page, heading)
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
@pytest.mark.parametrize(
    "path",
    [
        "bench/adcert/instances.csv",
        "runs/adcert/model.pt",
        ".venv-neuralsat/bin/python",
        "bench/adcert/vnnlib/x.vnnlib.compiled",
        "failedMarabouQuery.ipq",
        "test_cex.txt",
        "vnncomp/failedMarabouQuery.ipq",
    ],
)
def test_what_the_steps_and_verifiers_leave_is_ignored_by_git(path):
    result = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO)
    assert result.returncode == 0, f"{path} would show as untracked"

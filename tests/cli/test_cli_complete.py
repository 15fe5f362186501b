"""adcert-eval --complete and adcert-eval-merge through CliRunner, with a fake verifier from the registry."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from complete_fixtures import Fake, trained_mlp

from adcert_plugin.cli import eval_cmd, merge_cmd
from adcert_plugin.evaluation import register_verifier, unregister_verifier


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return trained_mlp(tmp_path_factory.mktemp("setup"))


@pytest.fixture
def fake():
    log: list = []
    register_verifier("fake", lambda: Fake(log, words=("unsat", "timeout")), replace=True)
    register_verifier("flaky", lambda: Fake(log, words=("unsat", "error")), replace=True)
    yield log
    unregister_verifier("fake")
    unregister_verifier("flaky")


def _eval(setup, out, *args):
    path, root = setup
    return CliRunner().invoke(
        eval_cmd, [str(path), "--data-dir", str(root), "--methods", "IBP", "--out-dir", str(out), *args]
    )


def test_eval_complete_prints_certified_complete_and_json(setup, fake, tmp_path):
    result = _eval(setup, tmp_path / "e", "--complete", "fake", "--complete-timeout", "7", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    c = summary["complete"]
    assert c["verifier"] == "fake" and c["timeout"] == 7.0 and c["jobs"] == 1 and c["counts"]["timeout"] > 0
    assert c["certified"] == summary["counts"]["certified"]["IBP"] + c["counts"]["unsat"]
    assert "certified (complete)" in result.stderr and "timeouts count as not certified" in result.stderr
    assert fake[0].jobs == 1 and fake[0].timeout == 7.0 and len(fake[0].indices) > 1  # one call per chunk here


def test_eval_complete_jobs_send_each_sample_as_a_ray_task_with_the_serial_answers(setup, fake, tmp_path, ray_local):
    serial = _eval(setup, tmp_path / "serial", "--complete", "fake", "--complete-timeout", "7", "--json")
    calls = len(fake)
    result = _eval(setup, tmp_path / "ray", "--complete", "fake", "--complete-timeout", "7", "--jobs", "3", "--json")
    assert serial.exit_code == 0 and result.exit_code == 0, result.output
    assert len(fake) == calls  # nothing verified in this process: the fake ran in Ray's workers
    rows = lambda out: [
        (r["index"], r["complete"] and r["complete"]["result"])
        for r in map(json.loads, (out / "samples.jsonl").read_text().splitlines())
    ]
    assert rows(tmp_path / "ray") == rows(tmp_path / "serial")
    assert json.loads(result.stdout)["complete"]["jobs"] == 3
    answers = [json.loads(line) for line in (tmp_path / "ray" / "complete.jsonl").read_text().splitlines()]
    assert sorted(a["index"] for a in answers) == sorted(i for i, word in rows(tmp_path / "serial") if word)


def test_eval_complete_shards_and_merge(setup, fake, tmp_path):
    for k in range(2):
        result = _eval(setup, tmp_path / "e", "--complete", "fake", "--shard", f"{k}/2")
        assert result.exit_code == 0, result.output
        assert "not answered here (shard" in result.stderr
    result = CliRunner().invoke(merge_cmd, [str(tmp_path / "e"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["complete"]["pending"] == 0
    assert (tmp_path / "e" / "samples.jsonl").is_file()


def test_eval_complete_errors_exit_4_after_the_report(setup, fake, tmp_path):
    result = _eval(setup, tmp_path / "e", "--complete", "flaky")
    assert result.exit_code == 4
    assert "Error: InstanceError: the complete verifier failed on" in result.stderr
    assert (tmp_path / "e" / "summary.json").is_file()


@pytest.mark.parametrize(
    "args, message, code",
    [
        (["--shard", "0/2"], "ConfigError: --shard and --jobs apply to --complete", 2),
        (["--jobs", "2"], "ConfigError: --shard and --jobs apply to --complete", 2),
        (["--complete", "fake", "--shard", "2/2"], "ConfigError: --shard '2/2': expected K/N", 2),
        (["--complete", "nosuch"], "RegistryError: unknown complete verifier 'nosuch'", 2),
        (["--complete", "fake", "--complete-timeout", "0"], "Error: ", 2),
    ],
)
def test_eval_complete_bad_inputs_are_one_line(setup, fake, tmp_path, args, message, code):
    result = _eval(setup, tmp_path / "e", *args)
    assert result.exit_code == code and message in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "e").exists()


def test_merge_bad_folder_is_one_line(tmp_path):
    result = CliRunner().invoke(merge_cmd, [str(tmp_path)])
    assert result.exit_code == 2 and "ConfigError: no shard-K-of-N folders" in result.output


def test_the_papers_protocol_sets_attack_and_verifier_and_explicit_options_win(setup, fake, tmp_path):
    result = _eval(
        setup, tmp_path / "e", "--protocol", "papers", "--complete", "fake", "--complete-timeout", "7", "--json"
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["attack"]["steps"], summary["attack"]["restarts"]) == (100, 30)
    assert summary["complete"]["verifier"] == "fake" and summary["complete"]["timeout"] == 7.0  # given: kept
    assert list(summary["certified_acc"]) == ["IBP"]  # --methods IBP given: kept
    # the papers' order: the bounds first, the attack only on what they leave open
    assert json.loads((tmp_path / "e" / "config.json").read_text())["attack_certified"] is False
    certified = next(line for line in result.stderr.splitlines() if line.startswith("certified (complete)"))
    assert certified.endswith("(timeout 7 s)")  # the limit beside the number it qualifies
    from adcert_plugin.cli.commands import PROTOCOLS

    assert PROTOCOLS["papers"]["complete_timeout"] == 1000.0 and PROTOCOLS["papers"]["complete"] == "abcrown"

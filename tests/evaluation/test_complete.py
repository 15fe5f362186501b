"""adcert-eval --complete with a fake verifier from the registry: what is sent, accounting, shards, resume.

No verifier process runs here: ``fake`` answers by a rule on the sample index. The real
NeuralSAT path is in tests/vnncomp/verifiers/test_vnncomp_complete.py and the e2e test.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from complete_fixtures import EPS, WORDS, Fake, Killed, trained_mlp

from adcert_plugin.bounds import InputBox
from adcert_plugin.errors import ConfigError, DuplicateNameError, PluginLoadError, RegistryError, SoundnessError
from adcert_plugin.evaluation import (
    CompleteAnswer,
    CompleteConfig,
    complete as C,
    create_verifier,
    evaluate,
    merge_shards,
    parse_shard,
    read_samples,
    register_verifier,
    unregister_verifier,
    verifiers as V,
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return trained_mlp(tmp_path_factory.mktemp("setup"))


@pytest.fixture
def fake():
    log: list = []
    register_verifier("fake", lambda: Fake(log), replace=True)
    yield log
    unregister_verifier("fake")


def _run(setup, out, cfg=None, **kw):
    path, root = setup
    cfg = cfg or CompleteConfig(verifier="fake", timeout=5.0, jobs=2, chunk=4)
    return evaluate(path, data_dir=root, methods=("IBP",), out_dir=out, complete=cfg, progress=False, **kw)


def _sent(log) -> list[int]:
    return [i for request in log for i in request.indices]


@pytest.fixture
def tolerant(monkeypatch):
    """Let the fake's clean point count as a counterexample (the re-check itself is tested below)."""
    monkeypatch.setattr(C, "MARGIN_SLACK", 1e9)


def test_complete_sends_only_undecided_samples(setup, fake, tolerant, tmp_path):
    report = _run(setup, tmp_path / "e")
    undecided = sorted(r["index"] for r in report.rows if r["status"] == "unknown")
    assert len(undecided) >= 12 and report.summary["counts"]["certified"]["IBP"] > 0
    assert sorted(_sent(fake)) == undecided and len(set(_sent(fake))) == len(undecided)
    request = fake[0]
    assert request.eps == EPS and request.timeout == 5.0 and request.jobs == 2 and len(request.indices) <= 4
    assert request.work_dir == tmp_path / "e" / "complete" / "fake" and request.num_classes == 10
    assert request.network_sha256 == json.loads((tmp_path / "e" / "config.json").read_text())["checkpoint_sha256"]
    for r in report.rows:
        assert (r["complete"] is not None) == (r["status"] == "unknown")


def test_complete_accounting_and_timeouts_not_certified(setup, fake, tolerant, tmp_path):
    report = _run(setup, tmp_path / "e")
    c, rows = report.complete, report.rows
    answered = [r for r in rows if r["complete"]]
    words = {
        w: sum(WORDS[r["index"] % 6] == w for r in answered) for w in ("unsat", "sat", "timeout", "error", "unknown")
    }
    bound = report.summary["counts"]["certified"]["IBP"]
    assert c["counts"] == words and c["answered"] == len(answered) == c["undecided"] and c["pending"] == 0
    assert c["certified"] == bound + words["unsat"] and c["certified_acc"] == c["certified"] / 64
    assert c["not_certified"] == {w: words[w] for w in ("timeout", "error", "unknown")} and words["timeout"] > 0
    assert c["falsified"] == words["sat"] > 0
    assert c["upper_acc"] == (report.summary["counts"]["pgd_robust"] - words["sat"]) / 64
    assert c["seconds"] == pytest.approx(1.5 * len(answered)) and c["verifier"] == "fake" and c["timeout"] == 5.0
    row = next(r for r in answered if r["complete"]["result"] == "sat")
    assert row["complete"]["cex_margin"] > 0 and row["complete"]["note"] == "fake sat"  # tolerated by the fixture
    assert "certified (complete)" in report.table() and "timeouts count as not certified" in report.table()
    assert report.summary["soundness_errors"] == []
    stored = [json.loads(line) for line in (tmp_path / "e" / "complete.jsonl").read_text().splitlines()]
    assert sorted(e["index"] for e in stored) == sorted(r["index"] for r in answered)
    assert {e["verifier"] for e in stored} == {"fake"} and {e["timeout"] for e in stored} == {5.0}


def test_a_sat_whose_counterexample_does_not_recheck_is_an_error(setup, fake, tmp_path):
    report = _run(setup, tmp_path / "e")  # the clean point of a robust sample is no counterexample
    sats = [r for r in report.rows if r["complete"] and WORDS[r["index"] % 6] == "sat"]
    assert sats and all(r["complete"]["result"] == "error" for r in sats)
    assert all(r["complete"]["note"].startswith("sat rejected: the model's margin") for r in sats)
    assert report.complete["falsified"] == 0 and report.complete["counts"]["error"] >= len(sats)


def test_recheck_counterexample_box_and_margin(setup):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
    x = torch.tensor([[[[0.5, 0.45], [0.2, 0.2]]]])  # margin z0 - z1 = 0.05; eps 0.1 lets it flip
    request = V.CompleteRequest(model, x, torch.tensor([0]), (7,), 0.1, (0.0,), (1.0,), 2, 5.0, 1, Path("."), "sha")
    good = np.array([0.45, 0.5, 0.2, 0.2])
    assert C.recheck_counterexample(request, 0, good)[0]
    ok, margin, why = C.recheck_counterexample(request, 0, np.array([0.5, 0.45, 0.2, 0.2]))
    assert not ok and margin == pytest.approx(0.05) and "margin" in why
    assert "outside the eps box" in C.recheck_counterexample(request, 0, np.array([0.3, 0.6, 0.2, 0.2]))[2]
    assert "3 inputs" in C.recheck_counterexample(request, 0, np.zeros(3))[2]
    assert C.recheck_counterexample(request, 0, None)[2] == "no counterexample given"


def test_contradictions_are_soundness_errors():
    base = {
        "index": 3,
        "clean_correct": True,
        "pgd_robust": True,
        "certified_by": "IBP",
        "status": "certified",
        "attack_margin": 0.4,
        "soundness_errors": [],
    }
    cfg = CompleteConfig(verifier="fake", timeout=5.0)
    sat = C.attach_answers([base], {3: {"result": "sat", "seconds": 1.0}}, cfg)[0]
    assert sat["soundness_errors"][0]["kind"] == C.CONTRADICTION and "falsified" in sat["soundness_errors"][0]["detail"]
    broken = dict(base, pgd_robust=False, certified_by=None, status="pgd-broken", attack_margin=-0.2)
    unsat = C.attach_answers([broken], {3: {"result": "unsat", "seconds": 1.0}}, cfg)[0]
    assert "unsat" in unsat["soundness_errors"][0]["detail"]
    again = C.attach_answers([unsat], {3: {"result": "unsat", "seconds": 1.0}}, cfg)[0]
    assert len(again["soundness_errors"]) == 1  # re-attaching does not pile up old contradictions
    fine = C.attach_answers(
        [dict(base, certified_by=None, status="unknown")], {3: {"result": "sat", "seconds": 1}}, cfg
    )[0]
    assert fine["soundness_errors"] == []


def test_a_contradiction_the_verifier_side_flags_fails_after_the_report(setup, tmp_path):
    class Flagging(Fake):
        def verify(self, request):
            return [
                CompleteAnswer(
                    i,
                    "error",
                    1.0,
                    note="rejected unsat: counterexample in hand",
                    contradiction="fake says unsat, counterexample in hand (verify-time, margin -0.1)",
                )
                for i in request.indices
            ]

    register_verifier("fake", lambda: Flagging([]), replace=True)
    try:
        with pytest.raises(SoundnessError, match="fake says unsat, counterexample in hand") as info:
            _run(setup, tmp_path / "e")
    finally:
        unregister_verifier("fake")
    report = info.value.report
    assert report.complete["counts"]["error"] == report.complete["answered"] > 0
    assert (tmp_path / "e" / "summary.json").is_file()
    kinds = {e["kind"] for e in report.summary["soundness_errors"]}
    assert kinds == {C.CONTRADICTION}


def test_a_counterexample_found_at_verify_time_lowers_robust_at_most(setup, tolerant, tmp_path):
    class Rejecting(Fake):  # an unsat the verifier side rejected, with the point that rejected it
        def verify(self, request):
            answers = []
            for position, i in enumerate(request.indices):
                box = InputBox.from_pixels(request.x[position : position + 1], request.eps, request.mean, request.std)
                answers.append(
                    CompleteAnswer(
                        i,
                        "error",
                        1.0,
                        box.x_norm.flatten().numpy(),
                        note="rejected unsat: counterexample in hand",
                        contradiction="fake says unsat, counterexample in hand",
                    )
                )
            return answers

    register_verifier("fake", lambda: Rejecting([]), replace=True)
    try:
        with pytest.raises(SoundnessError) as info:
            _run(setup, tmp_path / "e")
    finally:
        unregister_verifier("fake")
    report = info.value.report
    c, robust = report.complete, report.summary["counts"]["pgd_robust"]
    assert c["answered"] > 0 and c["counts"]["sat"] == 0
    assert c["falsified"] == c["answered"] and c["upper_acc"] == (robust - c["answered"]) / report.n
    rows = [r for r in read_samples(tmp_path / "e" / "samples.jsonl") if r["complete"]]
    assert all(r["complete"]["falsified"] and r["complete"]["result"] == "error" for r in rows)


def test_an_unsat_set_aside_within_the_tolerance_is_counted_not_certified_and_no_error(setup, tmp_path):
    class SettingAside(Fake):
        def verify(self, request):
            return [
                CompleteAnswer(
                    i,
                    "unknown",
                    1.0,
                    note="set aside unsat: a point within VNN-COMP's tolerance "
                    "of a counterexample is in hand (verify-time, margin 7.2e-05)",
                )
                for i in request.indices
            ]

    register_verifier("fake", lambda: SettingAside([]), replace=True)
    try:
        report = _run(setup, tmp_path / "e")
    finally:
        unregister_verifier("fake")
    c = report.complete
    assert c["set_aside"] == c["counts"]["unknown"] == c["answered"] > 0 and c["counts"]["unsat"] == 0
    assert c["certified"] == report.summary["counts"]["certified"]["IBP"]  # none of them counted certified
    assert report.summary["soundness_errors"] == []
    assert "unsat answers set aside (not certified)" in report.table()


def _numbers(rows):
    return [{k: v for k, v in r.items() if k not in ("seconds", "stage_seconds")} for r in rows]


def _counts(summary):
    keep = ("n", "counts", "standard_acc", "pgd_acc", "certified_acc", "samples_bounded", "soundness_errors")
    complete = {
        k: v
        for k, v in summary["complete"].items()
        if k not in ("seconds", "seconds_per_sample", "wall_seconds", "shard", "jobs")
    }
    return {**{k: summary[k] for k in keep}, "complete": complete}


def test_shards_then_merge_equal_one_run(setup, fake, tolerant, tmp_path):
    one = _run(setup, tmp_path / "one")
    sent_one = sorted(_sent(fake))
    fake.clear()
    shard_sets = []
    for k in range(3):
        cfg = CompleteConfig(verifier="fake", timeout=5.0, jobs=2, chunk=4, shard=(k, 3))
        part = _run(setup, tmp_path / "sharded", cfg)
        assert part.out_dir == tmp_path / "sharded" / f"shard-{k}-of-3" and part.complete["pending"] > 0
        shard_sets.append(set(_sent(fake)))
        fake.clear()
    assert set.union(*shard_sets) == set(sent_one) and sum(map(len, shard_sets)) == len(sent_one)
    undecided = sent_one
    assert shard_sets[1] == set(undecided[1::3])  # position ≡ K (mod N)
    merged = merge_shards(tmp_path / "sharded")
    assert _numbers(merged.rows) == _numbers(one.rows)
    assert _counts(merged.summary) == _counts(one.summary)
    assert read_samples(tmp_path / "sharded" / "samples.jsonl") == merged.rows
    assert merged.summary["merged_from"] == ["shard-0-of-3", "shard-1-of-3", "shard-2-of-3"]
    assert merge_shards(tmp_path / "sharded").summary["complete"]["counts"] == one.complete["counts"]  # re-merge


def test_resume_skips_answered_samples_and_a_killed_run_continues(setup, fake, tolerant, tmp_path):
    path, root = setup
    log: list = []
    register_verifier("fake", lambda: Fake(log, fail_after=2), replace=True)
    with pytest.raises(Killed):
        _run(setup, tmp_path / "e")
    first = _sent(log)
    assert len(first) == 8 and len((tmp_path / "e" / "complete.jsonl").read_text().splitlines()) == 8
    register_verifier("fake", lambda: Fake(fake), replace=True)
    report = _run(setup, tmp_path / "e", resume=True)
    first_errors = {i for i in first if WORDS[i % 6] == "error"}  # errors are retried, the rest is kept
    assert set(_sent(fake)) & set(first) == first_errors
    assert len(_sent(fake)) == report.complete["answered"] - 8 + len(first_errors)
    fake.clear()
    again = _run(setup, tmp_path / "e", resume=True)
    errored = sorted(r["index"] for r in report.rows if (r["complete"] or {}).get("result") == "error")
    assert errored and sorted(_sent(fake)) == errored  # only the errors are retried
    assert again.complete == dict(report.complete, wall_seconds=again.complete["wall_seconds"])
    assert again.complete["wall_seconds"] >= report.complete["wall_seconds"]  # a resume adds to the time spent
    fake.clear()
    other = _run(setup, tmp_path / "e", CompleteConfig(verifier="fake", timeout=9.0, chunk=50), resume=True)
    assert len(_sent(fake)) == other.complete["answered"]  # another timeout: every answer is redone
    lines = (tmp_path / "e" / "complete.jsonl").read_text().splitlines()
    assert {json.loads(line)["timeout"] for line in lines} == {9.0}


def test_merge_refuses_mismatched_missing_and_unfinished_shards(setup, fake, tolerant, tmp_path):
    for k, timeout in ((0, 5.0), (1, 7.0)):
        _run(setup, tmp_path / "a", CompleteConfig(verifier="fake", timeout=timeout, shard=(k, 2)))
    with pytest.raises(ConfigError, match="differs from shard-0-of-2 in complete.timeout"):
        merge_shards(tmp_path / "a")
    _run(setup, tmp_path / "b", CompleteConfig(verifier="fake", timeout=5.0, shard=(0, 2)))
    with pytest.raises(ConfigError, match="shards 1/2 are missing"):
        merge_shards(tmp_path / "b")
    _run(setup, tmp_path / "b", CompleteConfig(verifier="fake", timeout=5.0, shard=(1, 3)))
    with pytest.raises(ConfigError, match="different counts N"):
        merge_shards(tmp_path / "b")
    path, root = setup
    for k in range(2):
        _run(setup, tmp_path / "c", CompleteConfig(verifier="fake", timeout=5.0, shard=(k, 2)), eps=EPS if k else 0.02)
    with pytest.raises(ConfigError, match="in eps"):
        merge_shards(tmp_path / "c")
    for k in range(2):
        _run(setup, tmp_path / "d", CompleteConfig(verifier="fake", timeout=5.0, shard=(k, 2)))
    answers = tmp_path / "d" / "shard-1-of-2" / "complete.jsonl"
    answers.write_text("".join(answers.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(ConfigError, match="shard-1-of-2 has answered"):
        merge_shards(tmp_path / "d")


def test_registry_unknown_broken_duplicate_and_entry_points(monkeypatch):
    with pytest.raises(RegistryError, match="unknown complete verifier 'neuralsta'.*did you mean neuralsat"):
        create_verifier("neuralsta")
    register_verifier("fake2", lambda: Fake([]))
    try:
        with pytest.raises(DuplicateNameError):
            register_verifier("fake2", lambda: Fake([]))
        assert create_verifier("fake2").name == "fake"
    finally:
        unregister_verifier("fake2")
    register_verifier("nothing", lambda: object())
    try:
        with pytest.raises(PluginLoadError, match="no name and verify"):
            create_verifier("nothing")
    finally:
        unregister_verifier("nothing")

    class EP:
        def __init__(self, name, value, target):
            self.name, self.value, self.target = name, value, target

        def load(self):
            if isinstance(self.target, Exception):
                raise self.target
            return self.target

    points = [EP("plug", "pkg:plug", lambda: Fake([])), EP("broken", "pkg:broken", ImportError("no pkg"))]
    monkeypatch.setattr(
        importlib.metadata, "entry_points", lambda group: points if group == V.ENTRY_POINT_GROUP else []
    )
    monkeypatch.setattr(V, "_entry_points_loaded", False)
    try:
        assert "plug" in V.list_verifiers() and create_verifier("plug").name == "fake"
        with pytest.raises(PluginLoadError, match="'broken' failed to load.*ImportError: no pkg"):
            create_verifier("broken")
    finally:
        unregister_verifier("plug")
        unregister_verifier("broken")
        monkeypatch.setattr(V, "_entry_points_loaded", False)


def test_vnncomp_registers_the_three_verifiers_through_entry_points():
    assert {"neuralsat", "abcrown", "marabou"} <= set(V.list_verifiers())


@pytest.mark.parametrize("text, message", [("1/1", "K/N"), ("3/2", "K/N"), ("a/b", "K/N"), ("2", "K/N")])
def test_parse_shard_refuses_bad_values(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_shard(text)
    assert parse_shard(" 2/5 ") == (2, 5)


def test_config_ranges():
    for bad in (dict(timeout=0), dict(jobs=0), dict(shard=(2, 2)), dict(chunk=0), dict(timeout=float("inf"))):
        with pytest.raises(ConfigError):
            CompleteConfig(**bad)


class Bulk(Fake):
    """A verifier that runs a whole request in one process (as abCROWN's csv mode does)."""

    def bulk(self, options) -> bool:
        return options.get("mode") == "bulk"


def test_a_bulk_verifiers_requests_stay_whole_on_ray_and_come_in_large_chunks(setup, tolerant, tmp_path, ray_local):
    from adcert_plugin import parallel

    assert parallel.active()  # on Ray, any other verifier's samples go one task each
    log: list = []
    register_verifier("fake", lambda: Bulk(log), replace=True)
    try:
        cfg = CompleteConfig(verifier="fake", timeout=5.0, jobs=2, options={"mode": "bulk"})
        report = _run(setup, tmp_path / "e", cfg)
    finally:
        unregister_verifier("fake")
    undecided = sorted(r["index"] for r in report.rows if r["status"] == "unknown")
    assert len(undecided) >= 12
    # one request (the default chunk of a bulk verifier holds them all), run here, whole, with its jobs
    assert [sorted(request.indices) for request in log] == [undecided] and log[0].jobs == 2
    assert all(r["complete"]["result"] in WORDS for r in report.rows if r["status"] == "unknown")

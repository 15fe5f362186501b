"""check_answers: verifier answers against the benchmark's evidence; verify-time attack; identity; coverage."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from tiny_benchmarks import corner_value, padded_cnn_benchmark, trap_benchmark

from adcert_plugin.attacks import AttackConfig, pgd_attack
from adcert_plugin.bounds import InputBox
from adcert_plugin.errors import ConfigError, SoundnessError
from adcert_plugin.io import sha256_file
from vnncomp.cli import report_cmd, verify_cmd
from vnncomp.export.evidence import box_margin, read_record
from vnncomp.results import (
    VerifierResult,
    check_answers,
    evidence as evidence_module,
    falsify as falsify_module,
    read_results_table,
    write_results_table,
)
from vnncomp.results.evidence import claimed_word
from vnncomp.results.report import report_benchmark
from vnncomp.verifiers import verify as verify_module

CHECKPOINT_SHA = "c" * 64


@pytest.fixture(scope="module")
def padded(tmp_path_factory):
    root = tmp_path_factory.mktemp("padded") / "bench"
    return root, padded_cnn_benchmark(root)


@pytest.fixture
def bench(tmp_path, padded):
    """A fresh copy (tests add to evidence/ and results/)."""
    root, facts = padded
    shutil.copytree(root, tmp_path / "bench")
    return tmp_path / "bench", facts


def _flat(facts) -> np.ndarray:
    return facts["point"].numpy().ravel().astype(np.float64)


def _never_attack(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the verify-time attack ran although evidence was in hand")

    monkeypatch.setattr(falsify_module, "falsify", refuse)


def test_unsat_with_known_counterexample_is_flagged_and_verify_exits_3(bench, monkeypatch):
    root, facts = bench
    _never_attack(monkeypatch)
    fake = [VerifierResult("sat", "marabou", "unsat", 2.2), VerifierResult("unsat", "marabou", "unsat", 2.2)]
    monkeypatch.setattr(verify_module, "run_marabou", lambda bench_dir, **kwargs: list(fake))
    out = CliRunner().invoke(verify_cmd, [str(root), "--verifier", "marabou"])
    assert out.exit_code == 3, out.output
    line = out.output.strip().splitlines()[-1]
    assert line.startswith("Error: SoundnessError: 1 contradictions: sat: marabou says unsat")
    assert f"margin {facts['sat_margin']:.4g}" in line and facts["sat_margin"] < 0
    table = {r.instance: r for r in read_results_table(root / "results/marabou.csv")}
    assert table["sat"].result == "error" and table["sat"].note.startswith("rejected unsat: counterexample in hand")
    assert table["unsat"].result == "unsat"


def test_flagged_table_read_back_flags_again(bench):
    root, _ = bench
    first = check_answers(root, [VerifierResult("sat", "marabou", "unsat")])
    write_results_table(root / "results/marabou.csv", first.results, first.identity)
    again = check_answers(root, read_results_table(root / "results/marabou.csv"))
    assert again.contradictions == first.contradictions and len(again.contradictions) == 1
    with pytest.raises(SoundnessError, match="marabou says unsat"):
        again.raise_if_contradicted()


def test_sat_on_bound_certified_instance_is_a_contradiction(bench, monkeypatch):
    root, _ = bench
    _never_attack(monkeypatch)
    checked = check_answers(root, [VerifierResult("unsat", "abcrown", "sat", note="csv mode")])
    assert len(checked.contradictions) == 1
    assert "unsat: abcrown says sat but IBP certified it (min margin lower bound" in checked.contradictions[0]


def test_invalid_counterexample_is_rejected_not_a_contradiction(bench, monkeypatch):
    root, facts = bench
    _never_attack(monkeypatch)
    wrong = facts["x"].numpy().ravel().astype(np.float64)  # the clean point: correctly classified
    checked = check_answers(root, [VerifierResult("sat", "neuralsat", "sat", counterexample=wrong)])
    assert checked.results[0].result == "error" and checked.results[0].note.startswith("rejected sat")
    assert checked.contradictions == [] and checked.coverage.checked == 1


def test_another_verifiers_valid_sat_is_evidence_against_an_unsat(bench, monkeypatch):
    root, facts = bench
    (root / "evidence/sat.json").unlink()  # no export evidence: only NeuralSAT's counterexample
    _never_attack(monkeypatch)
    checked = check_answers(
        root,
        [
            VerifierResult("sat", "neuralsat", "sat", counterexample=_flat(facts)),
            VerifierResult("sat", "marabou", "unsat"),
        ],
    )
    assert [r.result for r in checked.results] == ["sat", "error"]
    assert checked.contradictions[0].startswith(
        "sat: marabou says unsat but a counterexample is in hand (verifier-neuralsat, margin -"
    )
    kept = read_record(root, "sat")
    assert kept["attacks"][0]["source"] == "verifier-neuralsat" and kept["attacks"][0]["counterexample"]


def _near_counterexample(root, facts) -> tuple[np.ndarray, float]:
    """A point of the 'sat' box whose margin is just above 0 (a counterexample only by the 1e-4 tolerance)."""
    onnx, vnnlib = root / "onnx/tiny.onnx", root / "vnnlib/sat.vnnlib"
    safe, broken = facts["x"].numpy().ravel().astype(np.float64), _flat(facts)
    assert box_margin(onnx, vnnlib, safe) > 0 > box_margin(onnx, vnnlib, broken)
    for _ in range(60):  # bisect on the segment until the margin lies in (1e-6, 5e-5)
        mid = (safe + broken) / 2
        margin = box_margin(onnx, vnnlib, mid)
        if 1e-6 < margin < 5e-5:
            return mid, margin
        safe, broken = (mid, broken) if margin > 0 else (safe, mid)
    raise AssertionError("bisection found no point just above the boundary")


@pytest.mark.parametrize("verdict", ["violating", "within-tolerance"])
def test_an_unsat_is_refuted_only_by_a_violation_and_set_aside_within_the_tolerance(bench, monkeypatch, verdict):
    root, facts = bench
    (root / "evidence/sat.json").unlink()  # only the point given below is in hand
    _never_attack(monkeypatch)
    point, margin = (_flat(facts), facts["sat_margin"]) if verdict == "violating" else _near_counterexample(root, facts)
    checked = check_answers(
        root,
        [VerifierResult("sat", "neuralsat", "sat", counterexample=point), VerifierResult("sat", "marabou", "unsat")],
    )
    sat, unsat = checked.results
    assert sat.result == "sat", "the VNN-COMP tolerance accepts both points as counterexamples of a sat"
    if verdict == "violating":
        assert unsat.result == "error" and len(checked.contradictions) == 1
    else:  # margin > 0: the unsat is not refuted, but a counterexample by the benchmark's rules exists
        assert 0 < margin <= 1e-4
        assert unsat.result == "unknown" and checked.contradictions == []
        assert unsat.note.startswith("set aside unsat: a point within VNN-COMP's tolerance")
        assert claimed_word(unsat) == "unsat" and checked.coverage.checked == 2
        again = check_answers(root, [unsat])  # read back: still set aside, still no contradiction
        assert again.results[0].result == "unknown" and again.contradictions == []
        older = VerifierResult("sat", "marabou", "error", note="rejected unsat: counterexample in hand (x)")
        redone = check_answers(root, [older])  # a table the 1e-4 rule once rejected, read back
        assert redone.results[0].result == "unknown" and redone.contradictions == []


def test_verify_time_attack_finds_what_pgd40_misses_and_is_cached(tmp_path, monkeypatch):
    root = tmp_path / "trap"
    facts = trap_benchmark(root)
    assert corner_value(facts["net"]) > 0, "the trap property must be falsifiable"
    box = InputBox.from_pixels(facts["x"], facts["eps"], [0.0], [1.0])
    y = torch.tensor([facts["label"]])
    for objective in ("ce", "margin"):  # adcert-eval's PGD-40 with one restart, and the export's loss
        cfg = AttackConfig(steps=40, step_size=0.035, restarts=1, objective=objective)
        x_adv = pgd_attack(facts["net"], box, y, cfg, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            assert int(facts["net"](x_adv).argmax()) == facts["label"], f"PGD-40 ({objective}) should miss it"
    checked = check_answers(root, [VerifierResult("trap", "marabou", "unsat")])
    assert len(checked.contradictions) == 1 and "(verify-time, margin -" in checked.contradictions[0]
    assert checked.coverage.by == {"counterexample": 1}
    entry = read_record(root, "trap")["attacks"][0]
    assert entry["source"] == "verify-time" and entry["counterexample"] and entry["margin"] < 0
    assert len(entry["disjunct_margins"]) == 2 and entry["disjunct_margins"][0] > 0 > entry["disjunct_margins"][1]
    _never_attack(monkeypatch)  # a rerun reads the cached outcome
    assert check_answers(root, [VerifierResult("trap", "marabou", "unsat")]).contradictions == checked.contradictions


def test_verify_time_attack_that_finds_nothing_counts_as_cross_checked(bench, monkeypatch):
    root, _ = bench
    (root / "evidence/unsat.json").unlink()
    calls = []
    real = falsify_module.falsify
    monkeypatch.setattr(falsify_module, "falsify", lambda *a, **k: calls.append(1) or real(*a, **k))
    checked = check_answers(root, [VerifierResult("unsat", "marabou", "unsat")])
    assert checked.contradictions == [] and checked.coverage.by == {"attack": 1} and calls == [1]
    assert not read_record(root, "unsat")["attacks"][0]["counterexample"]
    check_answers(root, [VerifierResult("unsat", "marabou", "unsat")])
    assert calls == [1], "the cached attack outcome is reused"


def test_stale_evidence_of_another_network_is_ignored(bench, monkeypatch):
    root, _ = bench
    record = json.loads((root / "evidence/sat.json").read_text())
    record["onnx_sha256"] = "0" * 64
    (root / "evidence/sat.json").write_text(json.dumps(record))
    monkeypatch.setattr(falsify_module, "falsify", lambda *a, **k: falsify_module.Falsification(False, None, 1.0))
    checked = check_answers(root, [VerifierResult("sat", "marabou", "unsat")])
    assert checked.contradictions == [] and checked.coverage.checked == 0


# ---------------------------------------------------------------------- report: identity, coverage


def _adcert_layout(root: Path, facts, eps: float) -> None:
    """benchmark.json / metadata.json as adcert-export writes them (the two instances: samples 10, 11)."""
    params = {"eps": eps, "checkpoint_sha256": CHECKPOINT_SHA, "onnx_sha256": sha256_file(root / "onnx/tiny.onnx")}
    (root / "benchmark.json").write_text(json.dumps(params))
    (root / "metadata.json").write_text(
        json.dumps(
            {
                **params,
                "net": "tiny",
                "instances": [
                    {"instance": "sat", "index": 10, "label": facts["label"]},
                    {"instance": "unsat", "index": 11, "label": facts["label"]},
                ],
            }
        )
    )


def _eval_report(folder: Path, facts, sha=CHECKPOINT_SHA, eps=0.05, indices=(10,)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"index": i, "label": facts["label"], "pgd_robust": i != 10, "certified_by": None} for i in indices]
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "config.json").write_text(json.dumps({"checkpoint_sha256": sha, "eps": eps}))
    return folder / "samples.jsonl"


def _consistent_table(root: Path, facts) -> Path:
    results = [
        VerifierResult("sat", "neuralsat", "sat", counterexample=_flat(facts)),
        VerifierResult("unsat", "neuralsat", "unsat"),
    ]
    checked = check_answers(root, results)
    return write_results_table(root / "results/neuralsat.csv", checked.results, checked.identity)


def test_report_coverage_counts_answers_outside_the_eval_rows(bench, tmp_path):
    root, facts = bench
    _adcert_layout(root, facts, 0.05)
    _consistent_table(root, facts)
    samples = _eval_report(tmp_path / "eval", facts)
    check = report_benchmark(samples, root)
    assert (check.answers, check.answers_in_eval, check.coverage.checked) == (2, 1, 2)
    assert check.coverage.by == {"counterexample": 1, "bound": 1}
    out = CliRunner().invoke(report_cmd, [str(samples), str(root), "--out", str(tmp_path / "r.json")])
    assert out.exit_code == 0, out.output
    assert "cross-checked 2/2 verifier answers against an attack or a bound" in out.output
    assert "cross-checked 1/2 verifier answers against the eval report's rows (1 are on samples" in out.output
    summary = json.loads((tmp_path / "r.json").read_text())["summary"]
    assert summary["coverage"]["checked"] == 2 and summary["coverage"]["answers_in_eval"] == 1


def test_report_flags_an_unsat_with_a_counterexample_exit_3(bench, tmp_path):
    root, facts = bench
    _adcert_layout(root, facts, 0.05)
    write_results_table(root / "results/marabou.csv", [VerifierResult("sat", "marabou", "unsat")])
    samples = _eval_report(tmp_path / "eval", facts, indices=(11,))  # the flagged sample is not in the eval
    out = CliRunner().invoke(report_cmd, [str(samples), str(root)])
    assert out.exit_code == 3 and "sat: marabou says unsat but a counterexample is in hand" in out.output


@pytest.mark.parametrize(
    "change, fragment", [({"sha": "d" * 64}, "evaluates another network"), ({"eps": 0.1}, "is at eps 0.1")]
)
def test_report_refuses_a_join_of_different_networks_or_eps(bench, tmp_path, change, fragment):
    root, facts = bench
    _adcert_layout(root, facts, 0.05)
    _consistent_table(root, facts)
    samples = _eval_report(tmp_path / "eval", facts, **change)
    with pytest.raises(ConfigError, match=fragment):
        report_benchmark(samples, root)
    out = CliRunner().invoke(report_cmd, [str(samples), str(root)])
    assert out.exit_code == 2 and len(out.output.strip().splitlines()) == 1
    assert out.output.startswith("Error: ConfigError:") and fragment in out.output


def test_report_refuses_a_results_table_of_another_network(bench, tmp_path):
    root, facts = bench
    _adcert_layout(root, facts, 0.05)
    write_results_table(
        root / "results/x.csv", [VerifierResult("unsat", "x", "unsat")], {"network_sha256": "e" * 64, "eps": 0.05}
    )
    with pytest.raises(ConfigError, match="results for another network"):
        report_benchmark(_eval_report(tmp_path / "eval", facts), root)


def test_checked_identity_is_written_in_the_table(bench):
    root, facts = bench
    _adcert_layout(root, facts, 0.05)
    path = _consistent_table(root, facts)
    header, first = path.read_text().splitlines()[:2]
    assert header.endswith("network_sha256,eps") and first.endswith(f"{sha256_file(root / 'onnx/tiny.onnx')},0.05")


def test_evidence_module_keeps_torch_out_until_an_attack(bench):
    assert "torch" not in evidence_module.__dict__  # falsify (torch) is imported only when an attack runs


def test_report_fails_on_a_rejected_sat_from_the_results_exit_4(bench, tmp_path):
    root, facts = bench
    _adcert_layout(root, facts, 0.05)
    folder = tmp_path / "forged"
    folder.mkdir()
    point = "\n".join(f"(X_{i} 5.0)" for i in range(_flat(facts).size))  # far outside the box
    (folder / "sat.txt").write_text(f"sat\n({point})\n")
    samples = _eval_report(tmp_path / "eval", facts)
    check = report_benchmark(samples, root, [folder])
    assert len(check.rejected) == 1 and check.rejected[0].startswith("sat/forged: rejected sat")
    out = CliRunner().invoke(report_cmd, [str(samples), str(root), "--results", str(folder)])
    assert out.exit_code == 4, out.output
    assert "1 sat answers in the results were rejected" in out.output

"""The study results committed under examples/results: whole, tied to their models, and sound.

A fresh clone resumes every study from these folders and the README quotes them, so a state that
lost a file, or an answer that a counterexample contradicts, must fail the suite, not a reader.
"""

from __future__ import annotations

import json

import pytest


def test_every_committed_study_state_is_whole_and_matches_its_models():
    """What a fresh clone resumes from: finished runs only, each evaluation tied to its model's hash."""
    from adcert_plugin.io import read_json, sha256_file
    from conftest import REPO

    for state in (REPO / "examples" / "results").glob("study-*/state"):
        assert not [p for p in state.rglob("*.pt") if p.name != "model.pt"], "no last.pt/best.pt in a state"
        for summary in state.rglob("summary.json"):
            run = summary.parent
            if run.name.startswith("eval-"):
                continue
            assert (run / "config.yaml").is_file() and (run / "metrics.jsonl").is_file(), run
            recorded = (run / "model.sha256").read_text().strip()
            if (run / "model.pt").is_file():
                assert sha256_file(run / "model.pt") == recorded, run
                assert (run / "model.pt").stat().st_size < 1 << 20, run
            for folder in run.glob("eval-*"):
                assert (folder / "summary.json").is_file(), f"{folder}: an unfinished evaluation in the state"
                assert read_json(folder / "config.json")["checkpoint_sha256"] == recorded, folder


def test_no_committed_study_answer_is_certified_against_a_counterexample():
    """Every verifier answer behind the committed studies, audited from the per-sample rows.

    A ``sat`` must carry the margin of its replayed counterexample (negative: the network really
    misclassifies it); an ``unsat`` must face no counterexample the attack found. And a committed
    summary's complete-certified count must be exactly the samples the evidence allows.
    """
    from adcert_plugin.io import read_json
    from conftest import REPO

    audited = 0
    for samples in (REPO / "examples" / "results").glob("study-*/state/**/eval-*/samples.jsonl"):
        rows = [json.loads(line) for line in samples.read_text().splitlines() if line.strip()]
        for row in rows:
            answer = row.get("complete") or {}
            if answer.get("result") == "sat":
                assert answer["cex_margin"] is not None and answer["cex_margin"] < 0, (samples, row["index"])
            if answer.get("result") == "unsat":
                assert row["pgd_robust"] and row["attack_margin"] > 0, (samples, row["index"])
            audited += bool(answer)
        summary = read_json(samples.parent / "summary.json")
        if summary.get("complete"):
            proven = sum(r["status"] == "certified" or (r.get("complete") or {}).get("result") == "unsat" for r in rows)
            assert summary["complete"]["certified_acc"] == pytest.approx(proven / len(rows)), samples
    assert audited > 1000  # the three committed studies hold several thousand verifier answers

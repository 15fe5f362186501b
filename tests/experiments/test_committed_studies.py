"""The study results committed under examples/results: whole, tied to their models, and sound.

A fresh clone resumes every study from these folders and the docs quote them, so a state that
lost a file, or an answer that a counterexample contradicts, must fail the suite, not a reader.
Each study's state is committed as one archive, ``study-*/state.tar.gz`` (archive.py); the
tests read the folders it unpacks to.
"""

from __future__ import annotations

import json
import shutil

import pytest


@pytest.fixture(scope="module")
def states(tmp_path_factory):
    """Each committed study's state folder, unpacked from its archive as a fresh clone would."""
    from conftest import REPO

    from adcert_plugin.experiments.study.archive import unpack

    folders = []
    for archive in sorted((REPO / "examples" / "results").glob("study-*/state.tar.gz")):
        copy = tmp_path_factory.mktemp(archive.parent.name) / archive.name
        shutil.copy(archive, copy)
        assert unpack(copy.parent / "state") > 0, archive
        folders.append(copy.parent / "state")
    assert len(folders) >= 3
    return folders


def test_every_committed_study_is_its_reader_files_and_one_state_archive():
    from conftest import REPO

    for study in (REPO / "examples" / "results").glob("study-*"):
        # a study still running is committed with its progress page (examples/study.py --progress)
        page = study / ("results.md" if (study / "results.json").is_file() else "progress.md")
        assert page.is_file() and (study / "state.tar.gz").is_file(), study


def test_every_committed_study_state_is_whole_and_matches_its_models(states):
    """What a fresh clone resumes from: finished runs only, each evaluation tied to its model's hash."""
    from adcert_plugin.io import read_json, sha256_file

    for state in states:
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


def test_no_committed_study_answer_is_certified_against_a_counterexample(states):
    """Every verifier answer behind the committed studies, audited from the per-sample rows.

    A ``sat`` must carry the margin of its replayed counterexample (negative: the network really
    misclassifies it); an ``unsat`` must face no counterexample the attack found. And a committed
    summary's complete-certified count must be exactly the samples the evidence allows.
    """
    from adcert_plugin.io import read_json

    audited = 0
    for samples in (path for state in states for path in state.glob("**/eval-*/samples.jsonl")):
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

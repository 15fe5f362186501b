"""The cross-benchmark page: verdicts from the per-seed intervals, unfinished studies named, the
committed page in step with the committed results."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import REPO

from adcert_plugin.errors import ConfigError
from adcert_plugin.experiments.study.summary import load_benchmark, plot_pairs, render_summary, summary_json, verdict

RESULTS = REPO / "examples" / "results"
PAGE = RESULTS / "tuned-comparison.md"
BENCHMARKS = ("study-mnist-0.1", "study-mnist-0.3", "study-fmnist-0.1")


def _diff(low, high, n=3):
    return {"mean": (low + high) / 2, "ci95": [low, high], "n": n, "wins": 0}


@pytest.mark.parametrize(
    "low, high, expected",
    [
        (0.2, 1.5, "ad-cert better"),
        (-2.0, -0.1, "cc-ibp better"),
        (-0.5, 0.4, "not separated"),
        (0.0, 1.0, "not separated"),
        (-1.0, 0.0, "not separated"),
    ],
)
def test_the_verdict_follows_the_interval_and_zero_on_its_edge_separates_nothing(low, high, expected):
    assert verdict("ad-cert - cc-ibp", _diff(low, high)) == expected


def test_one_seed_gives_no_verdict():
    assert verdict("ad-cert - mtl-ibp", _diff(1.0, 1.0, n=1)) == "one seed: no interval"


def test_the_page_carries_each_benchmarks_own_numbers_and_names_unfinished_ones(tmp_path):
    finished = tmp_path / "study-mnist-0.1"
    finished.mkdir()
    shutil.copy(RESULTS / "study-mnist-0.1" / "results.json", finished / "results.json")
    running = tmp_path / "study-fmnist-0.1"
    running.mkdir()
    benchmarks = [load_benchmark(finished), load_benchmark(running), load_benchmark(tmp_path / "study-mnist-0.3")]
    page = render_summary(benchmarks)
    results = json.loads((finished / "results.json").read_text())
    for pair, metrics in results["paired"].items():
        d = metrics["complete"]
        row = f"| {pair} | mnist ε 0.1 (small-cnn) | {d['mean']:+.2f} | [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}] |"
        assert row in page and verdict(pair, d) in page.split(row)[1].splitlines()[0]
    assert "not in the tables" in page and "fmnist-0.1, mnist-0.3." in page
    numbers = json.loads(summary_json(benchmarks))
    assert numbers["fmnist-0.1"] == {"finished": False} and numbers["mnist-0.3"] == {"finished": False}
    assert set(numbers["mnist-0.1"]["pairs"]) == set(results["paired"])
    drawn = plot_pairs(benchmarks, tmp_path / "pairs.png")
    assert drawn == [(pair, "mnist-0.1") for pair in results["paired"]]
    assert (tmp_path / "pairs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_folder_that_is_no_study_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match="no such study folder"):
        load_benchmark(tmp_path / "results-of-nothing")


def test_the_committed_page_is_what_the_committed_results_give():
    benchmarks = [load_benchmark(RESULTS / name) for name in BENCHMARKS]
    assert PAGE.read_text() == render_summary(benchmarks), "rerun examples/study_summary.py --force (README)"
    assert PAGE.with_suffix(".json").read_text() == summary_json(benchmarks)


def test_the_script_keeps_a_page_that_differs_unless_forced(tmp_path):
    import importlib.util

    from click.testing import CliRunner

    spec = importlib.util.spec_from_file_location("study_summary_script", REPO / "examples" / "study_summary.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "page.md"
    out.write_text("a page the user wrote\n")
    folder = str(RESULTS / "study-mnist-0.1")
    refused = CliRunner().invoke(script.main, [folder, "--out", str(out)])
    assert refused.exit_code != 0 and "--force" in refused.output and out.read_text() == "a page the user wrote\n"
    forced = CliRunner().invoke(script.main, [folder, "--out", str(out), "--force"])
    assert forced.exit_code == 0 and out.read_text().startswith("# Tuned comparison across benchmarks")
    assert json.loads(out.with_suffix(".json").read_text())["mnist-0.1"]["finished"] is True
    assert out.with_suffix(".png").is_file()

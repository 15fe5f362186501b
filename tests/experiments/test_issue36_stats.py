"""Numbers a study reports must not claim more than the data hold (issue 36)."""

from __future__ import annotations

from adcert_plugin.experiments.stats import excludes_zero_words, paired_difference
from adcert_plugin.experiments.study.progress import _estimate_line
from adcert_plugin.experiments.study.summary import verdict


def test_equal_differences_over_two_seeds_cannot_be_estimated():
    d = paired_difference([52.0, 60.0], [50.0, 58.0])  # +2 on both seeds: sd 0, zero-width interval
    assert d["estimable"] is False and d["excludes_zero"] is False
    assert excludes_zero_words(d).startswith("cannot be estimated")
    assert verdict("a - b", d).startswith("cannot be estimated")
    spread = paired_difference([52.0, 61.0], [50.0, 58.0])
    assert spread["estimable"] is True and excludes_zero_words(spread) in ("yes", "no")


def test_progress_with_nothing_measured_says_unknown():
    nothing = {
        "train_s": 0.0,
        "eval_s": 0.0,
        "wall_s": 0.0,
        "processes": 2,
        "unmeasured": ["student training", "test evaluation"],
    }
    line = _estimate_line(nothing)
    assert "unknown" in line and "0.0 h" not in line
    partial = dict(nothing, train_s=7200.0, wall_s=3600.0, unmeasured=["test evaluation"])
    assert "at least 2.0 h" in _estimate_line(partial)

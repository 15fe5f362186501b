"""A paused study process must not count its pause as training time, and nothing else may be changed."""

import json

import pytest

from adcert_plugin.experiments.study.timing import paused_epochs, train_cost


def _metrics(tmp_path, times):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"epoch": i + 1, "time_s": t}) + "\n" for i, t in enumerate(times)))
    return path


def test_a_paused_epoch_counts_at_the_median_of_the_others_and_is_listed(tmp_path):
    times = [51, 46, 46, 7135, 48, 42, 44, 42, 46, 47, 40, 50, 40, 53, 63, 57, 73, 72, 64, 72]  # a 2 h SIGSTOP
    cost = train_cost(_metrics(tmp_path, times), float(sum(times)))
    assert cost["paused_epochs"] == [{"epoch": 4, "recorded_s": 7135.0, "used_s": 48.0}]
    assert cost["train_time_s"] == pytest.approx(sum(times) - 7135 + 48)
    assert cost["train_time_recorded_s"] == sum(times)


def test_the_eps_ramp_and_a_slow_first_epoch_are_not_pauses(tmp_path):
    ramp = [98, 84, 83, 62, 57, 58, 57, 55, 49, 49, 35, 34, 32, 33, 33, 40, 49, 48, 39, 36]
    assert paused_epochs(ramp) == []
    assert train_cost(_metrics(tmp_path, ramp), float(sum(ramp)))["train_time_s"] == pytest.approx(sum(ramp))


def test_two_paused_epochs_and_runs_without_metrics(tmp_path):
    times = [577, 279, 31, 32, 29, 28, 29, 47, 36, 67, 38, 34, 33, 34, 39, 33, 35, 44, 32, 20]
    assert [p["epoch"] for p in paused_epochs(times)] == [1, 2]
    assert train_cost(tmp_path / "missing.jsonl", 12.5) == {
        "train_time_s": 12.5,
        "train_time_recorded_s": 12.5,
        "paused_epochs": [],
    }
    assert paused_epochs([5.0, 500.0]) == []  # too few epochs to tell a pause from a real cost


def test_a_fraction_of_a_second_under_load_is_not_a_pause():
    assert paused_epochs([0.05, 0.04, 0.9, 0.05]) == []  # 18x the median, but 0.85 s: load, not a SIGSTOP
    assert [p["epoch"] for p in paused_epochs([20.0, 21.0, 95.0, 19.0])] == [3]  # 75 s over the median

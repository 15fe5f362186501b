"""Tests for adcert_plugin.evaluation (cascade / report): counts, recount, determinism, resume, soundness."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_net

from adcert_plugin import bounds
from adcert_plugin.attacks import AttackConfig
from adcert_plugin.bounds import InputBox, margins
from adcert_plugin.data import load_split
from adcert_plugin.errors import ConfigError, SoundnessError
from adcert_plugin.evaluation import SAMPLE_KEYS, cascade as E, read_samples
from adcert_plugin.training import arch_record, save_checkpoint

EPS = 0.01
RANGE = dict(start=0, end=300, batch_size=100)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir) -> Path:
    """An MLP trained for a second on 2000 MNIST images, saved as an adcert checkpoint."""
    x, y = load_split("mnist", "train", data_dir)
    x, y = x[:2000], y[:2000]
    torch.manual_seed(0)
    arch = arch_record("mlp", (1, 28, 28), 10, {"hidden": [64]})
    from adcert_plugin.models import create_model

    model = create_model("mlp", (1, 28, 28), 10, hidden=[64])
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(6):
        for idx in torch.randperm(2000, generator=gen).split(100):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    path = tmp_path_factory.mktemp("run") / "model.pt"
    save_checkpoint(path, model.eval(), arch, "mnist", {"schedule": {"eps": EPS}})
    return path


@pytest.fixture(scope="module")
def baseline(trained, data_dir, tmp_path_factory):
    """IBP + CROWN on the first 300 test images (default eps from the checkpoint)."""
    out = tmp_path_factory.mktemp("eval") / "base"
    return E.evaluate(trained, data_dir=data_dir, out_dir=out, **RANGE)


def _numbers(rows):
    """Rows without their timings (the only part that may change between runs)."""
    return [{k: v for k, v in r.items() if k not in ("seconds", "stage_seconds")} for r in rows]


def test_evaluate_counts_are_consistent(baseline):
    s = baseline.summary
    counts = s["counts"]
    assert s["n"] == 300 and s["eps"] == EPS and s["methods"] == ["IBP", "CROWN"]
    cert = counts["certified"]
    assert cert["IBP"] <= cert["CROWN"] <= counts["pgd_robust"] <= counts["clean_correct"] <= 300
    assert sum(counts["status"].values()) == 300
    assert 0 < cert["IBP"] < cert["CROWN"]  # the cascade adds CROWN certificates
    assert counts["status"]["misclassified"] > 0 and counts["status"]["pgd-broken"] >= 0
    assert s["soundness_errors"] == [] and baseline.soundness_errors == []
    assert baseline.standard_acc == counts["clean_correct"] / 300
    for r in baseline.rows:
        assert tuple(r) == SAMPLE_KEYS
        if r["certified_by"]:
            assert r["pgd_robust"] and r["margin_lower"][r["certified_by"]] > 0
            if r["certified_by"] == "CROWN":
                assert r["margin_lower"]["IBP"] <= 0  # IBP ran first and failed
        if not r["pgd_robust"]:
            assert r["margin_lower"] == {} and r["certified_by"] is None  # decided: not bounded
        if not r["clean_correct"]:
            assert r["attack_margin"] <= 0 and "pgd" not in r["stage_seconds"]
        assert r["attack_margin"] >= max(r["margin_lower"].values(), default=-1e9) - 1e-4


def test_evaluate_summary_matches_recount_from_samples_file(baseline):
    lines = baseline.samples_path.read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["index"] for r in rows] == list(range(300))
    summary = json.loads(baseline.summary_path.read_text())
    correct = [r for r in rows if r["prediction"] == r["label"]]
    robust = [r for r in correct if r["attack_margin"] > 0]
    ibp = [r for r in robust if r["margin_lower"].get("IBP", -1) > 0]
    crown = [r for r in robust if r["margin_lower"].get("IBP", -1) > 0 or r["margin_lower"].get("CROWN", -1) > 0]
    assert summary["counts"]["clean_correct"] == len(correct)
    assert summary["counts"]["pgd_robust"] == len(robust)
    assert summary["counts"]["certified"] == {"IBP": len(ibp), "CROWN": len(crown)}
    assert summary["certified_acc"] == {"IBP": len(ibp) / 300, "CROWN": len(crown) / 300}
    assert summary["pgd_acc"] == len(robust) / 300
    assert summary["samples_bounded"] == {"IBP": len(robust), "CROWN": len(robust) - len(ibp)}
    assert summary["seconds"]["total"] == pytest.approx(sum(r["seconds"] for r in rows))
    assert summary["seconds_per_sample"]["CROWN"] == pytest.approx(
        sum(r["stage_seconds"].get("CROWN", 0) for r in rows) / (len(robust) - len(ibp))
    )
    assert "certified CROWN" in baseline.table()


def test_evaluate_crown_alone_certifies_at_least_ibp_alone(trained, data_dir, tmp_path):
    ibp = E.evaluate(trained, data_dir=data_dir, methods="IBP", out_dir=tmp_path / "ibp", **RANGE)
    crown = E.evaluate(trained, data_dir=data_dir, methods=["crown"], out_dir=tmp_path / "crown", **RANGE)
    assert crown.certified_acc["CROWN"] >= ibp.certified_acc["IBP"]
    assert ibp.pgd_acc == crown.pgd_acc  # the attack does not depend on the methods


def test_evaluate_rerun_gives_identical_numbers(trained, data_dir, baseline, tmp_path):
    again = E.evaluate(trained, data_dir=data_dir, out_dir=tmp_path, **RANGE)
    assert _numbers(again.rows) == _numbers(baseline.rows)
    drop = ("seconds", "seconds_per_sample", "wall_seconds")
    assert {k: v for k, v in again.summary.items() if k not in drop} == {
        k: v for k, v in baseline.summary.items() if k not in drop
    }


def test_resume_of_a_finished_report_keeps_the_time_it_cost(trained, data_dir, tmp_path):
    first = E.evaluate(trained, data_dir=data_dir, out_dir=tmp_path, **RANGE)
    summary = json.loads((tmp_path / "summary.json").read_text())
    summary["wall_seconds"] = 1000.0  # as if the first call had taken long
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    again = E.evaluate(trained, data_dir=data_dir, out_dir=tmp_path, resume=True, **RANGE)
    assert 1000.0 <= again.summary["wall_seconds"] < 1000.0 + 60  # the re-read adds its own time only
    assert again.summary["seconds"] == first.summary["seconds"]  # per-sample times come from the rows
    fresh = E.evaluate(trained, data_dir=data_dir, out_dir=tmp_path, overwrite=True, **RANGE)
    assert fresh.summary["wall_seconds"] < 1000.0  # a replaced report starts its clock again


def test_evaluate_resume_after_partial_file_gives_identical_results(trained, data_dir, baseline, tmp_path):
    shutil.copy(baseline.out_dir / "config.json", tmp_path / "config.json")
    lines = baseline.samples_path.read_text().splitlines(keepends=True)
    partial = "".join(lines[:137]) + lines[137][:40]  # mid-block, with a torn last line
    (tmp_path / "samples.jsonl").write_text(partial)
    with pytest.raises(ConfigError, match="--resume"):
        E.evaluate(trained, data_dir=data_dir, out_dir=tmp_path, **RANGE)
    resumed = E.evaluate(trained, data_dir=data_dir, out_dir=tmp_path, resume=True, **RANGE)
    assert _numbers(resumed.rows) == _numbers(baseline.rows)
    assert resumed.rows[:137] == baseline.rows[:137]  # kept as written, timings included
    assert _numbers(read_samples(tmp_path / "samples.jsonl")) == _numbers(baseline.rows)
    assert resumed.summary["counts"] == baseline.summary["counts"]


def test_evaluate_resume_with_other_arguments_is_refused(trained, data_dir, baseline, tmp_path):
    shutil.copytree(baseline.out_dir, tmp_path / "r")
    with pytest.raises(ConfigError, match="eps"):
        E.evaluate(trained, data_dir=data_dir, out_dir=tmp_path / "r", resume=True, eps=0.02, **RANGE)


def test_evaluate_batch_size_does_not_change_decisions(trained, data_dir, baseline, tmp_path):
    other = E.evaluate(trained, data_dir=data_dir, out_dir=tmp_path, start=0, end=300, batch_size=64)
    assert [a["index"] for a in other.rows] == [b["index"] for b in baseline.rows]
    # Other batch shapes round differently; PGD-40 can then end elsewhere on a sample whose
    # gradient has a coordinate within rounding of 0. A batching bug changes many samples.
    decision = ("status", "certified_by", "pgd_robust")
    same = [
        all(a[k] == b[k] for k in decision) and abs(a["attack_margin"] - b["attack_margin"]) <= 1e-4
        for a, b in zip(other.rows, baseline.rows)
    ]
    assert sum(same) >= 0.99 * len(same), f"{len(same) - sum(same)} of {len(same)} samples changed"


def test_bounds_first_decides_every_sample_as_the_default_and_skips_the_attack_on_certified_ones(
    trained, data_dir, baseline, tmp_path
):
    first = E.evaluate(trained, data_dir=data_dir, out_dir=tmp_path, attack_certified=False, **RANGE)
    assert first.summary["counts"] == baseline.summary["counts"]
    certified = 0
    for a, b in zip(first.rows, baseline.rows):
        assert (a["status"], a["certified_by"], a["pgd_robust"]) == (b["status"], b["certified_by"], b["pgd_robust"])
        if a["status"] == "certified":
            certified += 1
            assert "pgd" not in a["stage_seconds"]  # never attacked: its bound already proves the box
        elif a["clean_correct"]:  # attacked with the same per-sample starts: the same point
            assert "pgd" in a["stage_seconds"] and a["attack_margin"] == pytest.approx(b["attack_margin"], abs=1e-5)
    assert certified > 0
    with pytest.raises(ConfigError, match="attack_certified"):  # the two orders never mix in one report
        E.evaluate(trained, data_dir=data_dir, out_dir=tmp_path, resume=True, **RANGE)


def test_bounds_first_still_checks_every_bound_against_the_clean_and_the_attacked_points(
    trained, data_dir, tmp_path, monkeypatch
):
    honest = bounds.BoundedNet.margin_lower

    def too_high(self, box, y, method="IBP", stats_input=None):
        return honest(self, box, y, method, stats_input) + 100.0

    monkeypatch.setattr(bounds.BoundedNet, "margin_lower", too_high)
    with pytest.raises(SoundnessError) as info:
        E.evaluate(trained, data_dir=data_dir, out_dir=tmp_path, start=0, end=50, attack_certified=False)
    rows = info.value.report.rows
    assert all(r["soundness_errors"] for r in rows if r["clean_correct"])  # each bound exceeds its clean margin
    assert all(r["status"] == "certified" for r in rows if r["clean_correct"])


def test_evaluate_subset_is_seeded_and_inside_range(trained, data_dir, tmp_path):
    report = E.evaluate(trained, data_dir=data_dir, methods="IBP", start=100, end=400, n=20, seed=3, out_dir=tmp_path)
    idx = [r["index"] for r in report.rows]
    assert len(idx) == 20 and idx == sorted(idx) and idx[0] >= 100 and idx[-1] < 400
    assert idx == E.select_indices(10000, 100, 400, 20, 3)


def test_evaluate_unsound_bounds_raise_soundness_error(trained, data_dir, tmp_path, monkeypatch):
    honest = bounds.BoundedNet.margin_lower

    def too_high(self, box, y, method="IBP", stats_input=None):
        return honest(self, box, y, method, stats_input) + 100.0

    monkeypatch.setattr(bounds.BoundedNet, "margin_lower", too_high)
    with pytest.raises(SoundnessError, match="soundness violations") as info:
        E.evaluate(trained, data_dir=data_dir, out_dir=tmp_path, start=0, end=50)
    summary = json.loads((tmp_path / "summary.json").read_text())
    errors = summary["soundness_errors"]
    robust = [r for r in info.value.report.rows if r["pgd_robust"]]
    assert robust and {e["index"] for e in errors} == {r["index"] for r in robust}
    assert {e["kind"] for e in errors} == {"bound-above-margin"} and errors[0]["method"] == "IBP"
    assert all(r["soundness_errors"] for r in read_samples(tmp_path / "samples.jsonl") if r["pgd_robust"])


def test_evaluate_attack_outside_box_is_a_soundness_error(trained, data_dir, tmp_path, monkeypatch):
    from adcert_plugin.evaluation import block

    honest = block.pgd_margins

    def escaping(model, box, y, cfg, seeds):
        x_adv, _ = honest(model, box, y, cfg, seeds)
        x_adv = x_adv + 0.5  # leaves the eps box
        with torch.no_grad():
            return x_adv, margins(model(x_adv), y)

    monkeypatch.setattr(block, "pgd_margins", escaping)
    with pytest.raises(SoundnessError):
        E.evaluate(trained, data_dir=data_dir, methods="IBP", out_dir=tmp_path, start=0, end=20)
    kinds = {e["kind"] for e in json.loads((tmp_path / "summary.json").read_text())["soundness_errors"]}
    assert "adversarial-outside-box" in kinds


# -- no data needed --------------------------------------------------------------------------
def test_resolve_methods_orders_the_cascade_and_rejects_unknown_names():
    assert E.resolve_methods("crown,ibp") == ("IBP", "CROWN")
    assert E.resolve_methods(["alpha-crown", "CROWN-IBP,IBP"]) == ("IBP", "CROWN-IBP", "alpha-CROWN")
    with pytest.raises(ConfigError, match="deepz"):
        E.resolve_methods("IBP,deepz")
    with pytest.raises(ConfigError):
        E.resolve_methods("")


def test_select_indices_ranges_and_subsets():
    assert E.select_indices(10, None, None, None, 0) == list(range(10))
    assert E.select_indices(10, 2, 5, None, 0) == [2, 3, 4]
    small, large = E.select_indices(100, 0, 100, 5, 1), E.select_indices(100, 0, 100, 10, 1)
    assert set(small) <= set(large)
    for bad in [(5, 5, None), (0, 11, None), (0, 10, 11), (-1, 3, None)]:
        with pytest.raises(ConfigError):
            E.select_indices(10, *bad, 0)


def test_pgd_margins_stays_in_box_and_ignores_batch_composition(batch):
    x, y = batch
    # float64: a batch of 1 and a batch of 4 run other kernels, and in float32 their rounding can
    # flip the sign of a gradient coordinate near 0 and send a 10-step trajectory elsewhere
    model = tiny_net("cnn-bn").double().requires_grad_(False)
    x = x.double()
    box = InputBox.from_pixels(x, 0.1, (0.5,), (0.25,))
    cfg = AttackConfig(steps=10, step_size=0.1, restarts=2)
    seeds = [11, 12, 13, 14]
    x_adv, adv_margin = E.pgd_margins(model, box, y, cfg, seeds)
    assert box.contains(x_adv).all()
    with torch.no_grad():
        assert torch.allclose(margins(model(x_adv), y), adv_margin, atol=1e-6)
        clean = margins(model(box.x_norm), y)
    assert (adv_margin.amin(1) <= clean.amin(1) + 1e-6).all()  # the clean point is a candidate
    for i in range(4):
        one = InputBox(box.x_norm[i : i + 1], box.lower_norm[i : i + 1], box.upper_norm[i : i + 1])
        x_one, m_one = E.pgd_margins(model, one, y[i : i + 1], cfg, seeds[i : i + 1])
        assert torch.allclose(x_one, x_adv[i : i + 1], atol=1e-5) and torch.allclose(
            m_one, adv_margin[i : i + 1], atol=1e-5
        )


def test_the_cascade_certifies_by_the_best_bound_on_each_margin():
    """IBP proves one margin, CROWN the other: together (elementwise best) the sample is certified."""
    from adcert_plugin.data import get_data_spec
    from adcert_plugin.evaluation import block

    class Bounded:
        def margin_lower(self, box, y, method):
            lower = {"IBP": [5.0, -1.0, 5.0], "CROWN": [-2.0, 0.5, 5.0]}[method]
            return torch.tensor([lower] * len(y))

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 4, bias=False))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[0].fill_(0.02)  # class 0 wins by about 7.8 everywhere in the box: no attack breaks it
    ctx = block.Context(
        model, Bounded(), get_data_spec("mnist"), 0.01, ("IBP", "CROWN"), AttackConfig(steps=2), 0, torch.device("cpu")
    )
    (row,) = block.evaluate_block(ctx, torch.full((1, 1, 28, 28), 0.5), torch.tensor([0]), [7])
    assert row["pgd_robust"] and row["status"] == "certified" and row["certified_by"] == "CROWN"
    assert row["margin_lower"] == {"IBP": -1.0, "CROWN": -2.0}  # neither alone proves every margin
    assert row["soundness_errors"] == []

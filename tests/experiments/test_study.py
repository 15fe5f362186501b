"""The tuned comparison: validation holdout, selection, seeds, paired statistics, reuse."""

from __future__ import annotations

import dataclasses
import json
import math
import typing

import pytest
import torch

from adcert_plugin.data import validation_split
from adcert_plugin.errors import ConfigError, DataError, SoundnessError
from adcert_plugin.experiments.stats import mean_sd, paired_difference, t_quantile_975
from adcert_plugin.experiments.study import run as study_module
from adcert_plugin.experiments.study.config import point_name
from adcert_plugin.experiments.study.presets import get_study, list_studies
from adcert_plugin.experiments.study.progress import estimate_left, render_progress, study_progress
from adcert_plugin.experiments.study.report import plot_curves, render_markdown
from adcert_plugin.experiments.study.run import final_dir, run_study, select
from adcert_plugin.experiments.study.selection import edge_points


def test_paired_difference_is_students_t_on_the_per_seed_differences():
    d = paired_difference([3.0, 4.0, 8.0], [1.0, 1.0, 1.0])  # differences 2, 3, 7: mean 4, sd sqrt(7)
    assert d["mean"] == pytest.approx(4.0) and d["sd"] == pytest.approx(math.sqrt(7))
    half = 4.303 * math.sqrt(7) / math.sqrt(3)
    assert d["ci95"] == pytest.approx([4 - half, 4 + half])
    assert (d["wins"], d["losses"], d["excludes_zero"]) == (3, 0, False)  # 3 wins, yet the interval holds 0
    assert paired_difference([5.0, 5.1, 5.2], [1.0, 1.0, 1.1])["excludes_zero"]
    assert t_quantile_975(1000) == 1.96 and mean_sd([2.0])["n"] == 1
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference([1.0, 2.0], [1.0])


def test_selection_takes_the_best_complete_certified_accuracy_and_breaks_ties_by_standard():
    def rec(complete, standard):
        return {"evals": {"validation": {"complete": complete, "standard": standard}}}

    candidates = [
        ({"alpha": 0.1}, rec(0.80, 0.95)),
        ({"alpha": 0.5}, rec(0.85, 0.90)),
        ({"alpha": 0.9}, rec(0.85, 0.93)),
    ]
    assert select("x", candidates)["params"] == {"alpha": 0.9}
    assert select("x", candidates[:2])["params"] == {"alpha": 0.5}


def test_a_choice_on_an_edge_extends_along_its_ladder_one_rung_at_a_time():
    ladder = {"alpha": (0.001, 0.01, 0.1, 0.5, 0.9)}
    grid = [{"alpha": a, "tau": t} for a in (0.01, 0.1, 0.5) for t in (1.0, 4.0)]
    assert edge_points(ladder, grid, {"alpha": 0.5, "tau": 4.0}) == [{"alpha": 0.9, "tau": 4.0}]
    assert edge_points(ladder, grid, {"alpha": 0.01, "tau": 1.0}) == [{"alpha": 0.001, "tau": 1.0}]
    assert edge_points(ladder, grid, {"alpha": 0.1, "tau": 1.0}) == []  # inside the values tried
    wider = grid + [{"alpha": 0.9, "tau": 4.0}]
    assert edge_points(ladder, wider, {"alpha": 0.9, "tau": 4.0}) == []  # the ladder ends
    assert edge_points(ladder, wider, {"alpha": 0.5, "tau": 1.0}) == []  # 0.9 was tried: 0.5 is inside now
    one = [{"alpha": 0.1}]  # a single value is both edges
    assert edge_points(ladder, one, {"alpha": 0.1}) == [{"alpha": 0.01}, {"alpha": 0.5}]
    assert edge_points({}, grid, {"alpha": 0.5, "tau": 4.0}) == []


def test_an_edge_extension_must_name_a_searched_knob_with_an_ascending_valid_ladder():
    cfg = get_study("mnist-0.1")
    assert cfg.edge_extension["ad-cert"]["alpha"][-1] == 0.9 and set(cfg.edge_extension) == set(cfg.grids)
    for bad, message in (
        ({"sabr": {"alpha": (0.1,)}}, "has no grid"),
        ({"cc-ibp": {"beta": (0.1,)}}, "does not search 'beta'"),
        ({"cc-ibp": {"alpha": (0.5, 0.1)}}, "strictly ascending"),
        ({"cc-ibp": {"alpha": (0.1, 2.0)}}, "alpha"),
    ):
        with pytest.raises(ConfigError, match=message):
            dataclasses.replace(cfg, edge_extension=bad)


def test_the_validation_holdout_is_fixed_disjoint_and_checked():
    x = torch.arange(100.0).view(100, 1, 1, 1)
    y = torch.arange(100)
    (fit_x, fit_y), (val_x, val_y) = validation_split(x, y, 20)
    assert len(val_y) == 20 and len(fit_y) == 80 and not set(val_y.tolist()) & set(fit_y.tolist())
    assert torch.equal(validation_split(x, y, 20)[1][1], val_y)  # the same holdout every time
    assert set(validation_split(x, y, 10)[1][1].tolist()) <= set(val_y.tolist())  # a prefix of one order
    with pytest.raises(DataError, match="validation size"):
        validation_split(x, y, 100)


def test_presets_validate_and_name_their_runs():
    assert {"mnist-0.1", "mnist-0.3", "fmnist-0.1", "smoke"} <= set(list_studies())
    cfg = get_study("mnist-0.1")
    assert cfg.data.validation_size == 5000 and cfg.final.n >= 2000 and len(cfg.seeds) >= 3
    assert cfg.selection.n >= 200 and cfg.selection.verifier and cfg.final.verifier
    assert {"beta", "distance", "feature_point"} <= set(cfg.grids["cc-dist"])
    assert {"tau", "combination"} <= set(cfg.grids["ad-cert"])
    assert point_name("cc-dist", {"alpha": 0.1, "distance": "mse"}) == "cc-dist-alpha0.1-distance=mse"
    with pytest.raises(ConfigError, match="validation_size"):
        dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, validation_size=0))
    with pytest.raises(Exception, match="alpha"):
        dataclasses.replace(cfg, grids={"mtl-ibp": {"alpha": (2.0,)}})


@pytest.mark.parametrize(
    "name, eps, train_mul", [("mnist-0.1", 0.1, 2.0), ("mnist-0.3", 0.3, 1.334), ("fmnist-0.1", 0.1, 1.0)]
)
def test_study_presets_train_students_at_the_papers_eps_multiplier_and_teachers_at_eps(name, eps, train_mul):
    """methods.md B.2.4: MNIST trains at ε×2.0 (0.1) and ×1.334 (0.3); the PGD-AT teacher attacks at ε itself."""
    cfg = get_study(name)
    assert (cfg.schedule.eps, cfg.schedule.train_eps_mul) == (eps, train_mul)
    assert (cfg.teacher.schedule.eps, cfg.teacher.schedule.train_eps_mul) == (eps, 1.0)


def _neuralsat_or_skip():
    """The smoke study's final evaluation runs NeuralSAT: skip without it, but fail in CI (make test builds it)."""
    import os

    from adcert_plugin.errors import VerifierError

    try:
        from vnncomp.verifiers import find_neuralsat

        find_neuralsat()
    except VerifierError as err:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but NeuralSAT is missing ({err}); `make test` builds it")
        pytest.skip(f"NeuralSAT is not set up ({err}); run `make neuralsat`")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, data_dir, ray_local):
    _neuralsat_or_skip()
    cfg = get_study("smoke")
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=str(data_dir)))
    out = tmp_path_factory.mktemp("study")
    return cfg, out, _run_reporting_contradictions(cfg, out, state_dir=_state_of(out))


def _state_of(out):
    """Where the smoke study keeps the folder a repository would commit."""
    return out.parent / f"{out.name}-state"


def _run_reporting_contradictions(cfg, out, **kwargs) -> dict:
    """run_study; a verifier answer the evidence contradicts must fail it only after every number is written.

    The smoke study checks the pipeline, not NeuralSAT: should NeuralSAT be wrong on one sample
    of one machine's network, the study must still write its results, list the contradiction
    first in results.md and raise SoundnessError.
    """
    try:
        return run_study(cfg, out, **kwargs)
    except SoundnessError as err:
        results = json.loads((out / "results.json").read_text())
        assert results["contradictions"] and str(len(results["contradictions"])) in str(err)
        assert f"## SOUNDNESS: {len(results['contradictions'])} contradicted" in (out / "results.md").read_text()
        return results


def test_the_smoke_study_selects_retrains_and_reports_every_number(smoke):
    cfg, out, results = smoke
    grid = [r for r in results["grid"] if not r["extension"]]
    assert [(r["method"], r["params"]) for r in grid] == [(m, p) for m in cfg.methods for p in cfg.grid_points(m)]
    for method in cfg.methods:
        chosen = results["chosen"][method]["params"]
        assert set(results["final"][method]) == {str(s) for s in cfg.seeds}
        assert chosen in [r["params"] for r in results["grid"] if r["method"] == method]
        for seed in cfg.seeds[1:]:  # the selected setting retrained with every further seed
            assert (final_dir(out, seed, method, chosen) / "eval-test" / "summary.json").is_file()
    extended = [r for r in results["grid"] if r["extension"]]  # only mtl-ibp has a ladder in the smoke preset
    best_on_grid = select(
        "mtl-ibp", [(r["params"], {"evals": {"validation": r["validation"]}}) for r in grid if r["method"] == "mtl-ibp"]
    )["params"]
    assert [(r["method"], r["params"]) for r in extended] == [
        ("mtl-ibp", {"alpha": 0.05 if best_on_grid["alpha"] == 0.1 else 0.7})
    ]  # one rung past the chosen edge
    assert "*past the edge*" in (out / "results.md").read_text()
    assert set(results["paired"]) == {"ad-cert - mtl-ibp", "ad-cert - cc-ibp", "ad-cert - cc-dist", "cc-dist - cc-ibp"}
    assert (out / "results.md").read_text() == render_markdown(json.loads((out / "results.json").read_text()))
    assert (out / "plot.png").stat().st_size > 0 and (out / "curves.png").stat().st_size > 0
    assert sorted(plot_curves(results, out / "curves-again.png")) == sorted(cfg.methods)  # every chosen run's curve
    trained = [
        json.loads(p.read_text())["train_time_s"]
        for p in out.rglob("summary.json")
        if not p.parent.name.startswith("eval-")
    ]  # every run once, the selected grid runs too
    assert results["train_time_recorded_s"] == pytest.approx(sum(trained), abs=0.1) and results["eval_time_s"] > 0
    excess = sum(p["recorded_s"] - p["used_s"] for runs in results["paused_epochs"].values() for p in runs)
    assert results["train_time_s"] == pytest.approx(results["train_time_recorded_s"] - excess, abs=0.1)
    teacher_cfg = (out / f"seed{cfg.seeds[0]}" / "teacher" / "config.yaml").read_text()
    assert f"validation_size: {cfg.data.validation_size}" in teacher_cfg  # the teacher never sees the holdout either
    val = json.loads(
        (out / f"seed{cfg.seeds[0]}" / "grid" / "mtl-ibp-alpha0.1" / "eval-validation" / "summary.json").read_text()
    )
    assert val["split"] == "validation" and val["n"] == cfg.selection.n
    for method in cfg.methods:  # the final evaluation went through the complete verifier
        chosen = results["chosen"][method]["params"]
        final = json.loads((final_dir(out, cfg.seeds[1], method, chosen) / "eval-test" / "summary.json").read_text())
        assert final["complete"]["verifier"] == "neuralsat" and final["complete"]["pending"] == 0
        assert results["final"][method][str(cfg.seeds[1])]["complete"] == final["complete"]["certified_acc"]


def test_teacher_free_extensions_share_the_distilled_wave_and_later_ones_get_their_own(
    tmp_path, monkeypatch, ray_local
):
    """No core waits on a wave of its own for an extension whose selection was known one wave earlier."""
    cfg = dataclasses.replace(
        get_study("smoke"),
        edge_extension={"mtl-ibp": {"alpha": (0.05, 0.1, 0.5, 0.7)}, "ad-cert": {"alpha": (0.1, 0.5, 0.9)}},
    )
    waves = []

    def fake_wave(cfg_, jobs, label, on_done=None):
        waves.append((label, [key for key, _, _ in jobs]))
        if label.startswith("selected settings"):
            raise KeyboardInterrupt  # the selection is what this test is about
        # higher α scores higher: every choice sits on its upper edge
        return {
            key: {"evals": {"validation": {"complete": c.loss.params.get("alpha", 0.0), "standard": 0.5}}}
            for key, c, _ in jobs
        }

    monkeypatch.setattr(study_module, "_run_wave", fake_wave)
    with pytest.raises(KeyboardInterrupt):
        run_study(cfg, tmp_path / "study")
    labels = [label for label, _ in waves]
    assert labels[1] == "distilled grid points and first edge extensions"
    assert ("mtl-ibp", 2) in waves[1][1] and not any(k[0] == "ad-cert" and k[1] >= 1 for k in waves[1][1])
    extension_waves = [keys for label, keys in waves if label.startswith("grid extended")]
    # ad-cert's one grid value is both edges: α 0.1 and 0.9 once its grid is evaluated; mtl-ibp's ladder ended at 0.7
    assert extension_waves == [[("ad-cert", 1), ("ad-cert", 2)]]


def test_a_run_records_its_machine_when_training_ends_not_when_it_is_saved(data_dir, tmp_path, monkeypatch):
    """A study stopped during a run's evaluation reuses the run next time: where it trained must be on disk."""
    cfg = get_study("smoke")
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=str(data_dir)))
    teacher = cfg.teacher_config(tmp_path / "teacher", cfg.seeds[0])
    teacher = dataclasses.replace(teacher, schedule=dataclasses.replace(teacher.schedule, epochs=1))

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt  # the session ended during the evaluation

    monkeypatch.setattr(study_module, "_evaluate", stopped)
    threads = torch.get_num_threads()
    try:
        with pytest.raises(KeyboardInterrupt):
            study_module._job(
                teacher.to_dict(), [{"split": "test", "settings": dataclasses.asdict(cfg.final), "name": "test"}]
            )
    finally:
        torch.set_num_threads(threads)
    machine = json.loads((tmp_path / "teacher" / "machine.json").read_text())
    assert (tmp_path / "teacher" / "summary.json").is_file() and machine["cpu_count"] and machine["saved_at"]


def test_results_name_no_folder_of_the_machine_and_list_contradictions_first(smoke):
    cfg, out, results = smoke
    assert results["config"]["data"]["data_dir"] is None and cfg.data.data_dir is not None
    assert all(not row["run_dir"].startswith("/") and (out / row["run_dir"]).is_dir() for row in results["grid"])
    text = render_markdown(dict(results, contradictions=["seed0/grid/x (validation): sample 3: fake says unsat"]))
    assert text.index("## SOUNDNESS: 1 contradicted verifier answers") < text.index("## Teacher")
    assert "## SOUNDNESS" not in render_markdown(dict(results, contradictions=[]))


def test_an_eval_that_records_a_contradiction_gives_its_numbers_to_the_study():
    class Report:
        errors: typing.ClassVar[list] = [{"index": 3, "detail": "fake says unsat, counterexample in hand"}]
        summary: typing.ClassVar[dict] = {"soundness_errors": errors}

    def contradicted(model, **kwargs):
        err = SoundnessError("1 soundness violations")
        err.report = Report()
        raise err

    assert study_module._reported(contradicted, "model.pt").summary is Report.summary
    summary = dict(
        Report.summary,
        n=10,
        standard_acc=0.9,
        pgd_acc=0.8,
        certified_acc={"IBP": 0.5},
        complete={
            "certified_acc": 0.6,
            "verifier": "fake",
            "set_aside": 1,
            "not_certified": {"timeout": 2, "error": 1, "unknown": 1},
        },
    )
    metrics = study_module.metrics_of(summary)
    assert metrics["contradictions"] == ["sample 3: fake says unsat, counterexample in hand"]
    assert (metrics["timeouts"], metrics["complete_errors"], metrics["set_aside"]) == (2, 1, 1)

    def broken(model, **kwargs):
        raise SoundnessError("no report to carry")

    with pytest.raises(SoundnessError, match="no report"):
        study_module._reported(broken, "model.pt")


def test_progress_reads_every_run_state_and_the_numbers_from_the_run_folders(smoke, tmp_path):
    cfg, out, results = smoke
    progress = study_progress(cfg, out)
    planned = len(cfg.seeds) + len(results["grid"]) + len(cfg.methods) * (len(cfg.seeds) - 1)
    assert progress["done"] == progress["total"] == planned
    grid = [r for r in progress["runs"] if r["role"] in ("grid", "extension")]
    assert [(r["method"], r["params"], r["evals"]["validation"]) for r in grid] == [
        (row["method"], row["params"], row["validation"]) for row in results["grid"]
    ]
    assert [r["role"] == "extension" for r in grid] == [row["extension"] for row in results["grid"]]
    finals = [r for r in progress["runs"] if r["role"] == "final"]
    assert all(r["params"] == results["chosen"][r["method"]]["params"] for r in finals)
    page = render_progress(progress, "python examples/study.py --preset smoke")
    assert page.count("| grid |") + page.count("| extension |") == len(grid)
    assert progress["estimate"]["train_s"] == progress["estimate"]["eval_s"] == 0.0
    assert not progress["estimate"]["unmeasured"] and "Left, from the medians" in page
    empty = study_progress(cfg, tmp_path / "nothing-yet")
    assert empty["done"] == 0 and {r["state"] for r in empty["runs"]} == {"waiting", "waiting for selection"}
    assert {"teacher training", "student training"} <= set(empty["estimate"]["unmeasured"])
    assert len(empty["runs"]) == len(cfg.seeds) * (1 + len(cfg.methods)) - len(cfg.methods) + sum(
        len(cfg.grid_points(m)) for m in cfg.methods
    )  # no extension is planned before the grid is evaluated


def test_the_work_left_is_estimated_from_the_medians_of_what_finished_and_never_guessed():
    def row(role, method, trained, train_s=None, **evals):
        return {
            "role": role,
            "method": method,
            "trained": trained,
            "train_s": train_s,
            "evals": {split: {"eval_time_s": t} for split, t in evals.items()},
        }

    rows = [
        row("teacher", "teacher", 1.0, 100.0, test=10.0),
        row("grid", "a", 1.0, 200.0, validation=20.0),
        row("grid", "a", 1.0, 400.0, validation=40.0),
        row("grid", "b", 0.5),  # halfway: half a median run and its validation evaluation left
        row("final", "a", 0.0),
    ]  # training, and a test evaluation nothing has measured yet
    left = estimate_left(rows, processes=2)
    assert left["train_s"] == 0.5 * 300.0 + 300.0 and left["eval_s"] == 30.0
    assert left["wall_s"] == (450.0 + 30.0) / 2 and left["unmeasured"] == ["test evaluation"]
    # a's chosen point evaluated on test: b's and the final owe 60 each
    rows[1]["evals"]["test"] = {"eval_time_s": 60.0}
    assert estimate_left(rows, processes=2)["eval_s"] == 30.0 + 60.0 + 60.0


def test_a_second_call_reuses_every_run_and_gives_the_same_numbers(smoke):
    cfg, out, results = smoke
    again = _run_reporting_contradictions(cfg, out)
    assert again["runs_trained_now"] == 0 and again["contradictions"] == results["contradictions"]
    assert again["summary"] == results["summary"] and again["chosen"] == results["chosen"]


def test_a_fresh_clone_resumes_from_the_state_folder_and_trains_nothing(smoke, tmp_path):
    cfg, out, results = smoke
    state = _state_of(out)
    first = cfg.seeds[0]
    assert not list(state.rglob("last.pt")) and not list(state.rglob("best.pt"))
    assert {p.parent.name for p in state.rglob("model.pt")} == {"teacher"}  # the study needs no other model now
    runs = [p.parent for p in state.rglob("summary.json") if not p.parent.name.startswith("eval-")]
    assert runs and all((run / "model.sha256").is_file() for run in runs)  # restored evaluations match by hash
    chosen = point_name("mtl-ibp", results["chosen"]["mtl-ibp"]["params"])
    assert (state / f"seed{first}" / "grid" / chosen / "eval-test" / "samples.jsonl").is_file()
    again = _run_reporting_contradictions(cfg, tmp_path / "fresh", state_dir=state)
    assert again["runs_trained_now"] == 0 and again["chosen"] == results["chosen"]
    assert again["summary"] == results["summary"] and again["grid"] == results["grid"]
    runs = len(study_progress(cfg, out)["runs"])
    assert [m["runs"] for m in again["machines"]] == [runs] == [m["runs"] for m in results["machines"]]
    two = dict(again, machines=[{"machine": "cpu A", "runs": 3}, {"machine": "cpu B", "runs": runs - 3}])
    assert f"Runs finished on: cpu A (3 runs); cpu B ({runs - 3} runs)" in render_markdown(two)


def test_a_restored_run_without_its_model_is_reused_only_for_the_evaluation_it_holds(smoke, tmp_path):
    cfg, out, results = smoke
    fresh = tmp_path / "fresh"
    assert study_module.restore(_state_of(out), fresh) == len(study_progress(cfg, out)["runs"])
    run = study_module.RunDir(final_dir(fresh, cfg.seeds[1], "mtl-ibp", results["chosen"]["mtl-ibp"]["params"]))
    assert not run.model.is_file()
    metrics = study_module._evaluate(run, "test", cfg.final, "cpu")
    assert metrics == results["final"]["mtl-ibp"][str(cfg.seeds[1])]
    with pytest.raises(ConfigError, match="has no model.pt .* delete"):
        study_module._evaluate(run, "test", dataclasses.replace(cfg.final, n=cfg.final.n + 1), "cpu")


def test_restore_replaces_a_partial_run_and_keeps_a_finished_one(tmp_path):
    from adcert_plugin.experiments.study.state import restore, save_run

    out, state, here = tmp_path / "out", tmp_path / "state", tmp_path / "here"
    for name, weights in (("a", b"model a"), ("b", b"model b")):
        (out / name / "eval-test").mkdir(parents=True)
        (out / name / "model.pt").write_bytes(weights)
        for f in ("config.yaml", "metrics.jsonl", "summary.json", "last.pt"):
            (out / name / f).write_text(f"{name} {f}")
        for f in ("config.json", "samples.jsonl", "summary.json"):
            (out / name / "eval-test" / f).write_text(f"{name} eval {f}")
        save_run(out, out / name, state, keep_model=name == "a")
    assert (state / "a" / "model.pt").is_file() and not (state / "b" / "model.pt").exists()
    assert not (state / "a" / "last.pt").exists()
    (here / "a").mkdir(parents=True)
    (here / "a" / "metrics.jsonl").write_text("one epoch of an interrupted run")
    (here / "b" / "eval-test").mkdir(parents=True)
    (here / "b" / "model.pt").write_bytes(b"another model b")
    (here / "b" / "summary.json").write_text("finished here")
    assert restore(state, here) == 1
    assert (here / "a" / "metrics.jsonl").read_text() == "a metrics.jsonl" and (here / "a" / "model.pt").is_file()
    assert (here / "b" / "summary.json").read_text() == "finished here"
    assert not (here / "b" / "eval-test" / "summary.json").exists()  # another model's evaluation stays out
    assert restore(state, here) == 0


def test_evaluating_a_run_without_holdout_on_validation_is_refused(smoke, data_dir, tmp_path):
    from adcert_plugin.evaluation import evaluate

    cfg, out, _ = smoke
    plain = cfg.teacher_config(tmp_path / "t", 0)
    plain = dataclasses.replace(plain, data=dataclasses.replace(plain.data, validation_size=0))
    from adcert_plugin.training import train

    run = train(plain, progress=False).run_dir
    with pytest.raises(ConfigError, match="without a validation holdout"):
        evaluate(run / "model.pt", data_dir=data_dir, n=5, split="validation", out_dir=tmp_path / "e")

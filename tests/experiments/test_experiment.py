"""The unified-setup experiment: presets, the smoke preset end to end, reuse of finished runs."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO

from adcert_plugin.errors import ConfigError
from adcert_plugin.experiments import STUDENTS, ExperimentConfig, get_experiment, list_experiments, run_unified
from adcert_plugin.experiments.report import markdown_report, markdown_tables
from adcert_plugin.training import read_config_file


def _rows(markdown: str) -> list[list[str]]:
    """The cells of every table body row in ``markdown`` (header and rule rows skipped)."""
    rows = []
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("| method") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


@pytest.fixture(scope="module")
def smoke(data_dir, tmp_path_factory):
    base = get_experiment("smoke")
    cfg = dataclasses.replace(base, data=dataclasses.replace(base.data, data_dir=str(data_dir)))
    out = tmp_path_factory.mktemp("unified") / "smoke"
    return cfg, out, run_unified(cfg, out)


def test_experiment_presets_are_registered_and_checked():
    assert {"cpu", "paper", "smoke"} <= set(list_experiments())
    with pytest.raises(ConfigError, match="did you mean 'smoke'"):
        get_experiment("smoek")
    with pytest.raises(ConfigError, match="alpha=1.5"):
        dataclasses.replace(get_experiment("smoke"), sweep=(1.5,))
    with pytest.raises(ConfigError, match="not methods"):
        dataclasses.replace(get_experiment("smoke"), loss_params={"ibp": {}})


@pytest.mark.parametrize("name", ["cpu", "cpu-ctbench", "paper", "smoke"])
def test_experiment_students_share_everything_but_the_loss(name, tmp_path):
    cfg: ExperimentConfig = get_experiment(name)
    assert cfg.methods == STUDENTS and len(cfg.alphas()) >= 2
    students = {m: cfg.student_config(m, cfg.alpha, tmp_path / m, tmp_path / "t.pt") for m in cfg.methods}
    shared = [
        {k: v for k, v in s.to_dict().items() if k not in ("loss", "teacher", "out_dir")} for s in students.values()
    ]
    assert all(s == shared[0] for s in shared)
    assert {m: s.loss.params["alpha"] for m, s in students.items()} == dict.fromkeys(cfg.methods, cfg.alpha)
    assert {m for m, s in students.items() if s.teacher} == {"cc-dist", "ad-cert"}
    teacher = cfg.teacher_config(tmp_path / "teacher")
    assert teacher.loss.name == "pgd" and not teacher.model.ibp_init and teacher.attack.steps > 1
    assert (teacher.data, teacher.seed, teacher.schedule.eps) == (cfg.data, cfg.seed, cfg.schedule.eps)


def test_paper_preset_follows_the_mnist_0_1_table():
    cfg = get_experiment("paper")
    assert cfg.model.name == "cnn7" and cfg.data.batch_size == 256 and cfg.data.train_subset is None
    s = cfg.schedule
    assert (s.epochs, s.eps, s.train_eps_mul, s.eps_start_epoch, s.eps_length_epochs) == (70, 0.1, 2.0, 1, 20)
    assert cfg.optim.milestones == (50, 60) and cfg.optim.lr == 5e-4 and cfg.device == "auto"
    assert (cfg.attack.steps, cfg.attack.step_size) == (1, 10.0)
    assert {0.01, 0.1} <= set(cfg.alphas())  # the B.4.2 mtl-ibp and cc-ibp values


def test_smoke_experiment_results_agree_everywhere(smoke):
    cfg, out, result = smoke
    for name in ("results.json", "results.md", "plot.png"):
        assert (out / name).is_file(), name
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "results.json").read_text())
    assert results == result.results
    assert results["machine"]["cpu_count"] >= 1 and results["machine"]["torch"]
    assert cfg.data.data_dir and results["config"]["data"]["data_dir"] is None  # no machine's data folder
    markdown = (out / "results.md").read_text()
    assert results["command"] in markdown
    methods = cfg.evaluation.methods
    rows = _rows(markdown)
    main_rows = rows[: 1 + len(STUDENTS)]
    assert [r[0] for r in main_rows] == ["pgd (teacher)", *STUDENTS]
    assert len(results["runs"]) == 1 + len(STUDENTS) * len(cfg.alphas())
    for run in results["runs"]:
        label = "pgd (teacher)" if run["alpha"] is None else run["method"]
        alpha = "–" if run["alpha"] is None else f"{run['alpha']:g}"
        expected = [
            label,
            alpha,
            _pct(run["standard_acc"]),
            _pct(run["pgd_acc"]),
            *(_pct(run["certified_acc"][m]) for m in methods),
        ]
        found = [[r[0], r[1], *r[3 : 5 + len(methods)]] for r in rows if r[:2] == [label, alpha]]
        assert found and all(f == expected for f in found), (label, alpha)
        summary = json.loads((Path(run["eval_dir"]) / "summary.json").read_text())
        assert (summary["standard_acc"], summary["pgd_acc"], summary["certified_acc"]) == (
            run["standard_acc"],
            run["pgd_acc"],
            run["certified_acc"],
        )
        assert summary["n"] == cfg.evaluation.n and summary["methods"] == list(methods)
        certified = [run["certified_acc"][m] for m in methods]
        assert certified == sorted(certified)  # cumulative cascade
        assert certified[-1] <= run["pgd_acc"] <= run["standard_acc"]
        assert run["uses_teacher"] == (run["method"] in ("cc-dist", "ad-cert"))


def test_smoke_experiment_rerun_reuses_finished_runs(smoke):
    cfg, out, first = smoke
    models = sorted(out.glob("*/model.pt"))
    assert len(models) == len(first.records)
    before = {p: p.stat().st_mtime_ns for p in models}
    second = run_unified(cfg, out)
    assert all(r.reused for r in second.records)
    assert {p: p.stat().st_mtime_ns for p in models} == before
    assert [dataclasses.replace(r, reused=False) for r in second.records] == list(first.records)
    calls = second.results["calls"]
    assert [(c["runs_trained"], c["runs_reused"]) for c in calls] == [(len(models), 0), (0, len(models))]
    assert second.results["run_time_s"] == first.results["run_time_s"]
    stale = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, l1=3e-5))
    with pytest.raises(ConfigError, match="optim.l1"):
        run_unified(stale, out)
    assert {p: p.stat().st_mtime_ns for p in models} == before


def test_smoke_experiment_extra_seeds_reuse_the_main_seed_and_report_a_spread(smoke):
    cfg, out, first = smoke
    seeded = dataclasses.replace(cfg, extra_seeds=(1,))
    result = run_unified(seeded, out)
    extra = [r for r in result.records if r.seed == 1]
    assert all(r.reused for r in result.records if r.seed == cfg.seed)
    assert [(r.method, r.alpha, r.reused) for r in extra] == [("pgd", None, False)] + [
        (m, cfg.alpha, False) for m in STUDENTS
    ]
    for r in extra:
        assert Path(r.run_dir).parent == out / "seed1"
        saved = read_config_file(Path(r.run_dir) / "config.yaml")
        assert saved["seed"] == 1
        assert saved["teacher"] in (None, str(out / "seed1" / "teacher" / "model.pt"))
    assert [r.method for r in result.curve("ad-cert")] == ["ad-cert"] * len(cfg.alphas())  # sweep: main seed only

    over = result.results["over_seeds"]
    assert over["seeds"] == [cfg.seed, 1]
    for method in ("pgd", *STUDENTS):
        runs = result.at_shared_alpha(method)
        assert [r.seed for r in runs] == [cfg.seed, 1]
        spread = over["methods"][method]["standard"]
        assert spread["values"] == [round(100 * r.standard_acc, 2) for r in runs]
        assert spread["mean"] == pytest.approx(sum(spread["values"]) / 2, abs=0.01)
        assert spread["sd"] == pytest.approx(abs(spread["values"][0] - spread["values"][1]) / 2**0.5, abs=0.01)
    bound = cfg.evaluation.methods[-1]
    ad, mtl = result.at_shared_alpha("ad-cert"), result.at_shared_alpha("mtl-ibp")
    diffs = [100 * (a.certified_acc[bound] - m.certified_acc[bound]) for a, m in zip(ad, mtl)]
    gap = over["ad_cert_minus"]["mtl-ibp"][bound]
    assert gap["values"] == [round(d, 2) for d in diffs] and gap["wins"] == sum(d > 0 for d in diffs)

    markdown = (out / "results.md").read_text()
    assert markdown_tables(first.results) in markdown  # the main-seed tables are unchanged
    ad_cert = over["methods"]["ad-cert"][f"certified {bound}"]
    mean, sd = ad_cert["mean"], ad_cert["sd"]
    assert f"{mean:.2f} ± {sd:.2f}" in markdown and f"ahead in {gap['wins']} of 2" in markdown
    assert json.loads((out / "results.json").read_text()) == result.results


def test_extra_seeds_must_differ_from_the_seed():
    with pytest.raises(ConfigError, match="extra_seeds"):
        dataclasses.replace(get_experiment("smoke"), extra_seeds=(get_experiment("smoke").seed,))
    with pytest.raises(ConfigError, match="extra_seeds"):
        dataclasses.replace(get_experiment("smoke"), extra_seeds=(7, 7))


def test_unified_setup_cli_rejects_bad_alphas(tmp_path):
    spec = importlib.util.spec_from_file_location("unified_setup", REPO / "examples" / "unified_setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = CliRunner().invoke(
        module.main, ["--preset", "smoke", "--alphas", "0.1,x", "--out-dir", str(tmp_path / "out")]
    )
    assert result.exit_code == 2 and "Error: ConfigError: --alphas" in result.output
    result = CliRunner().invoke(
        module.main, ["--preset", "smoke", "--extra-seeds", "1,two", "--out-dir", str(tmp_path / "out")]
    )
    assert result.exit_code == 2 and "Error: ConfigError: --extra-seeds" in result.output
    assert not (tmp_path / "out").exists()


def _strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def test_committed_results_name_no_folder_of_the_machine_that_ran_them():
    for path in (REPO / "examples" / "results").rglob("results.json"):
        results = json.loads(path.read_text())
        absolute = [s for s in _strings(results) if s.startswith(("/", "~")) or ":\\" in s]
        assert not absolute, (path, absolute[:3])
        assert results["config"]["data"]["data_dir"] is None


def test_committed_cpu_results_are_what_their_results_json_renders():
    folder = REPO / "examples" / "results" / "unified_cpu"
    results = json.loads((folder / "results.json").read_text())
    assert (folder / "results.md").read_text() == markdown_report(results)
    assert results["preset"] == "cpu" and results["command"].startswith("python examples/unified_setup.py --preset cpu")
    assert (folder / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

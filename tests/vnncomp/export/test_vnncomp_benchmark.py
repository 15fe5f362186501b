"""export_benchmark layout, sample selection, atomic writes, generate_properties, abCROWN configs, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

import adcert_plugin.data as data_module
from adcert_plugin.bounds import METHODS, InputBox, normalize, wrap_model
from adcert_plugin.errors import ConfigError, ExportError
from adcert_plugin.models import create_model
from adcert_plugin.training import arch_record, save_checkpoint
from vnncomp.cli import export_cmd, report_cmd, verify_cmd
from vnncomp.export import benchmark as benchmark_module, selection
from vnncomp.export.benchmark import export_benchmark, find_eps, regenerate_properties
from vnncomp.export.instances import read_instances
from vnncomp.export.onnx_export import creation_mode
from vnncomp.export.vnnlib import validate_v1

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)
ARCH = {"width": 4, "linear_size": 16, "bn": True}
N_IMAGES = 48
WRONG = 8  # the first WRONG synthetic samples are labelled wrongly
EPS_SOME = 1e-4  # IBP certifies some (29 of 40) but not all correctly classified synthetic samples


def _model() -> torch.nn.Sequential:
    torch.manual_seed(0)
    model = create_model("small-cnn", (3, 32, 32), 10, **ARCH)
    model.train()
    with torch.no_grad():
        model(torch.randn(64, 3, 32, 32))  # non-trivial BN running statistics
    return model.eval()


@pytest.fixture(scope="module")
def synthetic():
    """(checkpoint path factory inputs): model, images in [0,1], labels (first WRONG misclassified)."""
    model = _model()
    images = torch.rand(N_IMAGES, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pred = model(normalize(images, MEAN, STD)).argmax(1)
    labels = pred.clone()
    labels[:WRONG] = (pred[:WRONG] + 1) % 10
    return model, images, labels


@pytest.fixture(autouse=True)
def no_pgd(monkeypatch):
    """PGD is exercised by the end-to-end test; here every sample counts as PGD-robust (fast)."""
    monkeypatch.setattr(
        selection,
        "_pgd_robust",
        lambda model, x, y, eps, spec, seed: (torch.ones(len(x), dtype=torch.bool), normalize(x, spec.mean, spec.std)),
    )


@pytest.fixture
def checkpoint(tmp_path, synthetic, monkeypatch):
    model, images, labels = synthetic
    monkeypatch.setattr(data_module, "load_split", lambda name, split, data_dir=None: (images, labels))
    path = tmp_path / "model.pt"
    save_checkpoint(
        path,
        model,
        arch_record("small-cnn", (3, 32, 32), 10, ARCH),
        "cifar10",
        config={"attack": {"eps": 2 / 255, "steps": 1}},
    )
    return path


def _export(checkpoint, out, **kwargs):
    defaults = {"n": 5, "seed": 0, "timeout": 60.0}
    return export_benchmark(checkpoint, out, **{**defaults, **kwargs})


def test_export_layout_and_contents(tmp_path, checkpoint, synthetic):
    _, images, labels = synthetic
    out = tmp_path / "bench"
    info = _export(checkpoint, out)
    assert info.params["eps"] == 2 / 255 and info.total_timeout == 300.0
    rows = list(csv.reader((out / "instances.csv").open()))
    assert len(rows) == 5 and all(len(r) == 3 and r[0] == "onnx/cifar10_small-cnn.onnx" and r[2] == "60" for r in rows)
    for sub in ("1.0", "2.0"):
        assert (out / sub / "instances.csv").read_text() == (out / "instances.csv").read_text()
        assert [i.name for i in read_instances(out / sub)] == [i.name for i in read_instances(out)]
    assert "(vnnlib-version <2.0>)" in (out / "2.0" / rows[0][1]).read_text()
    metadata = json.loads((out / "metadata.json").read_text())
    for entry, row in zip(metadata["instances"], rows):
        index = entry["index"]
        assert index >= WRONG, "misclassified samples must not be selected"
        assert entry["vnnlib"] == row[1] and entry["instance"] == Path(row[1]).stem
        assert row[1] == f"vnnlib/cifar10_small-cnn_idx{index}_eps0.00784314.vnnlib"
        spec = validate_v1((out / row[1]).read_text())
        assert spec.label == entry["label"] == int(labels[index])
        x_norm = normalize(images[index : index + 1], MEAN, STD).numpy().ravel()
        assert np.all(spec.lower <= x_norm) and np.all(x_norm <= spec.upper)
    readme = (out / "README.md").read_text()
    for fragment in (
        "outside the network",
        str(list(MEAN)),
        "0.00784313725490196",
        "NCHW",
        "21600",
        "run_abcrown.sh",
        "generate_properties.py <seed>",
    ):
        assert fragment in readme
    params = json.loads((out / "benchmark.json").read_text())
    assert params["model"] == "src/model.pt" and (out / "src" / "model.pt").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    mode = creation_mode(0o777)
    for path in (out, out / "onnx" / "cifar10_small-cnn.onnx", out / "src" / "model.pt"):
        assert path.stat().st_mode & 0o777 == (mode if path.is_dir() else mode & 0o666), path


def test_export_draws_only_from_the_range_an_eval_covered(tmp_path, checkpoint):
    """Issue 17: adcert-eval --end N and adcert-export --end N select from the same test images."""
    out = tmp_path / "bench"
    info = _export(checkpoint, out, start=10, end=30, n=6)
    indices = [e["index"] for e in json.loads((out / "metadata.json").read_text())["instances"]]
    assert len(indices) == 6 and all(10 <= i < 30 for i in indices)
    assert (info.params["start"], info.params["end"]) == (10, 30)
    assert "correctly classified test samples of test indices [10, 30)" in (out / "README.md").read_text()
    regenerate_properties(out, seed=3)  # generate_properties.py keeps the range
    again = [e["index"] for e in json.loads((out / "metadata.json").read_text())["instances"]]
    assert all(10 <= i < 30 for i in again) and again != indices
    result = CliRunner().invoke(
        export_cmd, [str(checkpoint), "--out-dir", str(tmp_path / "cli"), "--n", "4", "--end", "12", "--timeout", "10"]
    )
    assert result.exit_code == 0, result.output
    assert all(
        WRONG <= e["index"] < 12 for e in json.loads((tmp_path / "cli" / "metadata.json").read_text())["instances"]
    )


def test_abcrown_configs(tmp_path, checkpoint):
    out = tmp_path / "bench"
    _export(checkpoint, out)
    for short, device in (("gpu", "cuda"), ("cpu", "cpu")):
        config = yaml.safe_load((out / f"abcrown_{short}.yaml").read_text())
        general = config["general"]
        assert general["device"] == device and general["root_path"] == str(out.resolve())
        assert general["csv_name"] == "instances.csv" and general["results_file"].endswith(".pkl")
        assert config["model"]["onnx_optimization_flags"] == []
        assert config["bab"]["branching"]["method"] == "kfsb" and config["attack"]["pgd_order"] == "middle"
        assert config["attack"] == {"pgd_order": "middle", "pgd_restarts": 30}  # plain PGD: keeps to the timeout
    script = (out / "run_abcrown.sh").read_text()
    assert "--save_adv_example" in script and "--vnnlib_path" in script and "< /dev/null" in script


def test_export_refuses_to_clobber_without_force(tmp_path, checkpoint):
    out = tmp_path / "bench"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(ConfigError, match="use --force"):
        _export(checkpoint, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    with pytest.raises(ConfigError, match="keep.txt"):  # --force replaces only an earlier export
        _export(checkpoint, out, force=True)
    assert (out / "keep.txt").read_text() == "precious"


def test_failed_export_leaves_nothing(tmp_path, checkpoint, monkeypatch):
    def broken(*args, **kwargs):
        raise ExportError("injected")

    monkeypatch.setattr(benchmark_module, "check_v2", broken)
    with pytest.raises(ExportError, match="injected"):
        _export(checkpoint, tmp_path / "bench")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_eps_from_config_and_errors(tmp_path, checkpoint, synthetic):
    assert find_eps({"attack": {"eps": 0.1}}) == 0.1
    assert find_eps({"schedule": {"eps": 0.2}, "eps": 0.3}) == 0.3
    assert find_eps({"loss": {"params": {"eps": 0.4}}}) == 0.4 and find_eps({"lr": 1}) is None
    from adcert_plugin.training import ScheduleConfig, TrainConfig

    trained = TrainConfig(schedule=ScheduleConfig(eps=0.3)).to_dict()  # what adcert-train stores
    assert find_eps(trained) == 0.3
    model = synthetic[0]
    bare = tmp_path / "bare.pt"
    save_checkpoint(bare, model, arch_record("small-cnn", (3, 32, 32), 10, ARCH), "cifar10", config={})
    with pytest.raises(ConfigError, match="--eps"):
        _export(bare, tmp_path / "b1")
    assert _export(bare, tmp_path / "b2", eps=0.01).params["eps"] == 0.01
    with pytest.raises(ConfigError, match="6 h"):
        _export(checkpoint, tmp_path / "b3", n=10, timeout=3000)


def test_filter_pgd_drops_attacked_samples(tmp_path, checkpoint, monkeypatch):
    broken = {9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}

    images = data_module.load_split("cifar10", "test")[0]
    keys = {float(images[i].sum()): i for i in range(len(images))}

    def fake_pgd(model, x, y, eps, data_spec, seed):
        return torch.tensor([keys[float(img.sum())] not in broken for img in x]), normalize(x, MEAN, STD)

    monkeypatch.setattr(selection, "_pgd_robust", fake_pgd)
    info = _export(checkpoint, tmp_path / "f", n=10, filter_pgd=True)
    chosen = {e["index"] for e in info.instances}
    assert len(chosen) == 10 and not chosen & broken and all(e["pgd_robust"] for e in info.instances)
    plain = _export(checkpoint, tmp_path / "p", n=10)
    assert {e["index"] for e in plain.instances} & broken, "without the filter attacked samples stay"


def test_regenerate_is_deterministic(tmp_path, checkpoint):
    out = tmp_path / "bench"
    _export(checkpoint, out, seed=3)
    before = {p.name: p.read_text() for p in (out / "vnnlib").iterdir()}
    csv_before = (out / "instances.csv").read_text()
    regenerate_properties(out, 3)
    assert {p.name: p.read_text() for p in (out / "vnnlib").iterdir()} == before
    assert (out / "instances.csv").read_text() == csv_before
    regenerate_properties(out, 4)
    assert (out / "instances.csv").read_text() != csv_before
    assert json.loads((out / "benchmark.json").read_text())["seed"] == 4
    assert sorted(p.name for p in (out / "2.0" / "vnnlib").iterdir()) == sorted(
        p.name for p in (out / "vnnlib").iterdir()
    )
    assert (out / "generate_properties.py").read_text().startswith("#!/usr/bin/env python3")


# ----------------------------------------------------------------------------- --skip-certified


def _ibp_certified(synthetic, indices, eps: float) -> list[bool]:
    """Our own check, straight through adcert_plugin.bounds: IBP proves every margin > 0 over the eps box."""
    model, images, labels = synthetic
    idx = torch.as_tensor(list(indices), dtype=torch.long)
    box = InputBox.from_pixels(images[idx], eps, MEAN, STD)
    with torch.no_grad():
        return (wrap_model(model.eval(), (3, 32, 32)).margin_lower(box, labels[idx], "IBP") > 0).all(1).tolist()


def _order(seed: int) -> list[int]:
    """The seeded order in which the selection walks the correctly classified samples."""
    return np.random.default_rng(seed).permutation(np.arange(WRONG, N_IMAGES)).tolist()


def test_skip_certified_keeps_only_uncertified(tmp_path, checkpoint, synthetic):
    info = _export(checkpoint, tmp_path / "s", n=10, eps=EPS_SOME, skip_certified="ibp")
    chosen = [e["index"] for e in info.instances]
    assert info.params["skip_certified"] == "IBP" and len(chosen) == 10
    assert not any(_ibp_certified(synthetic, chosen, EPS_SOME)), "an IBP-certified sample was kept"
    order = _order(0)
    flags = dict(zip(order, _ibp_certified(synthetic, order, EPS_SOME)))
    assert [i for i in order if not flags[i]][:10] == chosen, "not the first uncertified samples of the order"
    examined = order[: info.bound_examined]
    assert set(chosen) <= set(examined) and info.bound_examined <= info.pgd_examined
    assert info.bound_certified == sum(flags[i] for i in examined) > 0, "the filter skipped nothing"
    assert info.bound_certified < info.bound_examined
    metadata = json.loads((tmp_path / "s" / "metadata.json").read_text())
    assert (metadata["skip_certified"], metadata["bound_examined"], metadata["bound_certified"]) == (
        "IBP",
        info.bound_examined,
        info.bound_certified,
    )
    readme = (tmp_path / "s" / "README.md").read_text()
    assert "that IBP does not already certify" in readme
    assert f"| IBP-certified | {100 * info.bound_certified / info.bound_examined:.2f} %" in readme
    plain = _export(checkpoint, tmp_path / "p", n=10, eps=EPS_SOME)
    assert plain.params["skip_certified"] is None and plain.bound_examined == plain.bound_certified == 0
    assert any(_ibp_certified(synthetic, [e["index"] for e in plain.instances], EPS_SOME))


def test_skip_certified_with_filter_pgd(tmp_path, checkpoint, synthetic, monkeypatch):
    order = _order(0)
    flags = dict(zip(order, _ibp_certified(synthetic, order, EPS_SOME)))
    broken = set([i for i in order if not flags[i]][:3] + [i for i in order if flags[i]][:3])
    keys = {float(synthetic[1][i].sum()): i for i in range(N_IMAGES)}
    monkeypatch.setattr(
        selection,
        "_pgd_robust",
        lambda model, x, y, eps, spec, seed: (
            torch.tensor([keys[float(img.sum())] not in broken for img in x]),
            normalize(x, MEAN, STD),
        ),
    )
    info = _export(checkpoint, tmp_path / "f", n=5, eps=EPS_SOME, filter_pgd=True, skip_certified="IBP")
    chosen = [e["index"] for e in info.instances]
    assert chosen == [i for i in order if not flags[i] and i not in broken][:5]
    assert info.bound_examined == info.pgd_robust, "only the samples PGD lets through are bounded"
    assert info.bound_certified == sum(flags[i] for i in order[: info.pgd_examined] if i not in broken)


def test_skip_certified_none_or_few_qualify(tmp_path, checkpoint, caplog):
    with pytest.raises(ExportError, match="already certified by IBP; drop --skip-certified or raise --eps"):
        _export(checkpoint, tmp_path / "none", eps=1e-6, skip_certified="IBP")
    assert not (tmp_path / "none").exists()
    info = _export(checkpoint, tmp_path / "few", n=20, eps=EPS_SOME, skip_certified="IBP")
    assert len(info.instances) == info.bound_examined - info.bound_certified < 20
    assert f"only {len(info.instances)} of 20 requested samples qualify" in caplog.text


def test_skip_certified_is_stored_and_regenerated(tmp_path, checkpoint):
    out = tmp_path / "bench"
    info = _export(checkpoint, out, seed=3, eps=1e-3, skip_certified="CROWN-IBP")  # certifies 8 of 40 here
    params = json.loads((out / "benchmark.json").read_text())
    assert params["skip_certified"] == "CROWN-IBP" and params["filter_pgd"] is False and info.bound_certified > 0
    chosen = [e["index"] for e in info.instances]
    again = regenerate_properties(out, 3)
    assert [e["index"] for e in again.instances] == chosen
    assert (again.bound_examined, again.bound_certified) == (info.bound_examined, info.bound_certified)
    del params["skip_certified"]  # a benchmark.json written before the option existed
    (out / "benchmark.json").write_text(json.dumps(params))
    old = regenerate_properties(out, 3)
    assert old.params["skip_certified"] is None and old.bound_examined == 0
    plain = [e["index"] for e in _export(checkpoint, tmp_path / "p", seed=3, eps=1e-3).instances]
    assert [e["index"] for e in old.instances] == plain != chosen


def test_skip_certified_rejects_unknown_methods(tmp_path, checkpoint):
    assert set(selection.SKIP_METHODS) <= set(METHODS)
    for bad in ("alpha-CROWN", "IBP,CROWN", "foo"):
        with pytest.raises(ConfigError, match="choose from IBP, CROWN-IBP, CROWN$"):
            _export(checkpoint, tmp_path / "bad", skip_certified=bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_cli_skip_certified(tmp_path, checkpoint):
    runner = CliRunner()
    ok = runner.invoke(
        export_cmd,
        [
            str(checkpoint),
            "--out-dir",
            str(tmp_path / "b"),
            "--n",
            "3",
            "--eps",
            str(EPS_SOME),
            "--skip-certified",
            "IBP",
        ],
    )
    assert ok.exit_code == 0, ok.output
    info = json.loads((tmp_path / "b" / "metadata.json").read_text())
    assert f"IBP-certified (skipped) {info['bound_certified']}/{info['bound_examined']}" in ok.output
    bad = runner.invoke(export_cmd, [str(checkpoint), "--out-dir", str(tmp_path / "c"), "--skip-certified", "BAB"])
    assert bad.exit_code == 2 and bad.output.strip().splitlines() == [bad.output.strip()]
    assert bad.output.startswith("Error: ConfigError:") and "IBP, CROWN-IBP, CROWN" in bad.output
    assert "--skip-certified [IBP|CROWN-IBP|CROWN]" in runner.invoke(export_cmd, ["--help"]).output


# ----------------------------------------------------------------------------- CLI


def test_cli_export_and_one_line_errors(tmp_path, checkpoint):
    runner = CliRunner()
    out = tmp_path / "bench"
    ok = runner.invoke(export_cmd, [str(checkpoint), "--out-dir", str(out), "--n", "3", "--timeout", "30"])
    assert ok.exit_code == 0, ok.output
    assert "wrote 3 instances" in ok.output
    again = runner.invoke(export_cmd, [str(checkpoint), "--out-dir", str(out), "--n", "3"])
    assert again.exit_code == 2
    assert again.output.strip().splitlines() == [again.output.strip()]
    assert again.output.startswith("Error: ConfigError:") and "use --force" in again.output
    assert "Example:" in runner.invoke(export_cmd, ["--help"]).output


@pytest.mark.parametrize(
    "args, fragment, code",
    [
        (["--verifier", "abcrown", "--abcrown", "/nonexistent/abcrown"], "VerifierError: no complete_verifier", 1),
        (["--python", "/nonexistent/python"], "VerifierError: NeuralSAT interpreter /nonexistent/python", 1),
    ],
)
def test_cli_verify_missing_verifiers(tmp_path, checkpoint, args, fragment, code):
    out = tmp_path / "bench"
    _export(checkpoint, out, n=2)
    result = CliRunner().invoke(verify_cmd, [str(out), *args])
    assert result.exit_code == code and fragment in result.output
    assert "Example:" in CliRunner().invoke(verify_cmd, ["--help"]).output


def test_cli_report_exit_code_on_contradiction(tmp_path, checkpoint):
    out = tmp_path / "bench"
    info = _export(checkpoint, out, n=2)
    first, second = info.instances
    (out / "results").mkdir(exist_ok=True)
    (out / "results" / "fake.csv").write_text(
        "instance,verifier,result,seconds,note\n"
        f"{first['instance']},marabou,unsat,1.0,\n{second['instance']},marabou,timeout,9.0,\n"
    )
    rows = [
        {
            "index": first["index"],
            "label": first["label"],
            "prediction": first["label"],
            "pgd_robust": True,
            "certified_by": None,
            "status": "unknown",
        },
        {
            "index": second["index"],
            "label": second["label"],
            "prediction": second["label"],
            "pgd_robust": True,
            "certified_by": "IBP",
            "status": "certified",
        },
    ]
    eval_file = tmp_path / "samples.jsonl"
    eval_file.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = tmp_path / "report.json"
    good = CliRunner().invoke(report_cmd, [str(eval_file), str(out), "--out", str(report)])
    assert good.exit_code == 0, good.output
    assert "certified accuracy 100.00 % (2/2" in good.output
    assert json.loads(report.read_text())["summary"]["certified_merged"] == 2
    rows[0]["pgd_robust"] = False
    eval_file.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    bad = CliRunner().invoke(report_cmd, [str(eval_file), str(out)])
    assert bad.exit_code == 3 and "Error: SoundnessError: 1 contradictions" in bad.output


def test_export_stores_evidence_and_network_identity(tmp_path, checkpoint):
    from adcert_plugin.io import sha256_file
    from vnncomp.export.evidence import load_point, read_record

    out = tmp_path / "bench"
    info = _export(checkpoint, out, eps=EPS_SOME)
    params = json.loads((out / "benchmark.json").read_text())
    metadata = json.loads((out / "metadata.json").read_text())
    onnx_sha = sha256_file(out / params["onnx"])
    for record in (params, metadata):
        assert record["checkpoint_sha256"] == sha256_file(checkpoint) and record["onnx_sha256"] == onnx_sha
        assert record["eps"] == EPS_SOME
    for entry in info.instances:
        record = read_record(out, entry["instance"], onnx_sha)
        assert record is not None and entry["evidence"] == f"evidence/{entry['instance']}.json"
        (attack,) = record["attacks"]
        point = load_point(out, attack["point"])
        assert attack["source"] == "export" and point.shape == (3 * 32 * 32,)
        assert attack["margin"] > 0 and not attack["counterexample"], "the clean points (no PGD here) are robust"
        assert record["bound"]["method"] == "IBP" and isinstance(record["bound"]["min_margin_lower"], float)
        assert record["bound"]["certified"] == (record["bound"]["min_margin_lower"] > 0)
    assert any(read_record(out, e["instance"])["bound"]["certified"] for e in info.instances), (
        "IBP certifies some samples at EPS_SOME"
    )


def test_skip_certified_crown_takes_the_better_of_ibp_and_crown_per_margin(monkeypatch):
    # IBP proves margin 0, CROWN margin 1: neither alone certifies, the two together do (as the
    # reference verification's elementwise max); CROWN-IBP is taken as it is
    lowers = {
        "IBP": torch.tensor([[1.0, -1.0]]),
        "CROWN": torch.tensor([[-2.0, 0.5]]),
        "CROWN-IBP": torch.tensor([[-2.0, 0.5]]),
    }

    class Bounded:
        def margin_lower(self, box, y, method):
            return lowers[method].expand(len(y), 2)

    monkeypatch.setattr("adcert_plugin.bounds.wrap_model", lambda model, shape: Bounded())
    spec = data_module.get_data_spec("mnist")
    x, y = torch.rand(3, 1, 28, 28), torch.zeros(3, dtype=torch.long)
    crown = selection._certifier(torch.nn.Identity(), spec, 0.1, "CROWN")(x, y)
    assert crown.tolist() == [0.5, 0.5, 0.5]
    assert selection._certifier(torch.nn.Identity(), spec, 0.1, "CROWN-IBP")(x, y).tolist() == [-2.0] * 3

"""Run configs: strict loading, overrides and precedence, range checks, presets, example files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from adcert_plugin.errors import ConfigError, RegistryError, UnknownLossError
from adcert_plugin.training import config as C, layering as L, presets as P

EXAMPLES = REPO / "examples" / "configs"


def _write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_follow_the_shi_et_al_recipe():
    cfg = C.TrainConfig()
    assert cfg.seed == 100 and cfg.optim.lr == 5e-4 and cfg.optim.gamma == 0.2 and cfg.optim.grad_clip == 10.0
    assert cfg.schedule.mid == 0.25 and cfg.schedule.beta == 4.0 and cfg.schedule.reg_lambda == 0.5
    assert cfg.model.ibp_init and cfg.device == "cpu"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1


def test_unknown_key_names_key_file_and_close_match(tmp_path):
    path = _write(tmp_path, "schedule:\n  epoch: 3\n")
    with pytest.raises(ConfigError) as err:
        C.load_config(path)
    message = str(err.value)
    assert "'schedule.epoch'" in message and str(path) in message and "'schedule.epochs'" in message


def test_unknown_top_level_key(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'sead'.*did you mean 'seed'"):
        C.load_config(_write(tmp_path, "sead: 1\n"))


def test_type_and_range_errors_name_field_and_source(tmp_path):
    with pytest.raises(ConfigError, match=r"schedule.eps=-0.1 in .*run.yaml: must be in \[0, 1\]"):
        C.load_config(_write(tmp_path, "schedule: {eps: -0.1}\n"))
    with pytest.raises(ConfigError, match=r"optim.grad_acc_steps='two' in .*run.yaml: expected int"):
        C.load_config(_write(tmp_path, "optim: {grad_acc_steps: two}\n"))
    with pytest.raises(ConfigError, match=r"milestones"):
        L.build_config(sets=["optim.milestones=[60, 50]"])
    with pytest.raises(ConfigError, match=r"device='gpu' in --set: must be one of"):
        L.build_config(sets=["device=gpu"])


def test_yaml_exponent_without_dot_is_a_float(tmp_path):
    cfg = C.load_config(_write(tmp_path, "optim: {lr: 5e-4, milestones: [3, 4]}\n"))
    assert cfg.optim.lr == 5e-4 and cfg.optim.milestones == (3, 4)


def test_loss_params_are_checked_by_the_loss(tmp_path):
    with pytest.raises(ConfigError, match="alpha"):
        L.build_config(sets=["loss.name=mtl-ibp", "loss.params.alpha=1.5"])
    with pytest.raises(ConfigError, match="alpah"):
        L.build_config(sets=["loss.name=mtl-ibp", "loss.params.alpah=0.5"])
    with pytest.raises(UnknownLossError, match="mtl-ipb"):
        L.build_config(sets=["loss.name=mtl-ipb"])


def test_loss_needing_a_teacher_requires_one():
    with pytest.raises(ConfigError, match="needs a teacher"):
        L.build_config(sets=["loss.name=ad-cert"])
    cfg = L.build_config(sets=["loss.name=ad-cert", "teacher=t.pt"])
    assert cfg.teacher == "t.pt"


def test_unknown_model_is_a_registry_error():
    with pytest.raises(RegistryError, match="cnn8"):
        L.build_config(sets=["model.name=cnn8"])


def test_precedence_defaults_preset_file_flags_sets(tmp_path):
    path = _write(tmp_path, "seed: 7\nschedule: {epochs: 9, eps: 0.2}\noptim: {lr: 0.01}\n")
    cfg = L.build_config(
        preset="mnist-small-teacher",
        config_file=path,
        flags={"schedule.eps": 0.3, "seed": None},
        sets=["optim.lr=0.02"],
    )
    assert cfg.data.train_subset == 10000  # preset
    assert cfg.seed == 7 and cfg.schedule.epochs == 9  # file over preset (and a None flag is ignored)
    assert cfg.schedule.eps == 0.3  # flag over file
    assert cfg.optim.lr == 0.02  # --set over everything
    assert cfg.optim.gamma == 0.2  # default


def test_changing_the_loss_drops_the_lower_layers_params():
    cfg = L.build_config(preset="mnist-small-adcert", flags={"loss.name": "ibp"})
    assert cfg.loss.name == "ibp" and cfg.loss.params == {}
    kept = L.build_config(preset="mnist-small-adcert", sets=["loss.params.tau=2.0"])
    assert kept.loss.params == {"alpha": 0.5, "tau": 2.0}


def test_set_parses_values_as_yaml_and_rejects_bad_items():
    cfg = L.build_config(sets=["model.kwargs={hidden: [8, 4]}", "data.train_subset=null", "optim.grad_clip=~"])
    assert cfg.model.kwargs == {"hidden": [8, 4]} and cfg.data.train_subset is None and cfg.optim.grad_clip is None
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        L.build_config(sets=["optim.lr"])
    with pytest.raises(ConfigError, match=r"unknown key 'optim.learning_rate' in --set"):
        L.build_config(sets=["optim.learning_rate=1"])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        C.load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="cannot parse"):
        C.load_config(_write(tmp_path, "schedule: [1, 2\n"))
    with pytest.raises(ConfigError, match="mapping"):
        C.load_config(_write(tmp_path, "- 1\n- 2\n"))


def test_json_config_and_round_trip(tmp_path):
    cfg = C.load_config(_write(tmp_path, '{"seed": 5, "schedule": {"epochs": 3}}', "run.json"))
    assert cfg.seed == 5 and cfg.schedule.epochs == 3
    saved = C.save_config(cfg, tmp_path / "out" / "config.yaml")
    assert C.load_config(saved) == cfg
    assert yaml.safe_load(saved.read_text()) == cfg.to_dict()


def test_resume_starts_from_the_saved_config(tmp_path):
    C.save_config(L.build_config(sets=["seed=11", f"out_dir={tmp_path}"]), tmp_path / "config.yaml")
    cfg = L.build_config(flags={"out_dir": tmp_path, "schedule.epochs": 4}, resume=True)
    assert cfg.seed == 11 and cfg.schedule.epochs == 4 and cfg.out_dir == str(tmp_path)


def test_presets_are_registered_and_valid():
    names = P.list_presets()
    for bench in ("mnist-0.1", "mnist-0.3", "cifar10-2-255", "cifar10-8-255", "tinyimagenet-1-255"):
        for loss in ("ibp", "mtl-ibp", "cc-ibp", "cc-dist", "ad-cert", "pgd"):
            assert f"{bench}-{loss}" in names
    assert P.list_presets("mnist-small-*") == [
        "mnist-small-adcert",
        "mnist-small-ibp",
        "mnist-small-mtl-ibp",
        "mnist-small-teacher",
    ]
    cifar2 = L.build_config(preset="cifar10-2-255-mtl-ibp")
    assert cifar2.attack.steps == 8 and cifar2.attack.eps_factor == 2.1 and cifar2.loss.params == {"alpha": 4e-3}
    assert cifar2.schedule.eps_start_epoch == 2 and cifar2.schedule.eps_length_epochs == 80
    adcert = L.build_config(preset="mnist-0.3-ad-cert")
    assert adcert.loss.params["alpha"] == 8e-2 and adcert.optim.l1 == 1e-6 and adcert.schedule.train_eps_mul == 1.334
    assert adcert.teacher == "runs/mnist-0.3-pgd/model.pt"
    with pytest.raises(ConfigError, match="did you mean 'mnist-0.1-ibp'"):
        P.get_preset("mnist-0.1-ibq")


def test_every_example_config_validates_and_matches_its_preset():
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert len(files) >= 30
    for path in files:
        cfg = C.load_config(path)  # no data needed
        preset = path.stem.replace("_", "-")
        if preset in P.list_presets():
            assert cfg == L.build_config(preset=preset), path.name

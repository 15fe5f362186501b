"""The loss registry: names, parameter checks, errors, and third-party entry points."""

from __future__ import annotations

import dataclasses
import textwrap
from dataclasses import dataclass

import pytest
import torch
from conftest import REPO

from adcert_plugin.errors import ConfigError, DuplicateNameError, PluginLoadError, UnknownLossError
from adcert_plugin.losses import create_loss, describe_losses, list_losses, register_loss, registry, unregister_loss
from adcert_plugin.losses.base import Loss, LossOutput


def test_list_losses_fnmatch_sorted():
    assert list_losses("cc-*") == ["cc-dist", "cc-ibp"]
    assert list_losses("*-ibp") == ["cc-ibp", "crown-ibp", "exp-ibp", "mtl-ibp"]
    assert list_losses() == sorted(list_losses())


def test_describe_losses_one_line_each():
    described = describe_losses()
    assert list(described) == list_losses()
    assert all(text and "\n" not in text for text in described.values())


def test_create_loss_builds_validated_config_and_needs():
    loss = create_loss("ad-cert", alpha=0.2, combination="logit")
    assert isinstance(loss, Loss) and loss.name == "ad-cert"
    assert loss.config.alpha == 0.2 and loss.config.combination == "logit"
    assert loss.needs == {"attack", "bounds", "teacher"}
    assert len(loss.modules) == 0
    assert create_loss("cc-dist").needs == {"attack", "bounds", "teacher", "features"}
    assert create_loss("ibp").needs == {"bounds"}


def test_unknown_param_named_with_close_match():
    with pytest.raises(ConfigError, match=r"'alpah'.*did you mean alpha"):
        create_loss("mtl-ibp", alpah=0.1)


def test_unknown_loss_lists_close_matches_and_known_names():
    with pytest.raises(UnknownLossError, match=r"did you mean mtl-ibp.*known losses: ad-cert"):
        create_loss("mtl_ibp")


@pytest.mark.parametrize(
    "name, params, fragment",
    [
        ("mtl-ibp", {"alpha": 1.5}, "alpha=1.5"),
        ("cc-ibp", {"alpha": -0.1}, "alpha=-0.1"),
        ("ad-cert", {"tau": 0.0}, "tau"),
        ("ad-cert", {"combination": "mean"}, "combination='mean'"),
        ("cc-dist", {"distance": "l1"}, "distance='l1'"),
        ("sabr", {"lam": 0.0}, "lam"),
        ("trades", {"beta": "6"}, "expected a number"),
        ("crown-ibp", {"kappa": 2.0}, "kappa"),
    ],
)
def test_out_of_range_values_raise_config_error(name, params, fragment):
    with pytest.raises(ConfigError, match=fragment):
        create_loss(name, **params)


def test_ints_are_accepted_for_floats_and_config_is_replaceable():
    loss = create_loss("crown-ibp", kappa=1)
    assert isinstance(loss.config.kappa, float)
    loss.config = dataclasses.replace(loss.config, kappa=0.25)  # the trainer's per-step κ update
    assert loss.config.kappa == 0.25
    with pytest.raises(ConfigError):
        loss.config = dataclasses.replace(loss.config, kappa=3.0)
    with pytest.raises(ConfigError):
        loss.config = create_loss("mtl-ibp").config


def test_duplicate_name_raises():
    with pytest.raises(DuplicateNameError, match="ibp"):
        register_loss("ibp")(lambda ctx, cfg: None)


def test_register_function_and_class_losses():
    @dataclass(frozen=True)
    class ScaleConfig:
        scale: float = 1.0

    try:

        @register_loss("test-fn-loss", config=ScaleConfig, needs={"attack"})
        def fn_loss(ctx, cfg):
            """A test loss."""

        @register_loss("test-class-loss")
        class ClassLoss(Loss):
            """Another test loss."""

        assert create_loss("test-fn-loss", scale=2).config.scale == 2.0
        assert isinstance(create_loss("test-class-loss"), ClassLoss)
        assert describe_losses()["test-fn-loss"] == "A test loss."
    finally:
        unregister_loss("test-fn-loss")
        unregister_loss("test-class-loss")
    assert "test-fn-loss" not in list_losses()


def test_loss_output_checks():
    with pytest.raises(ValueError, match="0-dim"):
        LossOutput(torch.zeros(3))
    with pytest.raises(ValueError, match="reserved"):
        LossOutput(torch.tensor(1.0), {"reg": torch.tensor(0.0)})
    out = LossOutput(torch.tensor(1.0, requires_grad=True), {"lb": torch.tensor(2.0, requires_grad=True)})
    assert not out.parts["lb"].requires_grad


# -- entry points --------------------------------------------------------------------------------

PLUGIN = """
from dataclasses import dataclass

import torch.nn.functional as F

from adcert_plugin.losses import register_loss
from adcert_plugin.losses.base import LossOutput


@dataclass(frozen=True)
class MyConfig:
    scale: float = 1.0


def register():
    @register_loss("myloss", config=MyConfig, needs={"attack"}, description="a plugin loss")
    def myloss(ctx, cfg):
        ce = F.cross_entropy(ctx.student_logits("adv"), ctx.y)
        return LossOutput(cfg.scale * ce, {"ce_adv": ce})
"""


@pytest.fixture
def plugin_dist(tmp_path, monkeypatch):
    """A fake installed distribution declaring two adcert.losses entry points, one broken."""
    (tmp_path / "mypkg_testloss.py").write_text(PLUGIN)
    info = tmp_path / "mypkg_testloss-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mypkg-testloss\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent("""\
        [adcert.losses]
        myloss = mypkg_testloss:register
        brokenloss = mypkg_does_not_exist:register
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry._forget_entry_points()
    yield tmp_path
    unregister_loss("myloss")
    registry._forget_entry_points()


def test_entry_point_loss_is_found_by_name(plugin_dist, batch):
    from conftest import tiny_net

    from adcert_plugin.attacks import AttackConfig
    from adcert_plugin.bounds import wrap_model
    from adcert_plugin.data import DataSpec
    from adcert_plugin.losses.base import LossContext

    loss = create_loss("myloss", scale=2.0)
    assert loss.config.scale == 2.0 and loss.needs == {"attack"}
    student = tiny_net("mlp").train()
    ctx = LossContext(
        student,
        wrap_model(student, (1, 8, 8)),
        *batch,
        0.05,
        DataSpec("tiny", (1, 8, 8), 4, (0.5,), (0.25,)),
        attack=AttackConfig(),
        generator=torch.Generator().manual_seed(0),
    )
    out = loss(ctx)
    assert out.loss.item() == pytest.approx(2 * out.parts["ce_adv"].item())
    assert "myloss" in list_losses() and describe_losses()["myloss"] == "a plugin loss"


def test_broken_entry_point_fails_only_when_requested(plugin_dist):
    assert "brokenloss" not in list_losses()  # listing works despite the broken plugin
    create_loss("ibp")
    with pytest.raises(PluginLoadError, match="brokenloss.*mypkg_does_not_exist"):
        create_loss("brokenloss")
    with pytest.raises(UnknownLossError):
        create_loss("nosuchloss")


def test_example_plugin_package_registers_through_its_entry_point(tmp_path, monkeypatch):
    """examples/custom_loss_plugin, installed as a distribution, is found by name."""
    import shutil

    src = REPO / "examples" / "custom_loss_plugin" / "adcert_hinge"
    shutil.copytree(src, tmp_path / "adcert_hinge")
    dist = tmp_path / "adcert_hinge-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: adcert-hinge\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[adcert.losses]\nibp-hinge = adcert_hinge:register\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry._forget_entry_points()
    try:
        loss = registry.create_loss("ibp-hinge", alpha=0.25)
        assert loss.config.alpha == 0.25 and loss.needs == {"attack", "bounds"}
        assert "ibp-hinge" in registry.list_losses()
    finally:
        registry.unregister_loss("ibp-hinge")
        registry._forget_entry_points()

"""Model selection never looks at the test images adcert-eval reports (issue 36)."""

from __future__ import annotations

import json

import pytest
from train_fixtures import tiny_config, write_fake_mnist

from adcert_plugin.training import build_config, list_presets, train


@pytest.mark.parametrize("preset", list_presets("mnist-small-*"))
def test_the_small_presets_select_on_a_validation_holdout(preset):
    cfg = build_config(preset=preset)
    assert cfg.data.validation_size >= 1000  # best.pt and the per-epoch check use held-out training images


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_fake_mnist(tmp_path_factory.mktemp("data"))


def test_a_run_says_which_images_it_selected_on(data_root, tmp_path):
    held = train(tiny_config(data_root, tmp_path / "held", epochs=1, extra={"data.validation_size": 40}))
    assert held.summary["selected_on"] == "validation"
    assert "on validation images" in held.describe() and "optimistic" not in held.describe()
    plain = train(tiny_config(data_root, tmp_path / "plain", epochs=1))
    assert json.loads((tmp_path / "plain" / "summary.json").read_text())["selected_on"] == "test"
    assert "picked on test images" in plain.describe() and "report model.pt" in plain.describe()

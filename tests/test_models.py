"""Model zoo shapes, IBP initialisation and the penultimate-feature convention."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from adcert_plugin.errors import CheckpointError, UnknownModelError
from adcert_plugin.models import create_model, feature_width, ibp_init, list_models, penultimate_features
from adcert_plugin.training import arch_record, load_model, save_checkpoint


@pytest.mark.parametrize(
    "name,shape,flat",
    [("cnn7", (1, 28, 28), 128 * 14 * 14), ("cnn7", (3, 32, 32), 32768), ("cnn7", (3, 64, 64), 32768)],
)
def test_cnn7_layout(name, shape, flat):
    model = create_model(name, shape, 10, width=64)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert linears[0].in_features == flat and linears[0].out_features == 512
    bns = [m for m in model if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == 6  # after every layer but the last
    assert isinstance(model[-1], nn.Linear) and model[-1].out_features == 10


@pytest.mark.parametrize("name", ["cnn7", "small-cnn", "mlp"])
def test_penultimate_features_feed_the_head(name):
    torch.manual_seed(0)
    model = create_model(name, (1, 28, 28), 10, **({"width": 4, "linear_size": 32} if name == "cnn7" else {})).eval()
    x = torch.randn(3, 1, 28, 28)
    features = penultimate_features(model, x)
    assert features.shape == (3, feature_width(model))
    assert (features >= 0).all()  # post-ReLU
    torch.testing.assert_close(model[-1](features), model(x))


def test_ibp_init_std_and_untouched_last_layer():
    torch.manual_seed(0)
    model = create_model("mlp", (1, 28, 28), 10, hidden=(400, 400))
    last = model[-1].weight.clone()
    ibp_init(model)
    first = model[1].weight
    assert first.std().item() == pytest.approx(math.sqrt(2 * math.pi) / 784, rel=0.05)
    assert torch.equal(model[-1].weight, last)


def test_unknown_model_lists_known_names():
    with pytest.raises(UnknownModelError, match="small-cnn"):
        create_model("resnet-1000", (1, 28, 28), 10)
    assert {"cnn7", "small-cnn", "mlp"} <= set(list_models())


def test_checkpoint_round_trip_is_weights_only(tmp_path):
    model = create_model("small-cnn", (1, 28, 28), 10, bn=True)
    path = save_checkpoint(
        tmp_path / "m.pt",
        model,
        arch_record("small-cnn", (1, 28, 28), 10, {"bn": True}),
        dataset="mnist",
        config={"eps": 0.1},
    )
    loaded, record = load_model(path)
    assert record["dataset"] == "mnist" and record["config"]["eps"] == 0.1
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temporary file


def test_checkpoint_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "adcert-checkpoint", "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="pickled Python objects") as err:
        load_model(path)
    assert "weights_only" not in str(err.value)  # torch's "re-run with weights_only=False" is never passed on


def test_plain_state_dict_needs_an_architecture(tmp_path):
    model = create_model("mlp", (1, 28, 28), 10)
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="--arch"):
        load_model(tmp_path / "plain.pt")
    loaded, _ = load_model(tmp_path / "plain.pt", arch="mlp", in_shape=(1, 28, 28), num_classes=10)
    assert torch.equal(loaded[1].weight, model[1].weight)


class Evil:
    def __reduce__(self):
        return (print, ("unpickled code ran",))

"""ONNX export: BN folding, onnxruntime equivalence, refusal of mismatching exports."""

from __future__ import annotations

import onnx
import pytest
import torch
from onnx import helper
from torch import nn

from adcert_plugin.errors import ExportError, UnsupportedModelError
from adcert_plugin.models import create_model
from vnncomp.export import onnx_export
from vnncomp.export.onnx_export import check_onnx_matches, export_onnx, fold_batchnorm, run_onnx, strip_training_mode

CIFAR_SHAPE = (3, 16, 16)


def _bn_cnn(seed: int = 0) -> nn.Sequential:
    """small-cnn with BN whose running statistics and affine parameters are far from identity."""
    torch.manual_seed(seed)
    model = create_model("small-cnn", CIFAR_SHAPE, 10, width=4, linear_size=16, bn=True)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, *CIFAR_SHAPE) * 2 + 0.5)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model.eval()


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return create_model("mlp", (1, 8, 8), 4, hidden=(16, 12)).eval()


def _inputs(shape, n=6, seed=1):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


def test_fold_batchnorm_preserves_eval_outputs_and_removes_bn():
    model = _bn_cnn()
    x = _inputs(CIFAR_SHAPE)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()), "input model must be untouched"


def test_fold_batchnorm_changes_output_if_bn_ignored():
    """Guard: dropping the BN layers instead of folding them would change the outputs."""
    model = _bn_cnn()
    stripped = nn.Sequential(*[m for m in model if not isinstance(m, nn.modules.batchnorm._BatchNorm)]).eval()
    x = _inputs(CIFAR_SHAPE)
    with torch.no_grad():
        assert (stripped(x) - model(x)).abs().max() > 1e-2


def test_fold_batchnorm_refuses_bn_after_relu():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.BatchNorm1d(4), nn.Linear(4, 2)).eval()
    with pytest.raises(UnsupportedModelError, match="cannot be folded"):
        fold_batchnorm(model)


@pytest.mark.parametrize("kind", ["bn-cnn", "mlp"])
def test_export_matches_pytorch(tmp_path, kind):
    model, shape = (_bn_cnn(), CIFAR_SHAPE) if kind == "bn-cnn" else (_mlp(), (1, 8, 8))
    x = _inputs(shape)
    result = export_onnx(model, shape, tmp_path / "net.onnx", check_inputs=x)
    assert result.max_abs_diff <= 1e-5
    with torch.no_grad():
        expected = model(x).numpy()
    assert abs(run_onnx(result.path, x.numpy()) - expected).max() <= 1e-5
    graph = onnx.load(str(result.path)).graph
    assert [n.op_type for n in graph.node if n.op_type in ("BatchNormalization", "Dropout")] == []
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["output"]
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, *shape]
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim] == [1, expected.shape[1]]
    assert onnx.load(str(result.path)).opset_import[0].version == 13
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx"]


def test_export_refuses_injected_mismatch(tmp_path, monkeypatch):
    model = _mlp()

    def bad_fold(m):
        folded = fold_batchnorm(m)
        with torch.no_grad():
            folded[-1].bias[0] += 1e-3
        return folded

    monkeypatch.setattr(onnx_export, "fold_batchnorm", bad_fold)
    with pytest.raises(ExportError, match="differ from PyTorch"):
        export_onnx(model, (1, 8, 8), tmp_path / "net.onnx")
    assert list(tmp_path.iterdir()) == []


def test_check_onnx_matches_deletes_file_of_other_model(tmp_path):
    path = export_onnx(_mlp(seed=0), (1, 8, 8), tmp_path / "a.onnx").path
    with pytest.raises(ExportError):
        check_onnx_matches(_mlp(seed=1), path, _inputs((1, 8, 8)))
    assert not path.exists()


def test_export_rejects_opset_outside_range(tmp_path):
    with pytest.raises(ExportError, match="opset 18"):
        export_onnx(_mlp(), (1, 8, 8), tmp_path / "x.onnx", opset=18)


def test_strip_training_mode_removes_attribute():
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-5, training_mode=0)
    other = helper.make_node("Relu", ["y"], ["z"])
    graph = helper.make_graph([node, other], "g", [], [])
    model = helper.make_model(graph)
    assert strip_training_mode(model) == 1
    assert [a.name for a in model.graph.node[0].attribute] == ["epsilon"]
    assert strip_training_mode(model) == 0

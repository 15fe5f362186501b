"""ONNX export for verifiers: fold BatchNorm, export in eval mode, check against PyTorch.

The exported graph has one float32 input ``"input"`` of shape ``[1, C, H, W]`` (NCHW,
normalised values: normalisation lives outside the graph) and one output ``"output"``
of shape ``[1, K]`` (raw logits). BatchNorm is folded into the preceding Conv2d/Linear
before export, so no ``BatchNormalization`` node reaches the verifier (formats.md §4.1).
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from adcert_plugin.attacks import bn_scale_shift
from adcert_plugin.errors import ExportError, OutputError, UnsupportedModelError
from adcert_plugin.io import creation_mode, output_error

from .onnx_run import onnx_input_shape, run_onnx

__all__ = [
    "OnnxExport",
    "check_onnx_matches",
    "creation_mode",
    "export_onnx",
    "fold_batchnorm",
    "onnx_input_shape",
    "run_onnx",
    "strip_training_mode",
]

logger = logging.getLogger(__name__)

OPSETS = range(13, 18)
ATOL = 1e-5
_STRIP_TRAINING_MODE = ("BatchNormalization", "Dropout")


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote.

    Attributes:
        path: The ONNX file.
        opset: Its opset version.
        max_abs_diff: Largest |onnxruntime − PyTorch| logit difference over the check inputs.
    """

    path: Path
    opset: int
    max_abs_diff: float


def _fold_pair(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    """A copy of Conv2d/Linear ``layer`` whose output equals ``bn(layer(x))`` in eval mode."""
    scale, shift = bn_scale_shift(bn, torch.float64)
    folded = copy.deepcopy(layer)
    weight = layer.weight.detach().double()
    bias = layer.bias.detach().double() if layer.bias is not None else torch.zeros_like(scale)
    view = [-1] + [1] * (weight.dim() - 1)
    new_weight = weight * scale.view(view)
    new_bias = bias * scale + shift
    if folded.bias is None:
        folded.bias = nn.Parameter(torch.zeros(scale.shape[0], dtype=layer.weight.dtype))
    with torch.no_grad():
        folded.weight.copy_(new_weight.to(layer.weight.dtype))
        folded.bias.copy_(new_bias.to(layer.weight.dtype))
    return folded


def _foldable(prev: nn.Module | None, bn: nn.Module) -> bool:
    if isinstance(bn, nn.BatchNorm2d):
        return isinstance(prev, nn.Conv2d) and prev.out_channels == bn.num_features
    return isinstance(prev, nn.Linear) and prev.out_features == bn.num_features


def fold_batchnorm(model: nn.Module) -> nn.Sequential:
    """Fold every BatchNorm into the Conv2d/Linear right before it (eval-mode statistics).

    The input model is not modified. Nested ``nn.Sequential`` blocks are folded too.

    Args:
        model: An ``nn.Sequential`` (adcert models are).

    Returns:
        A new ``nn.Sequential`` in eval mode with no BatchNorm module, computing the same
        function as ``model.eval()`` up to float rounding.

    Raises:
        UnsupportedModelError: A BatchNorm that does not follow a matching Conv2d (BN2d) or
            Linear (BN1d), or one without running statistics.
    """
    if not isinstance(model, nn.Sequential):
        raise UnsupportedModelError(f"export expects an nn.Sequential, got {type(model).__name__}")
    layers: list[nn.Module] = []
    for child in model:
        if isinstance(child, nn.Sequential):
            child = fold_batchnorm(child)
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
            prev = layers[-1] if layers else None
            if not _foldable(prev, child):
                raise UnsupportedModelError(
                    f"{child} follows {type(prev).__name__}, not a matching "
                    "Conv2d/Linear; it cannot be folded for export"
                )
            layers[-1] = _fold_pair(prev, child)
        elif isinstance(child, nn.modules.batchnorm._BatchNorm):
            raise UnsupportedModelError(f"{type(child).__name__} cannot be folded for export")
        else:
            layers.append(copy.deepcopy(child))
    return nn.Sequential(*layers).eval()


def strip_training_mode(onnx_model) -> int:
    """Remove ``training_mode`` attributes from BatchNormalization/Dropout nodes in place.

    Returns:
        The number of attributes removed.
    """
    removed = 0
    for node in onnx_model.graph.node:
        if node.op_type not in _STRIP_TRAINING_MODE:
            continue
        keep = [a for a in node.attribute if a.name != "training_mode"]
        removed += len(node.attribute) - len(keep)
        del node.attribute[:]
        node.attribute.extend(keep)
    return removed


def check_onnx_matches(
    model: nn.Module, path: str | Path, inputs: torch.Tensor, atol: float = ATOL, delete_on_failure: bool = True
) -> float:
    """Compare onnxruntime's logits with PyTorch's (eval mode) on real inputs.

    Args:
        model: The PyTorch model (evaluated in eval mode on a copy).
        path: ONNX file to check.
        inputs: Normalised inputs ``[N, C, H, W]``.
        atol: Largest allowed absolute logit difference.
        delete_on_failure: Remove ``path`` when the check fails.

    Returns:
        The largest absolute difference.

    Raises:
        ExportError: The difference exceeds ``atol`` (the file is deleted first).
    """
    reference = copy.deepcopy(model).eval()
    with torch.no_grad():
        expected = reference(inputs.float()).numpy()
    actual = run_onnx(path, inputs.numpy())
    if actual.shape != expected.shape:
        _fail(path, f"ONNX output shape {actual.shape} != PyTorch {expected.shape}", delete_on_failure)
    diff = float(np.max(np.abs(actual - expected))) if actual.size else 0.0
    if not np.isfinite(diff) or diff > atol:
        _fail(
            path,
            f"ONNX logits differ from PyTorch by {diff:.3g} > {atol:g} on {len(inputs)} "
            "inputs; the model uses an op that does not export faithfully",
            delete_on_failure,
        )
    logger.info("ONNX %s matches PyTorch: max |diff| = %.3g on %d inputs", path, diff, len(inputs))
    return diff


def _fail(path: str | Path, message: str, delete: bool) -> None:
    if delete:
        Path(path).unlink(missing_ok=True)
    raise ExportError(f"{path}: {message}")


def _torch_export(model: nn.Module, in_shape: Sequence[int], path: Path, opset: int) -> None:
    dummy = torch.zeros(1, *in_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model,
                (dummy,),
                str(path),
                input_names=["input"],
                output_names=["output"],
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        except OSError as err:  # a full disk or a read-only folder is not the opset's fault
            mapped = output_error(err, f"the ONNX file {path}")
            if mapped is None:
                raise
            raise mapped from err
        except Exception as err:  # the exporter raises many types; wrap at the boundary
            if "No space left" in str(err) or "write failed" in str(err):  # torch's C++ writer, not an OSError
                raise OutputError(
                    f"cannot write the ONNX file {path}: the disk is full: free some space (or "
                    "choose a folder on another disk) and run it again"
                ) from err
            raise ExportError(f"torch.onnx.export failed for opset {opset}: {err}") from err


def _check_and_clean(path: Path) -> None:
    import onnx

    onnx_model = onnx.load(str(path))
    removed = strip_training_mode(onnx_model)
    if removed:
        onnx.save(onnx_model, str(path))
        logger.info("stripped %d training_mode attributes from %s", removed, path)
    try:
        onnx.checker.check_model(onnx_model)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"{path}: onnx.checker rejects the export: {err}") from err
    inputs, outputs = onnx_model.graph.input, onnx_model.graph.output
    if len(inputs) != 1 or len(outputs) != 1:
        raise ExportError(f"{path}: expected one input and one output, got {len(inputs)} and {len(outputs)}")


def export_onnx(
    model: nn.Module,
    in_shape: Sequence[int],
    path: str | Path,
    opset: int = 13,
    check_inputs: torch.Tensor | None = None,
    atol: float = ATOL,
) -> OnnxExport:
    """Export ``model`` (BN folded, eval mode) to ONNX and check it with onnxruntime.

    The file is written to a temporary name and renamed only once every check passed.

    Args:
        model: An ``nn.Sequential`` taking normalised ``[B, C, H, W]`` inputs.
        in_shape: ``(C, H, W)``.
        path: Destination ``.onnx`` file.
        opset: ONNX opset, 13..17 (TorchScript exporter).
        check_inputs: Normalised inputs ``[N, C, H, W]`` for the equivalence check; a few
            random points are always added.
        atol: Largest allowed absolute logit difference to the *unfolded* model.

    Returns:
        An :class:`OnnxExport` record.

    Raises:
        ExportError: Bad opset, exporter failure, checker failure, or a logit mismatch.
        UnsupportedModelError: BatchNorm that cannot be folded.
    """
    if opset not in OPSETS:
        raise ExportError(
            f"opset {opset} is outside {OPSETS.start}..{OPSETS.stop - 1} (TorchScript exporter, formats.md §4.1)"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    reference = copy.deepcopy(model).cpu().eval()
    folded = fold_batchnorm(reference)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _torch_export(folded, in_shape, tmp, opset)
        _check_and_clean(tmp)
        generator = torch.Generator().manual_seed(0)
        probe = torch.randn(2, *in_shape, generator=generator)
        inputs = probe if check_inputs is None else torch.cat([check_inputs.detach().cpu().float(), probe])
        diff = check_onnx_matches(reference, tmp, inputs, atol=atol)
        tmp.chmod(creation_mode(0o666))  # mkstemp files are private; the export should not be
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return OnnxExport(path=path, opset=opset, max_abs_diff=diff)

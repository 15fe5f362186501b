"""Run an exported ONNX network with onnxruntime (no torch import: verifier workers use it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adcert_plugin.errors import ExportError


def onnx_input_shape(path: str | Path) -> tuple[int, ...]:
    """Input shape of an ONNX file with the batch dimension set to 1 (symbolic dims → 1)."""
    import onnx

    try:
        graph_input = onnx.load(str(path), load_external_data=False).graph.input[0]
    except Exception as err:  # onnx raises DecodeError and others for bad files
        raise ExportError(f"cannot read ONNX file {path}: {err}") from err
    dims = [d.dim_value if d.dim_value > 0 else 1 for d in graph_input.type.tensor_type.shape.dim]
    return (1, *dims[1:])


def run_onnx(path: str | Path, x_norm: np.ndarray) -> np.ndarray:
    """Logits of the ONNX network, one sample at a time (the graph has batch 1).

    Args:
        path: ONNX file.
        x_norm: Normalised inputs ``[N, C, H, W]`` (any float dtype; cast to float32).

    Returns:
        float32 logits ``[N, K]``.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1  # batch-1 checks of small nets: threads only add overhead
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.asarray(x_norm, dtype=np.float32)
    rows = [session.run(None, {name: x[i : i + 1]})[0].reshape(1, -1) for i in range(len(x))]
    return np.concatenate(rows, axis=0)

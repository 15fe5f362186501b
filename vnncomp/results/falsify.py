"""Look for a counterexample to a VNN-LIB property on the ONNX network itself.

A verifier's ``unsat`` is only trusted after an attack on the exported network found nothing.
The ONNX graph is read into torch (the linear/ReLU operator set adcert exports and most
certified-training benchmarks use), and PGD runs over the property's input box against every
disjunct of its output constraint at once: for disjunct k, ``A_k·y ≤ b_k`` holds when
``v_k(x) = max_i (A_k·y(x) − b_k)_i ≤ 0``, so each restart descends one ``v_k``. The best
point is then re-checked with onnxruntime (:func:`check_counterexample`), so what this module
reports as a counterexample is one in the VNN-COMP sense, not a torch artefact.

Why per disjunct: an untargeted attack (cross-entropy or margin loss, as adcert-eval's PGD-40)
follows the gradient of whichever wrong class is closest, and misses a counterexample that lies
towards a class far behind at the start; descending every disjunct separately does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from adcert_plugin.errors import VerifierError

from ..export.evidence import CEX_ATOL, point_outcome
from ..export.onnx_run import onnx_input_shape
from ..export.vnnlib_reader import parse_v1

__all__ = ["RESTARTS", "STEPS", "Falsification", "OnnxTorch", "falsify"]

STEPS = 100
RESTARTS = 10  # random starts per disjunct
_MAX_STARTS = 1024  # per run; fewer restarts per disjunct beyond that
_DEEP = 1e-3  # stop early only once a point is this far inside the unsafe region (float slack)


class OnnxTorch:
    """An ONNX graph of Conv/Gemm/MatMul/Add/Sub/Mul/Div/Relu/Flatten/Reshape/... run with torch ops.

    Raises:
        VerifierError: The graph uses an operator outside that set (the message names it).
    """

    def __init__(self, path: str | Path):
        import onnx
        from onnx import numpy_helper

        try:
            model = onnx.load(str(path))
        except Exception as err:  # onnx raises DecodeError and friends
            raise VerifierError(f"cannot read ONNX file {path}: {err}") from err
        graph = model.graph
        self.constants = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
        self.input_name = next(i.name for i in graph.input if i.name not in self.constants)
        self.output_name = graph.output[0].name
        self.nodes = list(graph.node)
        unknown = sorted({n.op_type for n in self.nodes} - set(_OPS))
        if unknown:
            raise VerifierError(f"{path}: operators {unknown} are not supported by adcert's attack")
        self.attributes = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in self.nodes]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        values = dict(self.constants)
        values[self.input_name] = x
        for node, attrs in zip(self.nodes, self.attributes):
            inputs = [values[name] if name else None for name in node.input]
            outputs = _OPS[node.op_type](inputs, attrs)
            for name, value in zip(node.output, outputs if isinstance(outputs, tuple) else (outputs,)):
                values[name] = value
        return values[self.output_name]


def _float(t):
    return t.float() if t.is_floating_point() else t


def _conv(inputs, a):
    x, w = inputs[0], _float(inputs[1])
    bias = inputs[2] if len(inputs) > 2 else None
    pads = a.get("pads", [0] * (2 * (w.dim() - 2)))
    half = len(pads) // 2
    if pads[:half] != pads[half:]:  # asymmetric padding: pad explicitly first
        x = F.pad(x, [p for i in reversed(range(half)) for p in (pads[i], pads[i + half])])
        pads = [0] * len(pads)
    return F.conv2d(x, w, bias, a.get("strides", 1), pads[:half], a.get("dilations", 1), a.get("group", 1))


def _gemm(inputs, a):
    x, w = inputs[0], _float(inputs[1])
    x = x.t() if a.get("transA", 0) else x
    w = w.t() if a.get("transB", 0) else w
    out = a.get("alpha", 1.0) * x @ w
    return out + a.get("beta", 1.0) * inputs[2] if len(inputs) > 2 and inputs[2] is not None else out


def _flatten(inputs, a):
    axis = a.get("axis", 1)
    x = inputs[0]
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


def _reshape(inputs, a):
    shape = [int(s) for s in inputs[1].tolist()]
    x = inputs[0]
    shape = [x.shape[i] if s == 0 and not a.get("allowzero", 0) else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _batchnorm(inputs, a):
    x, scale, bias, mean, var = inputs[:5]
    shape = [1, -1] + [1] * (x.dim() - 2)
    factor = scale / torch.sqrt(var + a.get("epsilon", 1e-5))
    return (x - mean.view(shape)) * factor.view(shape) + bias.view(shape)


_OPS = {
    "Conv": _conv,
    "Gemm": _gemm,
    "MatMul": lambda i, a: i[0] @ _float(i[1]),
    "Add": lambda i, a: i[0] + i[1],
    "Sub": lambda i, a: i[0] - i[1],
    "Mul": lambda i, a: i[0] * i[1],
    "Div": lambda i, a: i[0] / i[1],
    "Neg": lambda i, a: -i[0],
    "Relu": lambda i, a: F.relu(i[0]),
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Identity": lambda i, a: i[0],
    "Dropout": lambda i, a: i[0],
    "BatchNormalization": _batchnorm,
    "Constant": lambda i, a: torch.as_tensor(_constant_value(a)),
    "Transpose": lambda i, a: i[0].permute(*a["perm"]) if "perm" in a else i[0].permute(*reversed(range(i[0].dim()))),
    "Squeeze": lambda i, a: i[0].squeeze(),
    "Unsqueeze": lambda i, a: i[0].unsqueeze(int((a.get("axes") or i[1].tolist())[0])),
}


def _constant_value(a):
    from onnx import numpy_helper

    if "value" in a:
        return numpy_helper.to_array(a["value"]).copy()
    for key in ("value_float", "value_int", "value_floats", "value_ints"):
        if key in a:
            return np.asarray(a[key])
    raise VerifierError(f"unsupported Constant attributes {sorted(a)}")


@dataclass(frozen=True)
class Falsification:
    """What :func:`falsify` found.

    Attributes:
        found: A point that satisfies the property's output constraint (re-checked with onnxruntime).
        point: The best input found ``[n]`` (flattened, normalised space).
        margin: The property margin at that point on the ONNX network (≤ 0: a counterexample);
            for robustness z_label − max_j z_j.
        margins: Per disjunct, the least margin any start descending it reached (torch).
        method: How the search ran.
        note: Why no counterexample, or why the search could not run.
    """

    found: bool
    point: np.ndarray | None
    margin: float
    margins: tuple[float, ...] = ()
    method: str = ""
    note: str = ""


def _violation(logits: torch.Tensor, polytopes) -> torch.Tensor:
    """``[N, K]``: v_k(x) = max_i (A_k·y(x) − b_k)_i for every disjunct k."""
    return torch.stack([(logits @ a.T - b).amax(1) for a, b in polytopes], 1)


def _starts(lower, upper, shape, k: int, restarts: int, seed: int, start) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    starts = [lower + torch.rand((restarts * k, *shape), generator=gen) * (upper - lower), (lower + upper) / 2]
    if start is not None:
        starts.append(torch.as_tensor(np.asarray(start), dtype=torch.float32).view(1, *shape).clamp(lower, upper))
    return torch.cat(starts)


def _descend(net, x, lower, upper, polytopes, steps: int):
    """Sign-gradient descent of each start's own disjunct; (best points, best min_k v, per-disjunct best)."""
    k = len(polytopes)
    target = torch.arange(len(x)) % k  # which disjunct each start descends
    best_x, best_v = x.clone(), torch.full((len(x),), float("inf"))
    per_disjunct = torch.full((k,), float("inf"))
    width = (upper - lower) / 2
    for step in range(steps + 1):
        x.requires_grad_(True)
        with torch.enable_grad():
            v = _violation(net(x), polytopes)
            objective = v.gather(1, target[:, None]).squeeze(1)
            (grad,) = torch.autograd.grad(objective.sum(), x)
        with torch.no_grad():
            per_disjunct = torch.minimum(per_disjunct, v.amin(0))
            reached = v.amin(1)
            better = reached < best_v
            best_x[better], best_v[better] = x.detach()[better], reached[better]
            if step == steps or bool((best_v <= -_DEEP).any()):
                break
            size = width * (0.5 * (1 - step / steps) + 0.02)
            x = torch.maximum(torch.minimum(x.detach() - size * grad.sign(), upper), lower)
    return best_x, best_v, per_disjunct


def falsify(
    onnx_path: str | Path,
    vnnlib_path: str | Path,
    steps: int = STEPS,
    restarts: int = RESTARTS,
    seed: int = 0,
    start: np.ndarray | None = None,
) -> Falsification:
    """PGD over the property's box for a point satisfying some output disjunct.

    Every disjunct gets ``restarts`` random starts (plus the box centre and ``start``, e.g. an
    attack point stored at export); steps are sign-gradient with a step size that decays from
    half the box width. The best points are re-checked on the ONNX network with onnxruntime.

    Raises:
        VerifierError: The ONNX graph uses an operator the attack does not support.
    """
    spec = parse_v1(Path(vnnlib_path).read_text())
    net = OnnxTorch(onnx_path)
    shape = onnx_input_shape(onnx_path)[1:]
    lower = torch.as_tensor(spec.lower, dtype=torch.float32).view(1, *shape)
    upper = torch.as_tensor(spec.upper, dtype=torch.float32).view(1, *shape)
    polytopes = [
        (torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)) for a, b in spec.polytopes
    ]
    k = len(polytopes)
    restarts = max(1, min(restarts, _MAX_STARTS // k))
    x = _starts(lower, upper, shape, k, restarts, seed, start)
    method = (
        f"PGD on the ONNX graph (torch), every disjunct: {restarts} random starts + centre"
        f"{' + stored point' if start is not None else ''}, {steps} sign steps; re-checked with onnxruntime"
    )
    best_x, best_v, per_disjunct = _descend(net, x, lower, upper, polytopes, steps)
    margins = tuple(float(m) for m in per_disjunct)
    candidates = [int(i) for i in torch.argsort(best_v)[:3]]
    point = best_x[candidates[0]].double().flatten().numpy()
    margin = float(best_v[candidates[0]])
    for i in candidates:
        if float(best_v[i]) > CEX_ATOL:
            break
        point = best_x[i].double().flatten().numpy()
        margin, valid, _why = point_outcome(onnx_path, vnnlib_path, point)
        if valid:
            return Falsification(True, point, margin, margins, method)
    if float(best_v.min()) > 0:
        return Falsification(False, point, margin, margins, method, f"none found ({len(x)} starts)")
    return Falsification(False, point, margin, margins, method, "torch found points onnxruntime rejects")

"""VNN-LIB local-robustness properties: build, render (1.0 and 2.0), read back, validate.

A property asserts the *counterexample region*: an input in the box whose logit for some
class j ≠ t is at least the true-class logit t. ``unsat`` means robust. The box is in
normalised space: ``(clip(x ± eps, 0, 1) − mean_c) / std_c`` per channel, with eps in
pixel space (formats.md §1.3, §1.4). Inputs are flattened in C-order over ``[C, H, W]``.

Number format: plain decimals that round-trip to the float64 bound (shortest repr),
never scientific notation, never a bare integer (``0.0``, not ``0``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from adcert_plugin.errors import ExportError

from .vnnlib_reader import VnnlibSpec, parse_v1, robustness_polytopes, same_polytopes, validate_v1

__all__ = [
    "Property",
    "VnnlibSpec",
    "check_v2",
    "format_number",
    "parse_v1",
    "property_from_sample",
    "render_v1",
    "render_v2",
    "robustness_polytopes",
    "validate_v1",
]

# After the one-ulp outward step, bounds are rounded outward to this many decimals: the
# box grows by at most 1e-12 (covering float64 rounding of clip/normalise) and every
# number stays short and exact ("-0.000000000001", "0.015000000001", "0.0").
OUTWARD_DECIMALS = 12


@dataclass(frozen=True)
class Property:
    """One local-robustness query.

    Attributes:
        lower: float64 ``[C*H*W]`` lower bounds, normalised, C-order flattened.
        upper: float64 ``[C*H*W]`` upper bounds.
        label: True class t.
        num_classes: K.
        shape: ``(C, H, W)``.
        comment: Free text written as ``;`` comment lines.
    """

    lower: np.ndarray
    upper: np.ndarray
    label: int
    num_classes: int
    shape: tuple[int, int, int]
    comment: str = ""

    def polytopes(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The K−1 disjuncts as ``(A [1, K], b [1])`` with A·y ≤ b: row e_t − e_j, b = 0."""
        return robustness_polytopes(self.label, self.num_classes)


def _channel(values: Sequence[float], channels: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1, 1, 1)
    if arr.shape[0] != channels:
        raise ExportError(f"mean/std have {arr.shape[0]} entries but the image has {channels} channels")
    return arr


def _round_decimals(values: np.ndarray, down: bool) -> np.ndarray:
    """Round outward to the grid of 10**-OUTWARD_DECIMALS; the result never moves inward.

    ``k / 10**d`` is the double nearest the decimal, so it prints as that short decimal.
    Values too large for an exact ``k`` (|v| ≥ 1000) are kept as they are.
    """
    scale = 10.0**OUTWARD_DECIMALS
    steps = np.floor(values * scale) if down else np.ceil(values * scale)
    rounded = steps / scale
    wrong = rounded > values if down else rounded < values
    rounded = np.where(wrong, (steps - 1 if down else steps + 1) / scale, rounded)
    return np.where(np.abs(values) < 1e3, rounded, values)


def property_from_sample(
    x_pixel, label: int, eps: float, mean: Sequence[float], std: Sequence[float], num_classes: int, comment: str = ""
) -> Property:
    """The pixel-space eps-ball around ``x_pixel`` as a normalised box, rounded outward.

    Bounds are computed in float64 and also as the model sees them (float32, exactly like
    :meth:`InputBox.from_pixels`); the written bound is the outer of the two, moved one ulp
    outward with ``np.nextafter``, then rounded outward to :data:`OUTWARD_DECIMALS` decimals.

    Args:
        x_pixel: Image ``[C, H, W]`` (or ``[1, C, H, W]``) in [0, 1].
        label: True class.
        eps: L∞ radius in pixel space.
        mean: Per-channel mean (pixel space).
        std: Per-channel std (pixel space).
        num_classes: K.
        comment: Comment text for the file header.

    Returns:
        A :class:`Property`.
    """
    import torch

    from adcert_plugin.bounds.spec import InputBox

    x32 = torch.as_tensor(np.asarray(x_pixel, dtype=np.float32)).reshape(-1, *np.shape(x_pixel)[-2:])
    channels, height, width = (int(v) for v in x32.shape)
    shape = (channels, height, width)
    if not 0 <= label < num_classes or eps < 0:
        raise ExportError(f"bad property: label {label} (K={num_classes}), eps {eps}")
    x64 = x32.numpy().astype(np.float64)
    m, s = _channel(mean, shape[0]), _channel(std, shape[0])
    low64 = (np.clip(x64 - eps, 0.0, 1.0) - m) / s
    up64 = (np.clip(x64 + eps, 0.0, 1.0) - m) / s
    box32 = InputBox.from_pixels(x32[None], eps, list(mean), list(std))
    low32 = box32.lower_norm[0].numpy().astype(np.float64)
    up32 = box32.upper_norm[0].numpy().astype(np.float64)
    lower = _round_decimals(np.nextafter(np.minimum(low64, low32), -np.inf), down=True)
    upper = _round_decimals(np.nextafter(np.maximum(up64, up32), np.inf), down=False)
    return Property(lower.ravel(), upper.ravel(), int(label), int(num_classes), shape, comment)


def format_number(value: float) -> str:
    """Shortest plain decimal that parses back to ``value`` exactly: ``1.0``, ``-0.25``, ``0.0``."""
    value = float(value)
    if not math.isfinite(value):
        raise ExportError(f"cannot write non-finite bound {value} to a vnnlib file")
    text = repr(value)  # shortest round-trip digits; only the exponent form needs rewriting
    if "e" in text or "E" in text:
        text = np.format_float_positional(value, unique=True, trim="0")
        if "." not in text:
            text += ".0"
    return "0.0" if text == "-0.0" else text


def _comment_lines(prop: Property) -> list[str]:
    text = prop.comment or f"local robustness, label {prop.label}"
    return [f"; {line}".rstrip() for line in text.splitlines()]


def _formatted_bounds(prop: Property) -> tuple[list[str], list[str]]:
    if prop.lower.shape != prop.upper.shape or prop.lower.size != int(np.prod(prop.shape)):
        raise ExportError(f"box of size {prop.lower.size} does not fit shape {prop.shape}")
    if np.any(prop.lower > prop.upper):
        raise ExportError("property has a lower bound above its upper bound")
    return [format_number(v) for v in prop.lower], [format_number(v) for v in prop.upper]


def render_v1(prop: Property) -> str:
    """VNN-LIB 1.0 text (formats.md §1.3 / A2): per-line declares, paired bounds, one DNF."""
    lows, ups = _formatted_bounds(prop)
    t = prop.label
    lines = _comment_lines(prop)
    lines += [f"(declare-const X_{i} Real)" for i in range(len(lows))] + [""]
    lines += [f"(declare-const Y_{j} Real)" for j in range(prop.num_classes)]
    lines.append("; Input constraints")
    for i, (lo, hi) in enumerate(zip(lows, ups)):
        lines += [f"(assert (>= X_{i} {lo}))", f"(assert (<= X_{i} {hi}))"]
    lines += ["; Output constraints: counterexample = some other class scores >= true class", "(assert (or"]
    lines += [f"    (and (>= Y_{j} Y_{t}))" for j in range(prop.num_classes) if j != t]
    lines.append("))")
    return "\n".join(lines) + "\n"


def render_v2(prop: Property) -> str:
    """VNN-LIB 2.0 text (formats.md §3.3): float32 ``[1,C,H,W]`` → ``[1,K]``, one assert per bound."""
    lows, ups = _formatted_bounds(prop)
    c, h, w = prop.shape
    t = prop.label
    lines = _comment_lines(prop) + [
        "(vnnlib-version <2.0>)",
        "(declare-network N",
        f"  (declare-input X float32 [1,{c},{h},{w}])",
        f"  (declare-output Y float32 [1,{prop.num_classes}])",
        ")",
    ]
    for flat, (ci, hi, wi) in enumerate(np.ndindex(c, h, w)):
        index = f"X[0,{ci},{hi},{wi}]"
        lines += [f"(assert (>= {index} {lows[flat]}))", f"(assert (<= {index} {ups[flat]}))"]
    lines.append("(assert (or")
    lines += [f"  (>= Y[0,{j}] Y[0,{t}])" for j in range(prop.num_classes) if j != t]
    lines.append("))")
    return "\n".join(lines) + "\n"


def check_v2(text: str, prop: Property) -> None:
    """Parse 2.0 text with the ``vnnlib`` package and compare with the intended property.

    The box must equal the printed bounds exactly and the output part must be the K−1
    robustness polytopes.

    Raises:
        ExportError: Parse failure or any mismatch.
    """
    import vnnlib
    import vnnlib.compat

    try:
        cases = vnnlib.compat.transform(vnnlib.parse_query_string(text))
    except vnnlib.VNNLibException as err:
        raise ExportError(f"VNN-LIB 2.0 text does not parse: {str(err)[:300]}") from err
    if len(cases) != 1:
        raise ExportError(f"VNN-LIB 2.0 text gives {len(cases)} spec cases, expected 1")
    box = np.asarray(cases[0].input_box, dtype=np.float64)
    lows, ups = _formatted_bounds(prop)
    expected = np.array([[float(lo), float(hi)] for lo, hi in zip(lows, ups)])
    if box.shape != expected.shape or not np.array_equal(box, expected):
        raise ExportError("VNN-LIB 2.0 input box differs from the intended box")
    polys = [
        (np.asarray(p.coeff_matrix, dtype=np.float64), np.asarray(p.rhs, dtype=np.float64))
        for p in cases[0].output_constraints
    ]
    if not same_polytopes(polys, prop.polytopes()):
        raise ExportError(
            f"VNN-LIB 2.0 output polytopes differ from the {prop.num_classes - 1} "
            f"robustness disjuncts of label {prop.label}"
        )

"""VNN-LIB properties: sound outward rounding, number format, 1.0 rules, 2.0 parse with `vnnlib`."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from adcert_plugin.bounds import InputBox
from adcert_plugin.errors import ExportError
from vnncomp.export.vnnlib import (
    check_v2,
    format_number,
    parse_v1,
    property_from_sample,
    render_v1,
    render_v2,
    robustness_polytopes,
    validate_v1,
)

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
NUMBER = re.compile(r"(?<![\w.])-?\d[\w.+-]*")


def _image(seed=0, shape=(3, 6, 5)):
    rng = np.random.default_rng(seed)
    x = rng.random(shape).astype(np.float32)
    x.flat[:4] = [0.0, 1.0, 0.001, 0.999]  # exercise clipping at both ends
    return x


def _prop(eps=8 / 255, label=3, seed=0, k=10):
    return property_from_sample(_image(seed), label, eps, CIFAR_MEAN, CIFAR_STD, k, "test\nsecond line")


@pytest.mark.parametrize("eps", [0.0, 1 / 255, 8 / 255, 0.3])
@pytest.mark.parametrize("seed", [0, 1])
def test_box_contains_pixel_eps_ball_after_normalisation(eps, seed):
    x = _image(seed)
    prop = property_from_sample(x, 2, eps, CIFAR_MEAN, CIFAR_STD, 10)
    mean = np.array(CIFAR_MEAN)[:, None, None]
    std = np.array(CIFAR_STD)[:, None, None]
    exact_low = ((np.clip(x.astype(np.float64) - eps, 0, 1) - mean) / std).ravel()
    exact_up = ((np.clip(x.astype(np.float64) + eps, 0, 1) - mean) / std).ravel()
    box32 = InputBox.from_pixels(torch.from_numpy(x)[None], eps, CIFAR_MEAN, CIFAR_STD)
    assert np.all(prop.lower <= exact_low) and np.all(prop.upper >= exact_up)
    assert np.all(prop.lower <= box32.lower_norm.numpy().ravel().astype(np.float64))
    assert np.all(prop.upper >= box32.upper_norm.numpy().ravel().astype(np.float64))
    assert np.all(prop.lower < exact_low) and np.all(prop.upper > exact_up), "rounding must go strictly outward"
    assert np.max(exact_low - prop.lower) < 1e-6 and np.max(prop.upper - exact_up) < 1e-6  # float32-tight


def test_box_is_per_channel():
    x = np.full((3, 2, 2), 0.5, dtype=np.float32)
    prop = property_from_sample(x, 0, 0.01, CIFAR_MEAN, CIFAR_STD, 10)
    widths = (prop.upper - prop.lower).reshape(3, 4)
    expected = 0.02 / np.array(CIFAR_STD)
    assert np.allclose(widths, expected[:, None], atol=1e-9)
    centres = ((prop.upper + prop.lower) / 2).reshape(3, 4)
    assert np.allclose(centres, ((0.5 - np.array(CIFAR_MEAN)) / np.array(CIFAR_STD))[:, None], atol=1e-9)


def test_texts_use_plain_decimals_only():
    prop = _prop(eps=0.0)  # zero-width clipped pixels give tiny values like 1e-12
    for text in (render_v1(prop), render_v2(prop)):
        body = "\n".join(line for line in text.splitlines() if not line.startswith(";"))
        numbers = NUMBER.findall(body.replace("X_", "X").replace("Y_", "Y"))
        constants = re.findall(r" (-?[\d.][^\s()]*)\)\)", body)
        assert constants, "expected bound constants"
        for value in constants:
            assert re.fullmatch(r"-?\d+\.\d+", value), value
        assert not any("e" in n.lower() for n in numbers)


def test_render_v1_template():
    prop = _prop(label=3)
    text = render_v1(prop)
    lines = text.splitlines()
    assert lines[0] == "; test" and lines[1] == "; second line"
    n = prop.lower.size
    assert lines.count("(declare-const X_0 Real)") == 1 and f"(declare-const X_{n - 1} Real)" in lines
    assert [line for line in lines if line.startswith("(declare-const Y_")] == [
        f"(declare-const Y_{j} Real)" for j in range(10)
    ]
    assert f"(assert (>= X_0 {format_number(prop.lower[0])}))" in lines
    assert f"(assert (<= X_0 {format_number(prop.upper[0])}))" in lines
    disjuncts = [line.strip() for line in lines if line.strip().startswith("(and")]
    assert disjuncts == [f"(and (>= Y_{j} Y_3))" for j in range(10) if j != 3]
    assert text.rstrip().endswith("))")


def test_v1_reads_back_exactly():
    prop = _prop()
    spec = validate_v1(render_v1(prop))
    assert np.array_equal(spec.lower, prop.lower) and np.array_equal(spec.upper, prop.upper)
    assert spec.label == 3 and spec.num_outputs == 10 and len(spec.polytopes) == 9


def test_v2_parses_and_matches_v1():
    vnnlib = pytest.importorskip("vnnlib")
    pytest.importorskip("vnnlib.compat")

    prop = _prop(label=7)
    text2 = render_v2(prop)
    assert text2.splitlines()[2] == "(vnnlib-version <2.0>)"
    assert "(declare-input X float32 [1,3,6,5])" in text2 and "(declare-output Y float32 [1,10])" in text2
    cases = vnnlib.compat.transform(vnnlib.parse_query_string(text2))
    assert len(cases) == 1
    box = np.array(cases[0].input_box)
    spec1 = parse_v1(render_v1(prop))
    assert np.array_equal(box[:, 0], spec1.lower) and np.array_equal(box[:, 1], spec1.upper)
    polys = cases[0].output_constraints
    assert len(polys) == 9
    rows = sorted(tuple(p.coeff_matrix[0]) for p in polys)
    expected = sorted(tuple(np.eye(10)[7] - np.eye(10)[j]) for j in range(10) if j != 7)
    assert rows == expected and all(list(p.rhs) == [0.0] for p in polys)
    check_v2(text2, prop)


def test_check_v2_detects_a_changed_bound_and_label():
    pytest.importorskip("vnnlib")
    prop = _prop(label=1)
    text = render_v2(prop)
    first = format_number(prop.upper[0])
    with pytest.raises(ExportError, match="input box"):
        check_v2(text.replace(f"(<= X[0,0,0,0] {first})", "(<= X[0,0,0,0] 5.0)", 1), prop)
    with pytest.raises(ExportError, match="polytopes"):
        check_v2(text.replace("Y[0,1])", "Y[0,2])"), prop)
    with pytest.raises(ExportError, match="does not parse"):
        check_v2(text.replace(first, "1e-3", 1), prop)


@pytest.mark.parametrize(
    "value, text",
    [(1.0, "1.0"), (0.0, "0.0"), (-0.0, "0.0"), (-0.25, "-0.25"), (1e-12, "0.000000000001"), (3, "3.0"), (0.1, "0.1")],
)
def test_format_number(value, text):
    assert format_number(value) == text


def test_format_number_rejects_non_finite():
    with pytest.raises(ExportError):
        format_number(float("nan"))


@settings(deadline=None, max_examples=200)
@given(st.floats(min_value=-1e3, max_value=1e3, allow_nan=False))
def test_format_number_round_trips(value):
    text = format_number(value)
    assert float(text) == value and "e" not in text.lower() and "." in text


VALID = """; abCROWN-style spellings
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(declare-const Y_2 Real)
(assert (<= X_0 0.5))
(assert (>= X_0 -0.5))
(assert (>= X_1 0.0))
(assert (<= X_1 1.0))
(assert (or (and (<= Y_1 Y_0)) (and (<= Y_1 Y_2))))
"""


def test_parse_v1_accepts_equivalent_spellings():
    spec = validate_v1(VALID)
    assert spec.label == 1
    assert list(spec.lower) == [-0.5, 0.0] and list(spec.upper) == [0.5, 1.0]
    got = sorted((tuple(a[0]), float(b[0])) for a, b in spec.polytopes)
    want = sorted((tuple(a[0]), float(b[0])) for a, b in robustness_polytopes(1, 3))
    assert got == want


@pytest.mark.parametrize(
    "mutation, message",
    [
        (("(declare-const X_1 Real)\n", "(declare-const X_1 Real) (declare-const Z Real)\n"), "one per line"),
        (("(assert (<= X_1 1.0))\n", ""), "X_1 was unbounded"),
        (("0.5))", "5e-1))"), "plain decimal"),
        (("(assert (>= X_1 0.0))", "(assert (>= X_1 0))"), "plain decimal"),
        (("(assert (or", "(assert (or (and (>= Y_0 Y_1)))) (assert (or"), "at most one"),
        (("(<= Y_1 Y_2)", "(<= Y_1 Y_7)"), "undeclared output"),
        (("(<= Y_1 Y_2)", "(<= X_1 Y_2)"), "outputs only"),
        (("(assert (>= X_0 -0.5))", "(assert (>= X_0 Y_0))"), "compare X_i with a constant"),
    ],
)
def test_validate_v1_rejects_rule_violations(mutation, message):
    old, new = mutation
    assert old in VALID
    with pytest.raises(ExportError, match=message):
        validate_v1(VALID.replace(old, new, 1))

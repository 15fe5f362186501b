"""The compiled interval-ReLU kernels (``bounds/fused.py``) against the eager path and the reference.

The fused kernels must be invisible: the same bounds and gradients as the eager ops bit for bit
(both compute the same exact scalings and selections), in every layout a gradient can arrive in,
and a machine where they do not compile must fall back to the eager path.
"""

from __future__ import annotations

import pytest
import test_interval_fast_paths
import torch

from adcert_plugin.bounds import fused, interval

relu_path = test_interval_fast_paths.relu_path  # the fixture, shared
needs_fused = pytest.mark.skipif(
    not fused.available(torch.float32),
    reason="torch.compile cannot build the fused kernels on this machine (no C++ compiler?); the eager path runs",
)


def _relu_inputs(shape, dtype, layout, seed=0):
    gen = torch.Generator().manual_seed(seed)
    centre = torch.randn(shape, dtype=dtype, generator=gen)
    radius = torch.rand(shape, dtype=dtype, generator=gen)
    flat_c, flat_r = centre.view(-1), radius.view(-1)
    flat_r[:50] = 0.0  # degenerate boxes
    flat_r[50:100] = flat_c[50:100].abs()  # ties: c = r and c = -r, the kinks
    return [t.contiguous(memory_format=layout).requires_grad_(True) for t in (centre, radius)]


def _relu_and_grads(inputs, grads):
    out = interval._IntervalReLU.apply(*inputs)
    return out, torch.autograd.grad(out, inputs, grads)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("grad_layout", [torch.contiguous_format, torch.channels_last])
def test_interval_relu_is_the_same_fused_or_eager_and_matches_the_reference(relu_path, dtype, layout, grad_layout):
    inputs = _relu_inputs((4, 6, 5, 7), dtype, layout)
    grads = [torch.randn(4, 6, 5, 7, dtype=dtype).contiguous(memory_format=grad_layout) for _ in range(2)]
    out, got = _relu_and_grads(inputs, grads)
    assert out[0].is_contiguous(memory_format=layout)  # the layout the next conv runs in
    reference = [t.detach().clone().requires_grad_(True) for t in inputs]
    want_out = interval._relu_autograd(*reference)[:2]
    want = torch.autograd.grad(want_out, reference, grads)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-6, atol=1e-6)
    for a, b in zip(out + got, want_out + want):
        torch.testing.assert_close(a, b, **tol)


@needs_fused
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_fused_relu_equals_the_eager_ops_bit_for_bit(layout, monkeypatch):
    inputs = _relu_inputs((3, 8, 9, 11), torch.float32, layout, seed=5)
    grads = [torch.randn(3, 8, 9, 11) for _ in range(2)]
    monkeypatch.setattr(fused, "MIN_NUMEL", 0)
    fused_out, fused_grads = _relu_and_grads(inputs, grads)
    monkeypatch.setattr(fused, "available", lambda *dtype: False)
    eager_out, eager_grads = _relu_and_grads(inputs, grads)
    for a, b in zip(fused_out + fused_grads, eager_out + eager_grads):
        assert torch.equal(a, b)


def test_fused_kernels_only_take_large_dense_cpu_float_tensors(monkeypatch):
    monkeypatch.setattr(fused, "available", lambda *dtype: True)
    big = torch.zeros(fused.MIN_NUMEL)
    assert fused.applies(big, big.clone())
    assert not fused.applies(big[: fused.MIN_NUMEL // 2], big[: fused.MIN_NUMEL // 2])  # too small to pay
    square = torch.zeros(512, 512)
    assert not fused.applies(square.t(), square.t())  # not dense in (C, H, W) or channels-last order
    images = torch.zeros(2, 64, 32, 32)
    assert not fused.applies(images, images.contiguous(memory_format=torch.channels_last))  # two layouts


def test_fused_kernels_fail_closed(monkeypatch):
    def broken():
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(fused, "_compiled", broken)
    fused.available.cache_clear()
    try:
        assert not fused.available()
        monkeypatch.undo()
        fused.available.cache_clear()
        monkeypatch.setenv(fused.ENV_SWITCH, "0")
        assert not fused.available()  # switched off: not even probed
        assert not fused.available(torch.float16)  # a dtype the kernels are not built for
    finally:
        monkeypatch.undo()
        fused.available.cache_clear()

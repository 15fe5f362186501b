"""One-pass CPU kernels for the elementwise work of the interval pass, compiled by torch.compile.

On the CPU the interval ReLU is bound by memory bandwidth, and eager torch reads and writes every
intermediate: its forward is seven passes over the activation, its backward five. Inductor fuses
each into one loop that reads the inputs once and writes the outputs once (CNN7's 64x28x28 layer,
batch 128, 2 threads: forward + backward 52.5 → 9.8 ms; an IBP step 0.92x; ``benchmarks/fused_relu.py``).

The kernels are compiled for 1-D tensors of dynamic length: a dense tensor is viewed as 1-D in
memory order, so every layer, batch size and memory layout shares one compilation. They compute
the same numbers as their eager form (same operations in the same order; only exact scalings and
selections), which the probe checks bit for bit before anything uses them.

Used where it pays and works: CPU float32 or float64 tensors of at least ``MIN_NUMEL`` elements,
sharing one dense layout, unless ``ADCERT_FUSED_KERNELS=0``, and only after that dtype's probe
passed (a machine without a C++ compiler fails it); otherwise the caller runs its eager form.
The first use in a process pays the compilation (seconds; Inductor caches it on disk for later
processes).
"""

from __future__ import annotations

import functools
import logging
import os

import torch

MIN_NUMEL = 1 << 17  # below this the saved passes are worth less than a compilation in a short job
ENV_SWITCH = "ADCERT_FUSED_KERNELS"
PASSES, STRADDLES = 1, 2  # the interval ReLU's per-element code; 0: the box is below 0

log = logging.getLogger(__name__)


def relu_forward_1d(centre: torch.Tensor, radius: torch.Tensor):
    """Interval ReLU in centre/radius form, and the int8 code its backward needs (1-D tensors).

    The same operations as ``interval._IntervalReLU``'s eager forward: h = max((c + r)·½, 0),
    (max(c, h), min(r, h)); the code is ``PASSES`` where c ≥ r, ``STRADDLES`` where only c + r ≥ 0.
    """
    half_up = (centre + radius) * 0.5
    code = torch.where(centre >= radius, PASSES, torch.where(half_up >= 0, STRADDLES, 0)).to(torch.int8)
    half_up = torch.clamp(half_up, min=0)
    return torch.maximum(centre, half_up), torch.minimum(radius, half_up), code


def relu_backward_1d(code: torch.Tensor, grad_centre: torch.Tensor, grad_radius: torch.Tensor):
    """The gradient of ``relu_forward_1d``: passed through, shared as (g_c + g_r)·½, or zero."""
    code = code.to(grad_centre.dtype)  # Inductor vectorises float compares, not int8 ones (8x slower)
    passes, straddle = code == PASSES, code == STRADDLES
    shared = torch.where(straddle, (grad_centre + grad_radius) * 0.5, 0.0)
    return torch.where(passes, grad_centre, shared), torch.where(passes, grad_radius, shared)


@functools.lru_cache(maxsize=1)
def _compiled():
    return (
        torch.compile(relu_forward_1d, dynamic=True, fullgraph=True),
        torch.compile(relu_backward_1d, dynamic=True, fullgraph=True),
    )


@functools.cache
def available(dtype: torch.dtype = torch.float32) -> bool:
    """The kernels compile here for ``dtype`` and match their eager form bit for bit on a probe."""
    if os.environ.get(ENV_SWITCH, "1") == "0" or dtype not in (torch.float32, torch.float64):
        return False
    try:
        return _probe(dtype)
    except Exception as error:  # noqa: BLE001 - no compiler, an Inductor bug: the eager path runs
        log.warning(
            "the fused interval kernels do not build here (%s: %s); the eager ops run instead "
            "(same results, slower; ADCERT_FUSED_KERNELS=0 skips this probe)",
            type(error).__name__,
            error,
        )
        return False


def _probe(dtype: torch.dtype) -> bool:
    gen = torch.Generator().manual_seed(0)
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0], dtype=dtype)
    for length in (4099, 70001):  # odd lengths: the vector loops' tails; two sizes: one compilation
        centre, radius = (
            torch.randn(length, generator=gen, dtype=dtype),
            torch.rand(length, generator=gen, dtype=dtype) * 2,
        )
        radius[:5] = centre[:5].abs()  # ties: c = r and c = -r
        centre[5:10], radius[15:20] = special, special.abs()  # NaN and inf pass as the eager ops pass them
        grads = torch.randn(length, generator=gen, dtype=dtype), torch.randn(length, generator=gen, dtype=dtype)
        grads[0][20:25] = special
        forward, backward = _compiled()
        fused_out = forward(centre, radius)
        eager_out = relu_forward_1d(centre, radius)
        fused_grads = backward(fused_out[2], *grads)
        eager_grads = relu_backward_1d(eager_out[2], *grads)
        for got, want in zip(fused_out + fused_grads, eager_out + eager_grads):
            try:
                torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
            except AssertionError:
                log.warning("fused interval kernels differ from their eager form here; the eager ops run")
                return False
    return True


def _dense(t: torch.Tensor) -> bool:
    return t.is_contiguous() or (t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last))


def applies(*tensors: torch.Tensor) -> bool:
    """The fused kernels run on these tensors (one dense layout, CPU float, large enough)."""
    first = tensors[0]
    return (
        first.device.type == "cpu"
        and first.numel() >= MIN_NUMEL
        and all(t.dtype == first.dtype and t.shape == first.shape and t.stride() == first.stride() for t in tensors[1:])
        and _dense(first)
        and available(first.dtype)
    )


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.as_strided((t.numel(),), (1,))


def _shaped(flat: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return flat.as_strided(like.shape, like.stride())


def _in_layout_of(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` with ``like``'s strides (a gradient may arrive in another layout, or expanded)."""
    return t if t.stride() == like.stride() else torch.empty_like(like, dtype=t.dtype).copy_(t)


def relu_forward(centre: torch.Tensor, radius: torch.Tensor):
    """``relu_forward_1d`` on tensors for which ``applies(centre, radius)`` holds, in their shape."""
    out_centre, out_radius, code = _compiled()[0](_flat(centre), _flat(radius))
    return _shaped(out_centre, centre), _shaped(out_radius, centre), _shaped(code, centre)


def relu_backward(code: torch.Tensor, grad_centre: torch.Tensor, grad_radius: torch.Tensor):
    """``relu_backward_1d`` for a code from ``relu_forward``, in the code's shape and layout."""
    grad_centre, grad_radius = _in_layout_of(grad_centre, code), _in_layout_of(grad_radius, code)
    out_centre, out_radius = _compiled()[1](_flat(code), _flat(grad_centre), _flat(grad_radius))
    return _shaped(out_centre, code), _shaped(out_radius, code)

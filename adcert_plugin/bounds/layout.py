"""Memory layout for the CPU convolutions of the interval pass and of the attack's eval network.

oneDNN runs CPU convolutions faster channels-last, wide and narrow alike (measured: CNN7's 64/128
channels; small-cnn's 16/32, a training step of the interval losses 0.80-0.87x the time,
``benchmarks/layout_cost.py``), so one rule picks the layout for both users. Fusing a conv with its
ReLU into one oneDNN kernel pays only for wide convolutions (``wide_convolutions``): on small-cnn the
fused attack measured 1.05-1.15x the unfused one.
"""

from __future__ import annotations

import torch
from torch import nn

WIDE_CONV = 64


def prefers_channels_last(model: nn.Sequential) -> bool:
    """Channels-last when the model has convolutions and every one is on the CPU."""
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    return bool(convs) and all(c.weight.device.type == "cpu" for c in convs)


def wide_convolutions(model: nn.Sequential) -> bool:
    """Every conv has at least ``WIDE_CONV`` output channels (where a fused conv + ReLU pays)."""
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    return bool(convs) and all(c.out_channels >= WIDE_CONV for c in convs)


def in_layout(x: torch.Tensor, layout) -> torch.Tensor:
    """``x`` in ``layout``. A single-channel batch is both layouts at once, and oneDNN would then
    answer the first conv in NCHW, which the next conv copies back: give it channels-last strides
    (a view, same memory) so the first conv answers channels-last."""
    if layout == torch.channels_last and x.shape[1] == 1:
        h, w = x.shape[-2:]
        return x.contiguous().as_strided(x.shape, (h * w, 1, w, 1))
    return x.contiguous(memory_format=layout)

"""Memory layout for the CPU convolutions of the interval pass and of the attack's eval network.

oneDNN runs wide convolutions faster channels-last (measured: CNN7's 64/128 channels), and narrow
ones slower (small-cnn's 16/32), so one rule picks the layout for both users.
"""

from __future__ import annotations

import torch
from torch import nn

WIDE_CONV = 64


def prefers_channels_last(model: nn.Sequential) -> bool:
    """Channels-last when every conv is on the CPU and has at least ``WIDE_CONV`` output channels."""
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    on_cpu = all(c.weight.device.type == "cpu" for c in convs)
    return bool(convs) and on_cpu and all(c.out_channels >= WIDE_CONV for c in convs)


def in_layout(x: torch.Tensor, layout) -> torch.Tensor:
    """``x`` in ``layout``. A single-channel batch is both layouts at once, and oneDNN would then
    answer the first conv in NCHW, which the next conv copies back: give it channels-last strides
    (a view, same memory) so the first conv answers channels-last."""
    if layout == torch.channels_last and x.shape[1] == 1:
        h, w = x.shape[-2:]
        return x.contiguous().as_strided(x.shape, (h * w, 1, w, 1))
    return x.contiguous(memory_format=layout)

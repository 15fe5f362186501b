"""Stochastic weight averaging and population BatchNorm statistics (the ctbench recipe, methods.md §9).

CTBench wraps its optimizer in SWA (Izmailov et al. 2018, the torchcontrib form): after optimizer
step ``start`` (= the first step of ``swa_start_epoch``) the running average of the parameters
is updated every ``freq`` steps, avg ← avg + (θ − avg)/(n + 1); at the end of training the
averaged weights replace the model's and the BN running statistics are re-estimated on the
training set, and that model is the one certified. ``pop_bn`` re-estimates the statistics after
every epoch too (``--use-pop-bn-stats``): the population mean of the batch means and variances.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

_BN = nn.modules.batchnorm._BatchNorm


class WeightAverage:
    """The SWA running average of ``params``, updated after optimizer steps ``start + k·freq`` (k ≥ 1)."""

    def __init__(self, params: list[torch.Tensor], start: int, freq: int):
        self.params, self.start, self.freq = list(params), int(start), int(freq)
        self.average = [torch.zeros_like(p, memory_format=torch.preserve_format).detach() for p in self.params]
        self.count = 0

    def after_step(self, step: int) -> bool:
        """Call with the 1-based count of optimizer steps taken; returns whether the average moved."""
        if step <= self.start or step % self.freq != 0:
            return False
        with torch.no_grad():
            for avg, param in zip(self.average, self.params):
                avg.add_((param.detach() - avg) / (self.count + 1))
        self.count += 1
        return True

    def copy_into_params(self) -> None:
        """Overwrite the parameters with their average (the end of training)."""
        if self.count == 0:
            return
        with torch.no_grad():
            for avg, param in zip(self.average, self.params):
                param.copy_(avg)

    def state_dict(self) -> dict:
        return {
            "count": self.count,
            "average": [a.clone() for a in self.average],
            "start": self.start,
            "freq": self.freq,
        }

    def load_state_dict(self, state: dict) -> None:
        if len(state["average"]) != len(self.average):
            raise ValueError("the SWA state holds another number of parameters")
        self.count = int(state["count"])
        for avg, saved in zip(self.average, state["average"]):
            avg.copy_(saved)


def population_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Re-estimate every BN's running statistics as the average over ``batches`` (normalised inputs).

    Equal weight per batch (torch's cumulative average, ``momentum=None``), which is CTBench's
    size-weighted average for equal batches. Returns the number of batches seen; the model's
    mode and the BN momenta are restored.
    """
    layers = [m for m in model.modules() if isinstance(m, _BN)]
    if not layers:
        return 0
    momenta = [m.momentum for m in layers]
    was_training = model.training
    seen = 0
    try:
        for m in layers:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        with torch.no_grad():
            for x in batches:
                model(x)
                seen += 1
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        model.train(was_training)
    return seen

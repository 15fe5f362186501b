"""Bounds: the threat model (ε box, margin spec) and certified margin lower bounds.

spec.py          InputBox (clip to [0, 1], then normalise), margin_matrix C_y, margins
lirpa.py         the auto_LiRPA seam: wrap_model() -> BoundedNet; the only auto_LiRPA importer
interval.py      native IBP for plain Conv/Linear/BN/ReLU chains (one pass, ReLU bounds too)
fused.py         the interval ReLU as compiled one-pass CPU kernels (probe-gated, eager fallback)
layout.py        the channels-last rule shared with the attack
lirpa_compat.py  auto_LiRPA 0.3 on torch 2.x / numpy 2 (a no-op from 0.4 on)
"""

from .lirpa import METHODS, BoundedNet, wrap_model
from .spec import InputBox, denormalize, margin_matrix, margins, normalize

__all__ = ["METHODS", "BoundedNet", "InputBox", "denormalize", "margin_matrix", "margins", "normalize", "wrap_model"]

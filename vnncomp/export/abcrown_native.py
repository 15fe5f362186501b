"""alpha-beta-CROWN loads adcert's network and test split itself: no ONNX, no VNN-LIB (CTBench's way).

Two functions for abCROWN's YAML, which calls them through its ``Customized("<file>.py", "<fn>", ...)``
(this file is loaded by path inside abCROWN's own process and environment, so it puts adcert's
checkout on ``sys.path`` and imports adcert's model and data code, which import no auto_LiRPA)::

    model:
      name: Customized("<checkout>/vnncomp/export/abcrown_native.py", "model", checkpoint="<model.pt>")
    data:
      dataset: Customized("<checkout>/vnncomp/export/abcrown_native.py", "data", checkpoint="<model.pt>",
                          data_dir="<data root>", eps=0.1)

``data`` returns the test split *normalised* with the checkpoint's data set's mean and std (the
network takes normalised inputs, as in adcert), the pixel-space ε divided by std per channel, and
the normalised images of 0 and 1 as the box's limits: abCROWN's box is then clip(x ± ε, 0, 1)
normalised, exactly the box of adcert-eval and of the exported VNN-LIB properties.
:func:`native_config` (in ``abcrown.py``) writes the YAML; ``adcert-export --abcrown-native``.
"""

from __future__ import annotations

import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[2]


def _adcert() -> None:
    if str(_CHECKOUT) not in sys.path:
        sys.path.insert(0, str(_CHECKOUT))


def model(checkpoint: str):
    """The checkpoint's network in eval mode (normalised inputs ``[B, C, H, W]`` → logits)."""
    _adcert()
    from adcert_plugin.training import load_model

    net, _ = load_model(checkpoint)
    return net.eval()


def data(spec=None, checkpoint: str = "", data_dir: str | None = None, eps: float = 0.0, dataset: str | None = None):
    """``(X, labels, data_max, data_min, eps)`` for abCROWN's customised data, all normalised.

    Args:
        spec: abCROWN's ``specification`` section (unused: the box is adcert's).
        checkpoint: adcert checkpoint (its data set, unless ``dataset`` is given).
        data_dir: Data root (default: adcert's lookup, ``$ADCERT_DATA``).
        eps: Pixel-space L-inf radius.
        dataset: Data-set name (default: the checkpoint's).
    """
    _adcert()
    import torch

    from adcert_plugin.data import get_data_spec, load_split
    from adcert_plugin.training import read_checkpoint

    name = dataset or read_checkpoint(checkpoint).get("dataset")
    if not isinstance(name, str):
        raise ValueError(f"{checkpoint} records no data set: pass dataset=... to the loader")
    data_spec = get_data_spec(name)
    images, labels = load_split(data_spec.name, "test", data_dir)
    mean = torch.tensor(data_spec.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(data_spec.std, dtype=torch.float32).view(1, -1, 1, 1)
    x = (images - mean) / std
    return x, labels, (1 - mean) / std, (0 - mean) / std, float(eps) / std

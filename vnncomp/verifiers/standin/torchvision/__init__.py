"""adcert's stand-in for torchvision, for the verifiers' own environments (never imported by adcert).

The registry's torchvision is built against another torch (CUDA-only here), and the verifiers
import it without using it on the ONNX + VNN-LIB path:
- NeuralSAT 0.2.17 vendors onnx2pytorch, which does ``import torchvision`` at module level
  (operations/nonmaxsuppression.py) and calls ``torchvision.ops`` only for networks with an ONNX
  NonMaxSuppression node (``make neuralsat`` puts this folder on that venv's path);
- alpha-beta-CROWN's data_utils.py imports ``torchvision.datasets`` and ``torchvision.transforms``
  at module level, for its built-in data sets, which a VNN-COMP benchmark never loads (put this
  folder on its venv's path with a .pth file, README "alpha-beta-CROWN").
Anything actually used raises NotImplementedError naming what was asked for.
"""

from . import datasets, ops, transforms  # noqa: F401  (``import torchvision`` makes them attributes)

__version__ = "0.0.0+adcert.standin"

"""adcert's stand-in for torchvision, on the path of NeuralSAT's venv only (``make neuralsat``).

NeuralSAT 0.2.17 vendors onnx2pytorch, which does ``import torchvision`` at module level
(operations/nonmaxsuppression.py) and calls ``torchvision.ops`` only for networks with an
ONNX NonMaxSuppression node; nothing on the ONNX + VNN-LIB verification path uses it. The
registry's torchvision is built against another torch (CUDA-only here), so NeuralSAT gets this
module instead. This folder is not a package of adcert: it is never imported by adcert itself.
"""

__version__ = "0.0.0+adcert.standin"


class _Ops:
    def __getattr__(self, name):
        raise NotImplementedError(f"torchvision.ops.{name}: this is adcert's torchvision stand-in for NeuralSAT "
                                  "(networks with ONNX NonMaxSuppression are not supported)")


ops = _Ops()

"""torchvision.ops for NeuralSAT's onnx2pytorch: only ONNX NonMaxSuppression would call it."""

from ._absent import absent


def __getattr__(name):
    return absent("ops", name, "networks with ONNX NonMaxSuppression are not supported")

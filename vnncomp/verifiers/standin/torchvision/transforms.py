"""torchvision.transforms for alpha-beta-CROWN: only its built-in data sets would use it."""

from ._absent import absent


def __getattr__(name):
    return absent(
        "transforms",
        name,
        "alpha-beta-CROWN's built-in data sets are not available; verify exported ONNX + VNN-LIB benchmarks",
    )

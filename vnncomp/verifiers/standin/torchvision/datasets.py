"""torchvision.datasets for alpha-beta-CROWN: only its built-in data sets would use it, never a VNN-COMP benchmark."""

from ._absent import absent


def __getattr__(name):
    return absent(
        "datasets",
        name,
        "alpha-beta-CROWN's built-in data sets are not available; verify exported ONNX + VNN-LIB benchmarks",
    )

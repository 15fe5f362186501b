"""Shared pieces of the training tests: a fake MNIST folder and tiny run configs."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from adcert_plugin.training import build_config


def _idx(magic: int, array: np.ndarray) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fake_mnist(root: Path, n_train: int = 256, n_test: int = 64, seed: int = 0) -> Path:
    """A learnable MNIST-shaped data set (one noisy template per class) under ``root/MNIST/raw``."""
    rng = np.random.default_rng(seed)
    templates = rng.uniform(0, 1, size=(10, 28, 28))
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n)
        images = 0.7 * templates[labels] + 0.3 * rng.uniform(0, 1, size=(n, 28, 28))
        (raw / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(2051, images * 255), 1))
        (raw / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(2049, labels), 1))
    return root


def tiny_sets(
    data_dir: Path, out_dir: Path, loss: str = "mtl-ibp", epochs: int = 2, extra: dict | None = None
) -> list[str]:
    """``--set`` strings for a seconds-long CPU run on the fake data (an MLP without BN)."""
    sets = {
        "data.dataset": "mnist",
        "data.data_dir": str(data_dir),
        "data.test_subset": 32,
        "data.batch_size": 64,
        "model.name": "mlp",
        "model.kwargs": "{hidden: [16]}",
        "loss.name": loss,
        "schedule.epochs": epochs,
        "schedule.eps": 0.05,
        "schedule.eps_start_epoch": 1,
        "schedule.eps_length_epochs": 1,
        "optim.milestones": "[1]",
        "optim.l1": 1e-5,
        "eval.pgd_steps": 2,
        "eval.pgd_step_size": 0.5,
        "out_dir": str(out_dir),
        "seed": 3,
    }
    sets.update(extra or {})
    return [f"{k}={v}" for k, v in sets.items()]


def tiny_config(data_dir: Path, out_dir: Path, loss: str = "mtl-ibp", epochs: int = 2, extra: dict | None = None):
    return build_config(sets=tiny_sets(data_dir, out_dir, loss, epochs, extra))


def weights(path: Path) -> dict[str, torch.Tensor]:
    """The student's state_dict stored in a checkpoint (loaded with weights_only=True)."""
    return torch.load(path, map_location="cpu", weights_only=True)["model"]

"""Batches of a loaded split: loaders, seeded subsets, the validation holdout, augmentation.

Everything here works on pixel-space tensors ``[N, C, H, W]`` in ``[0, 1]`` and their labels;
``data.py`` reads them from disk and re-exports these names.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

from .errors import ConfigError, DataError

Batch = tuple[torch.Tensor, torch.Tensor]
_AUG_PADDING = {"cifar": 2, "tinyimagenet": 4}


def augment_batch(x: torch.Tensor, kind: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Applies training augmentation to a pixel-space batch ``[B, C, H, W]``.

    ``"cifar"``: random horizontal flip + random crop with 2-pixel edge padding;
    ``"tinyimagenet"``: the same with 4-pixel padding; ``"none"``: unchanged.
    The output keeps the input's shape and value range.

    Raises:
        ConfigError: ``kind`` is unknown.
    """
    check_augmentation(kind)
    if kind == "none":
        return x
    return _random_crop(_random_flip(x, generator), _AUG_PADDING[kind], generator)


def check_augmentation(kind: str) -> None:
    if kind != "none" and kind not in _AUG_PADDING:
        raise ConfigError(f"unknown augmentation {kind!r}; use one of none, {', '.join(_AUG_PADDING)}")


def _random_flip(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def _random_crop(x: torch.Tensor, pad: int, generator: torch.Generator | None) -> torch.Tensor:
    """Random crop back to ``H x W`` after edge-padding by ``pad``, one offset per image."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dy, dx = torch.randint(0, 2 * pad + 1, (2, b), generator=generator).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)
    cols = dx[:, None] + torch.arange(w, device=x.device)
    out = padded.gather(2, rows[:, None, :, None].expand(b, c, h, padded.shape[3]))
    return out.gather(3, cols[:, None, None, :].expand(b, c, h, w))


def make_loader(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    shuffle: bool,
    seed: int,
    augmentation: str = "none",
    drop_last: bool = False,
) -> DataLoader:
    """Builds a repeatable, single-process loader over in-memory tensors.

    Batches are sliced whole (a batch sampler feeds index lists to the TensorDataset) and
    augmented per batch, so ``loader.batch_size`` is ``None``; ``len(loader)`` is the
    number of batches. Two loaders with the same arguments give the same batches.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    check_augmentation(augmentation)
    dataset = TensorDataset(images, labels)
    aug_gen = torch.Generator().manual_seed(seed + 1)  # its own stream, apart from the sampler's
    base = (
        RandomSampler(dataset, generator=torch.Generator().manual_seed(seed)) if shuffle else SequentialSampler(dataset)
    )

    def collate(batch: Batch) -> Batch:
        x, y = batch
        return augment_batch(x, augmentation, aug_gen), y

    sampler = BatchSampler(base, batch_size, drop_last)
    return DataLoader(dataset, batch_size=None, sampler=sampler, collate_fn=collate, num_workers=0)


def subset(images: torch.Tensor, labels: torch.Tensor, n: int, seed: int) -> Batch:
    """Returns a deterministic random subset of ``n`` examples, in their original order.

    For one seed, a smaller subset is contained in a larger one (prefix of one permutation).

    Raises:
        DataError: ``n`` is not in ``1..len(labels)``.
    """
    total = len(labels)
    if not 1 <= n <= total:
        raise DataError(f"subset size {n} is not in 1..{total} (the split's size)")
    idx = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return images[idx], labels[idx]


VALIDATION_SEED = 0  # one holdout for every run, seed and method: selection compares like with like


def validation_split(images: torch.Tensor, labels: torch.Tensor, size: int) -> tuple[Batch, Batch]:
    """Splits a training split into (fit, validation): ``size`` examples held out, seeded once.

    The held-out examples are the first ``size`` of one fixed permutation (``VALIDATION_SEED``),
    in their original order, so every run that holds out ``size`` examples holds out the same ones.

    Raises:
        DataError: ``size`` leaves nothing to train on.
    """
    total = len(labels)
    if not 1 <= size < total:
        raise DataError(f"validation size {size} must be in 1..{total - 1} (the training split has {total})")
    order = torch.randperm(total, generator=torch.Generator().manual_seed(VALIDATION_SEED))
    held = torch.zeros(total, dtype=torch.bool)
    held[order[:size]] = True
    return (images[~held], labels[~held]), (images[held], labels[held])

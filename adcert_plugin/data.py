"""Data sets in pixel space: a small registry and the file readers (loaders, subsets and
augmentation are in ``splits.py`` and re-exported here).

Images are kept as float32 in ``[0, 1]`` (pixel space, not normalised), so an ``eps``
means the same thing for every data set; :func:`normalize` maps to the model's input space.
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError, DataError
from .io import load_plain_pickle
from .splits import VALIDATION_SEED, Batch, augment_batch, check_augmentation, make_loader, subset, validation_split  # noqa: F401

logger = logging.getLogger(__name__)

ENV_VAR = "ADCERT_DATA"
_HOW_TO = (
    f"pass --data-dir DIR or set {ENV_VAR}=DIR (the folder that holds MNIST/, FashionMNIST/, ...), "
    "or put the data sets in ../shared/data beside the checkout"
)
# The one rule every command, the Makefile and the tests use to find the data (README "Data").
DATA_RULE = f"--data-dir, else ${ENV_VAR}, else ../shared/data beside the source checkout when it exists, else ./data"
_SPLITS = ("train", "test")
_IDX_MAGIC = {2051: 3, 2049: 1}  # idx magic -> number of dims (images, labels)
Arrays = tuple[np.ndarray, np.ndarray]  # uint8 images [N, C, H, W], labels [N]


@dataclass(frozen=True)
class DataSpec:
    """Static description of a data set.

    Attributes:
        name: Registry name.
        shape: Image shape ``(C, H, W)``.
        num_classes: Number of labels.
        mean: Per-channel mean in pixel space ``[0, 1]``.
        std: Per-channel standard deviation in pixel space.
        augmentation: Training augmentation: ``"none"``, ``"cifar"`` or ``"tinyimagenet"``.
    """

    name: str
    shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augmentation: str = "none"


_CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR_STD = (0.2023, 0.1994, 0.2010)
_TINY_MEAN = (0.4802, 0.4481, 0.3975)
_TINY_STD = (0.2302, 0.2265, 0.2262)
_SPECS = {
    s.name: s
    for s in (
        DataSpec("mnist", (1, 28, 28), 10, (0.0,), (1.0,)),
        DataSpec("fashion-mnist", (1, 28, 28), 10, (0.0,), (1.0,)),
        DataSpec("cifar10", (3, 32, 32), 10, _CIFAR_MEAN, _CIFAR_STD, "cifar"),
        DataSpec("cifar10-partial", (3, 32, 32), 10, _CIFAR_MEAN, _CIFAR_STD, "cifar"),
        DataSpec("tinyimagenet", (3, 64, 64), 200, _TINY_MEAN, _TINY_STD, "tinyimagenet"),
    )
}


def list_datasets() -> list[str]:
    """Returns the registered data set names, sorted."""
    return sorted(_SPECS)


def get_data_spec(name: str) -> DataSpec:
    """Looks up a data set by name.

    Raises:
        DataError: The name is not registered; the message lists the known names.
    """
    try:
        return _SPECS[name]
    except KeyError:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(list_datasets())}") from None


def checkout_root() -> Path | None:
    """The source checkout adcert runs from (the folder holding ``setup.py`` and ``adcert_plugin/``).

    None for an installed copy (site-packages): "beside the checkout" only means something in
    a checkout, and an installed adcert never guesses a folder next to site-packages.
    """
    root = Path(__file__).resolve().parents[1]
    return root if (root / "setup.py").is_file() and (root / "adcert_plugin").is_dir() else None


def default_data_dir() -> tuple[Path, str]:
    """The data root when neither ``--data-dir`` nor ``$ADCERT_DATA`` is given, and where it came from.

    ``../shared/data`` beside the checkout when that folder exists (the Makefile's default too),
    else ``./data`` in the working folder.
    """
    root = checkout_root()
    if root is not None and (root.parent / "shared" / "data").is_dir():
        return (root.parent / "shared" / "data").resolve(), "../shared/data beside the checkout"
    return Path("data").resolve(), "default ./data"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """Finds the data root by :data:`DATA_RULE`: ``data_dir`` (``--data-dir``), else
    ``$ADCERT_DATA``, else ``../shared/data`` beside the checkout when it exists, else ``./data``.

    Raises:
        DataError: The chosen folder does not exist; the message says how to point at the data.
    """
    if data_dir is not None:
        # click hands $ADCERT_DATA over as --data-dir's value: name where it most likely came from
        from_env = os.environ.get(ENV_VAR) == str(data_dir)
        path, source = Path(data_dir).expanduser().resolve(), f"${ENV_VAR}" if from_env else "--data-dir"
    elif os.environ.get(ENV_VAR):
        path, source = Path(os.environ[ENV_VAR]).expanduser().resolve(), f"${ENV_VAR}"
    else:
        path, source = default_data_dir()
    if not path.is_dir():
        raise DataError(f"data directory {path} (from {source}) does not exist; {_HOW_TO}")
    return path


def load_split(name: str, split: str, data_dir: str | Path | None = None) -> Batch:
    """Loads one split of a data set.

    Args:
        name: Registry name (see :func:`list_datasets`).
        split: ``"train"`` or ``"test"`` (TinyImageNet's ``test`` is its ``val`` folder).
        data_dir: Data root; see :func:`resolve_data_dir`.

    Returns:
        Images float32 ``[N, C, H, W]`` in ``[0, 1]`` and labels int64 ``[N]``.

    Raises:
        DataError: Files are missing, corrupt or inconsistent.
        ConfigError: ``split`` is not ``"train"`` or ``"test"``.
    """
    spec = get_data_spec(name)
    if split not in _SPLITS:
        raise ConfigError(f"unknown split {split!r}; use 'train' or 'test'")
    root = resolve_data_dir(data_dir)
    images, labels = _READERS[name](root, split)
    _check_arrays(spec, images, labels, root)
    logger.info("loaded %s/%s from %s: %d images", name, split, root, len(labels))
    x = torch.from_numpy(images.astype(np.float32)).div_(255.0)
    return x, torch.from_numpy(labels.astype(np.int64))


def _check_arrays(spec: DataSpec, images: np.ndarray, labels: np.ndarray, root: Path) -> None:
    """Checks shapes and label range against the spec."""
    where, found = f"{spec.name} under {root}", f"{images.dtype} {images.shape}"
    if images.dtype != np.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != spec.shape:
        raise DataError(f"{where}: expected uint8 images [N, {spec.shape}], found {found}")
    if labels.shape != (images.shape[0],):
        raise DataError(f"{where}: {images.shape[0]} images but labels of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise DataError(f"{where}: labels outside 0..{spec.num_classes - 1}")


def _require(path: Path) -> Path:
    """Returns ``path`` if it exists, else raises a DataError naming it."""
    if not path.exists():
        raise DataError(f"missing data file {path}; {_HOW_TO}")
    return path


def _idx_path(raw_dir: Path, stem: str) -> Path:
    """Returns ``stem.gz``, or the un-gzipped ``stem`` when only that exists."""
    gz, plain = raw_dir / f"{stem}.gz", raw_dir / stem
    return plain if plain.is_file() and not gz.is_file() else _require(gz)


def _read_bytes(path: Path) -> bytes:
    """Reads a file, gunzipping ``.gz``; a bad stream becomes a DataError."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read {path}: expected a complete gzip stream ({exc}); fetch it again") from exc


def _read_idx(path: Path) -> np.ndarray:
    return _read_idx_cached(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _read_idx_cached(path_str: str, mtime_ns: int) -> np.ndarray:
    """Parses an idx file; cached per (path, mtime). The array is read-only."""
    del mtime_ns  # part of the cache key only
    path = Path(path_str)
    data = _read_bytes(path)
    magic = int.from_bytes(data[:4], "big")
    ndim = _IDX_MAGIC.get(magic, 0)
    header = 4 + 4 * ndim
    if not ndim or len(data) < header:
        raise DataError(f"{path}: expected an idx header (magic 2051 or 2049), found magic {magic}")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    count, kind = int(np.prod(dims)), ("image" if ndim == 3 else "label")
    if len(data) - header != count:
        raise DataError(f"{path}: expected {count} {kind} bytes, found {len(data) - header}")
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)
    array.flags.writeable = False
    return array


def _mnist_reader(folder: str):
    """Returns a reader for ``<root>/<folder>/raw`` idx files (MNIST layout)."""

    def read(root: Path, split: str) -> Arrays:
        raw, prefix = root / folder / "raw", ("train" if split == "train" else "t10k")
        images = _read_idx(_idx_path(raw, f"{prefix}-images-idx3-ubyte"))
        labels = _read_idx(_idx_path(raw, f"{prefix}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"{raw}: {len(images)} {prefix} images but {len(labels)} labels "
                f"(dims {images.ndim} and {labels.ndim}, expected 3 and 1)"
            )
        return images[:, None], labels

    return read


def _read_cifar_batch(path: Path) -> Arrays:
    """Reads one batch of the official CIFAR-10 python layout."""
    try:
        with _require(path).open("rb") as f:
            # The official CIFAR-10 format is a pickle (dict of b'data', b'labels', ...): read with an
            # unpickler that builds only containers and numpy arrays, so a planted file cannot run code.
            batch = load_plain_pickle(f, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (
        OSError,
        EOFError,
        pickle.UnpicklingError,
        KeyError,
        TypeError,
        ValueError,
        AttributeError,
        IndexError,
    ) as exc:
        raise DataError(
            f"cannot read CIFAR batch {path}: {exc}; download the python version of CIFAR-10 "
            "(cifar-10-python.tar.gz) again"
        ) from exc
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(f"{path}: expected data [N, 3072] and N labels, found {data.shape}, {len(labels)}")
    return data.reshape(-1, 3, 32, 32), labels  # rows are R(1024) G(1024) B(1024), row-major


def _read_cifar10(root: Path, split: str) -> Arrays:
    folder = root / "cifar-10-batches-py"
    if not folder.is_dir() and (root / "cifar-10-partial").is_dir():
        raise DataError(f"missing {folder}; only cifar-10-partial is there, use data set 'cifar10-partial'")
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    parts = [_read_cifar_batch(folder / n) for n in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@functools.lru_cache(maxsize=4)
def _read_npz_cached(path_str: str, mtime_ns: int) -> dict[str, np.ndarray]:
    del mtime_ns  # part of the cache key only
    try:
        with np.load(path_str, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zlib.error, EOFError) as exc:
        raise DataError(f"cannot read {path_str}: {exc!r}") from exc


def _read_cifar10_partial(root: Path, split: str) -> Arrays:
    path = _require(root / "cifar-10-partial" / "cifar10_prefix_subset.npz")
    arrays = _read_npz_cached(str(path), path.stat().st_mtime_ns)
    keys = (f"{split}_x", f"{split}_y")
    if any(k not in arrays for k in keys):
        raise DataError(f"{path}: expected arrays {keys}, found {sorted(arrays)}")
    return arrays[keys[0]], arrays[keys[1]]


def _decode_jpegs(paths: list[Path]) -> np.ndarray:
    """Decodes 64x64 images to uint8 ``[N, 3, 64, 64]`` RGB with Pillow (imported lazily)."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise DataError("TinyImageNet needs Pillow to decode JPEGs; pip install pillow") from exc
    out = []
    for path in paths:
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
        except OSError as exc:
            raise DataError(f"cannot decode image {path}: {exc}") from exc
        if rgb.size != (64, 64):
            raise DataError(f"{path}: expected a 64x64 image, found {rgb.size[0]}x{rgb.size[1]}")
        out.append(np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1))
    return np.stack(out)


def _tiny_files(base: Path, split: str, wnids: list[str]) -> list[tuple[Path, int]]:
    """Lists (image, class index) pairs: train folders, or val via val_annotations.txt."""
    if split == "train":
        return [
            (path, idx)
            for idx, wnid in enumerate(wnids)
            for path in sorted(_require(base / "train" / wnid / "images").glob("*.JPEG"))
        ]
    ann = _require(base / "val" / "val_annotations.txt")
    index = {w: i for i, w in enumerate(wnids)}
    rows = [(n, line.split("\t")) for n, line in enumerate(ann.read_text().splitlines(), 1) if line.strip()]
    for n, fields in rows:
        if len(fields) < 2 or fields[1] not in index:
            raise DataError(f"{ann}:{n}: expected '<file> TAB <wnid in wnids.txt>', found {fields[:2]}")
    return [(_require(base / "val" / "images" / f[0]), index[f[1]]) for _, f in rows]


def _read_tinyimagenet(root: Path, split: str) -> Arrays:
    base = root / "tiny-imagenet-200"
    wnids = sorted(set(_require(base / "wnids.txt").read_text().split()))
    files = _tiny_files(base, split, wnids)
    if not files:
        raise DataError(f"no {split} JPEGs found under {base}")
    return _decode_jpegs([f[0] for f in files]), np.asarray([f[1] for f in files], dtype=np.int64)


_READERS = {
    "mnist": _mnist_reader("MNIST"),
    "fashion-mnist": _mnist_reader("FashionMNIST"),
    "cifar10": _read_cifar10,
    "cifar10-partial": _read_cifar10_partial,
    "tinyimagenet": _read_tinyimagenet,
}


def normalize(x: torch.Tensor, spec: DataSpec) -> torch.Tensor:
    """Maps pixel-space ``x`` ``[..., C, H, W]`` to ``(x - mean) / std`` per channel.

    An eps-ball in pixel space becomes ``eps / std`` per channel after this.
    """
    channels = len(spec.mean)
    if x.dim() < 3 or x.shape[-3] != channels:
        raise DataError(f"normalize for {spec.name}: expected {channels} channels, found {tuple(x.shape)}")
    mean, std = (torch.tensor(v, dtype=x.dtype, device=x.device).view(channels, 1, 1) for v in (spec.mean, spec.std))
    return (x - mean) / std

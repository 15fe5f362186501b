"""Tests for adcert_plugin.data: real files, corrupt files, synthetic layouts, loaders."""

from __future__ import annotations

import dataclasses
import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_data_dir

from adcert_plugin import data as D, splits
from adcert_plugin.errors import ConfigError, DataError

REAL = shared_data_dir()  # the README's data rule, as the CLI applies it
needs_real = pytest.mark.skipif(REAL is None, reason="real data folder absent (set ADCERT_DATA or ../shared/data)")


@pytest.fixture(scope="module")
def loaded():
    """Loads each real split once per module."""
    cache = {}

    def get(name, split):
        if (name, split) not in cache:
            cache[name, split] = D.load_split(name, split, REAL)
        return cache[name, split]

    return get


# --- registry --------------------------------------------------------------------------


def test_registry_constants():
    assert D.list_datasets() == sorted(["mnist", "fashion-mnist", "cifar10", "cifar10-partial", "tinyimagenet"])
    spec = D.get_data_spec("cifar10")
    assert spec.shape == (3, 32, 32) and spec.num_classes == 10 and spec.augmentation == "cifar"
    assert spec.mean == (0.4914, 0.4822, 0.4465) and spec.std == (0.2023, 0.1994, 0.2010)
    assert D.get_data_spec("cifar10-partial").mean == spec.mean
    tin = D.get_data_spec("tinyimagenet")
    assert tin.shape == (3, 64, 64) and tin.num_classes == 200
    assert D.get_data_spec("mnist") == D.DataSpec("mnist", (1, 28, 28), 10, (0.0,), (1.0,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "x"


def test_unknown_name_lists_known():
    with pytest.raises(DataError) as err:
        D.get_data_spec("svhn")
    for name in D.list_datasets():
        assert name in str(err.value)


def test_missing_dir_mentions_env(tmp_path, monkeypatch):
    missing = tmp_path / "nope"
    with pytest.raises(DataError) as err:
        D.resolve_data_dir(missing)
    msg = str(err.value)
    assert str(missing) in msg and "ADCERT_DATA" in msg and "--data-dir" in msg and "\n" not in msg
    monkeypatch.setenv("ADCERT_DATA", str(tmp_path))
    assert D.resolve_data_dir(None) == tmp_path.resolve()
    monkeypatch.setenv("ADCERT_DATA", str(missing))
    with pytest.raises(DataError, match="ADCERT_DATA"):
        D.load_split("mnist", "train")


def test_missing_file_names_path(tmp_path):
    with pytest.raises(DataError) as err:
        D.load_split("mnist", "test", tmp_path)
    assert str(tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz") in str(err.value)
    assert "ADCERT_DATA" in str(err.value)
    with pytest.raises(ConfigError):
        D.load_split("mnist", "val", tmp_path)


# --- real files ------------------------------------------------------------------------


@needs_real
def test_mnist_real(loaded):
    x, y = loaded("mnist", "train")
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min() >= 0 and x.max() <= 1 and x.max() == 1
    assert torch.bincount(y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    xt, yt = loaded("mnist", "test")
    assert xt.shape == (10000, 1, 28, 28)
    assert torch.bincount(yt).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@needs_real
def test_fashion_mnist_real(loaded):
    x, y = loaded("fashion-mnist", "train")
    xt, yt = loaded("fashion-mnist", "test")
    assert x.shape == (60000, 1, 28, 28) and xt.shape == (10000, 1, 28, 28)
    assert torch.bincount(y).tolist() == [6000] * 10
    assert torch.bincount(yt).tolist() == [1000] * 10
    assert not torch.equal(xt[:100], loaded("mnist", "test")[0][:100])


@needs_real
def test_cifar10_partial_real(loaded):
    x, y = loaded("cifar10-partial", "train")
    xt, yt = loaded("cifar10-partial", "test")
    assert x.shape == (5085, 3, 32, 32) and xt.shape == (1017, 3, 32, 32)
    assert len(y) == 5085 and len(yt) == 1017
    assert int(y.min()) >= 0 and int(y.max()) <= 9 and int(yt.min()) >= 0 and int(yt.max()) <= 9
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert abs(float(x[:, 0].mean()) - 0.4914) < 0.02  # CIFAR red-channel mean


@needs_real
def test_cifar10_full_missing_points_to_partial():
    with pytest.raises(DataError, match="cifar10-partial"):
        D.load_split("cifar10", "train", REAL)


# --- corrupt MNIST -------------------------------------------------------------------


def _mnist_dir(tmp_path: Path) -> Path:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    return raw


@needs_real
def test_truncated_gzip(tmp_path):
    raw = _mnist_dir(tmp_path)
    src = REAL / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    target = raw / "t10k-images-idx3-ubyte.gz"
    target.write_bytes(src.read_bytes()[:2000])
    with pytest.raises(DataError) as err:
        D.load_split("mnist", "test", tmp_path)
    assert str(target) in str(err.value) and "\n" not in str(err.value)


def test_short_payload(tmp_path):
    raw = _mnist_dir(tmp_path)
    target = raw / "t10k-images-idx3-ubyte.gz"
    header = (2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (60000, 28, 28))
    target.write_bytes(gzip.compress(header + bytes(1234)))
    with pytest.raises(DataError) as err:
        D.load_split("mnist", "test", tmp_path)
    assert str(target) in str(err.value) and "expected 47040000 image bytes, found 1234" in str(err.value)


def test_bad_magic_and_label_mismatch(tmp_path):
    raw = _mnist_dir(tmp_path)
    images = (2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (3, 28, 28)) + bytes(3 * 784)
    labels = (2049).to_bytes(4, "big") + (2).to_bytes(4, "big") + bytes([1, 2])
    (raw / "t10k-images-idx3-ubyte").write_bytes(images)  # un-gzipped is accepted
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    with pytest.raises(DataError, match="3 t10k images but 2 labels"):
        D.load_split("mnist", "test", tmp_path)
    labels = (2049).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes([1, 2, 9])
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    x, y = D.load_split("mnist", "test", tmp_path)
    assert x.shape == (3, 1, 28, 28) and y.tolist() == [1, 2, 9]
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x09\x99" + labels[4:]))
    with pytest.raises(DataError, match="magic"):
        D.load_split("mnist", "test", tmp_path)


# --- synthetic CIFAR-10 and TinyImageNet ---------------------------------------------


def _write_cifar(folder: Path, name: str, data: np.ndarray, labels: list[int]) -> None:
    with open(folder / name, "wb") as f:
        pickle.dump({b"data": data, b"labels": labels, b"batch_label": b"x"}, f)


def test_cifar10_full_synthetic(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (4, 3072), dtype=np.uint8) for _ in range(6)]
    for i in range(5):
        _write_cifar(folder, f"data_batch_{i + 1}", batches[i], [i, i, i, 9])
    _write_cifar(folder, "test_batch", batches[5], [0, 1, 2, 3])
    x, y = D.load_split("cifar10", "train", tmp_path)
    assert x.shape == (20, 3, 32, 32) and y.tolist() == [v for i in range(5) for v in (i, i, i, 9)]
    row = batches[1][2]  # third image of batch 2 -> index 6
    assert torch.equal(x[6, 0], torch.from_numpy(row[:1024].reshape(32, 32)).float() / 255)  # R first
    assert torch.equal(x[6, 2], torch.from_numpy(row[2048:].reshape(32, 32)).float() / 255)
    xt, yt = D.load_split("cifar10", "test", tmp_path)
    assert xt.shape == (4, 3, 32, 32) and yt.tolist() == [0, 1, 2, 3]
    (folder / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DataError, match="test_batch"):
        D.load_split("cifar10", "test", tmp_path)


def test_tinyimagenet_synthetic(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    base = tmp_path / "tiny-imagenet-200"
    wnids = ["n02", "n01"]  # unsorted on purpose: index = position in sorted order
    base.mkdir()
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    colors = {"n01": (255, 0, 0), "n02": (0, 0, 255)}
    for wnid in wnids:
        folder = base / "train" / wnid / "images"
        folder.mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (64, 64), colors[wnid]).save(folder / f"{wnid}_{k}.JPEG", quality=95)
    (base / "val" / "images").mkdir(parents=True)
    Image.new("L", (64, 64), 128).save(base / "val" / "images" / "val_0.JPEG")  # grey -> RGB
    Image.new("RGB", (64, 64), colors["n01"]).save(base / "val" / "images" / "val_1.JPEG")
    ann = "val_0.JPEG\tn02\t0\t0\t63\t63\n\nval_1.JPEG\tn01\t0\t0\t63\t63\n"  # blank line is skipped
    (base / "val" / "val_annotations.txt").write_text(ann)
    x, y = D.load_split("tinyimagenet", "train", tmp_path)
    assert x.shape == (4, 3, 64, 64) and y.tolist() == [0, 0, 1, 1]
    assert float(x[0, 0].mean()) > 0.9 and float(x[0, 2].mean()) < 0.1  # n01 is red
    xt, yt = D.load_split("tinyimagenet", "test", tmp_path)
    assert xt.shape == (2, 3, 64, 64) and yt.tolist() == [1, 0]
    assert abs(float(xt[0].mean()) - 128 / 255) < 0.02
    Image.new("RGB", (32, 32)).save(base / "val" / "images" / "val_1.JPEG")
    with pytest.raises(DataError, match="64x64"):
        D.load_split("tinyimagenet", "test", tmp_path)


# --- augmentation, loaders, helpers --------------------------------------------------


def _ramp(b: int, c: int, s: int) -> torch.Tensor:
    return torch.linspace(0, 1, s * s).view(1, 1, s, s).repeat(b, c, 1, 1)


@pytest.mark.parametrize("kind,size", [("cifar", 32), ("tinyimagenet", 64)])
def test_augment_shape_range_changes(kind, size):
    x = _ramp(64, 3, size)
    out = D.augment_batch(x, kind, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    changed = (out != x).flatten(1).any(1)
    assert changed.sum() > 32  # most images moved
    again = D.augment_batch(x, kind, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # same generator seed, same result
    # Every output row is a shifted (maybe mirrored) window of the edge-padded input.
    assert set(out[:, 0, 0, 0].unique().tolist()) <= set(x[0, 0].unique().tolist())


def test_augment_pure_flip_and_crop_pieces():
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(200, 1, 1, 1)
    g = torch.Generator().manual_seed(1)
    flipped = splits._random_flip(x, g)
    is_flip = (flipped == x.flip(-1)).flatten(1).all(1)
    assert 60 < int(is_flip.sum()) < 140 and ((flipped == x).flatten(1).all(1) | is_flip).all()
    cropped = splits._random_crop(x, 1, g)
    padded = torch.nn.functional.pad(x[:1], (1, 1, 1, 1), mode="replicate")[0, 0]
    windows = {tuple(padded[i : i + 4, j : j + 4].flatten().tolist()) for i in range(3) for j in range(3)}
    seen = {tuple(c.flatten().tolist()) for c in cropped[:, 0]}
    assert seen <= windows and len(seen) == 9


def test_augment_none_and_unknown():
    x = torch.rand(2, 1, 28, 28)
    assert D.augment_batch(x, "none") is x
    with pytest.raises(ConfigError):
        D.augment_batch(x, "mixup")
    with pytest.raises(ConfigError):
        D.make_loader(x, torch.zeros(2, dtype=torch.long), 2, True, 0, augmentation="mixup")


def _batches(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_make_loader_repeatable():
    x = torch.rand(50, 3, 32, 32)
    y = torch.arange(50)
    a = _batches(D.make_loader(x, y, 16, True, seed=3, augmentation="cifar"))
    b = _batches(D.make_loader(x, y, 16, True, seed=3, augmentation="cifar"))
    c = _batches(D.make_loader(x, y, 16, True, seed=4, augmentation="cifar"))
    assert [t[0].shape[0] for t in a] == [16, 16, 16, 2]
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    assert not torch.equal(a[0][1], c[0][1])
    assert sorted(torch.cat([t[1] for t in a]).tolist()) == list(range(50))
    plain = _batches(D.make_loader(x, y, 16, False, seed=0, drop_last=True))
    assert len(plain) == 3 and torch.equal(plain[0][0], x[:16]) and plain[2][1].tolist() == list(range(32, 48))


def test_subset_and_normalize():
    x = torch.rand(100, 3, 4, 4)
    y = torch.arange(100)
    xs, ys = D.subset(x, y, 10, seed=0)
    assert ys.tolist() == sorted(ys.tolist()) and len(set(ys.tolist())) == 10 and torch.equal(xs, x[ys])
    assert torch.equal(D.subset(x, y, 10, seed=0)[1], ys)
    assert set(ys.tolist()) <= set(D.subset(x, y, 30, seed=0)[1].tolist())
    with pytest.raises(DataError):
        D.subset(x, y, 101, seed=0)
    spec = D.get_data_spec("cifar10")
    z = D.normalize(x, spec)
    assert torch.allclose(z[:, 1], (x[:, 1] - 0.4822) / 0.1994)
    assert torch.equal(D.normalize(x[:, :1], D.get_data_spec("mnist")), x[:, :1])
    with pytest.raises(DataError):
        D.normalize(x[:, :1], spec)


# --- the data rule (README "Data"): --data-dir, $ADCERT_DATA, ../shared/data beside the checkout, ./data --------


def _fake_checkout(tmp_path: Path, with_shared: bool) -> Path:
    checkout = tmp_path / "clone"
    (checkout / "adcert_plugin").mkdir(parents=True)
    (checkout / "setup.py").write_text("")
    if with_shared:
        (tmp_path / "shared" / "data").mkdir(parents=True)
    return checkout


def test_data_rule_finds_shared_data_beside_a_fresh_clone(tmp_path, monkeypatch):
    """README step 1 after `. .venv/bin/activate`: no ADCERT_DATA, data in ../shared/data beside the clone."""
    checkout = _fake_checkout(tmp_path, with_shared=True)
    monkeypatch.delenv(D.ENV_VAR, raising=False)
    monkeypatch.setattr(D, "checkout_root", lambda: checkout)
    monkeypatch.chdir(tmp_path)
    assert D.resolve_data_dir() == (tmp_path / "shared" / "data").resolve()
    monkeypatch.setenv(D.ENV_VAR, str(tmp_path))  # the variable still wins, and the flag over it
    assert D.resolve_data_dir() == tmp_path.resolve()
    assert D.resolve_data_dir(checkout) == checkout.resolve()


def test_data_rule_installed_copy_uses_dot_data_and_says_how_to_point(tmp_path, monkeypatch):
    monkeypatch.delenv(D.ENV_VAR, raising=False)
    monkeypatch.setattr(D, "checkout_root", lambda: None)  # site-packages: nothing "beside the checkout"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as err:
        D.resolve_data_dir()
    msg = str(err.value)
    assert "default ./data" in msg and "--data-dir" in msg and "ADCERT_DATA" in msg and "../shared/data" in msg
    (tmp_path / "data").mkdir()
    assert D.resolve_data_dir() == (tmp_path / "data").resolve()


def test_the_real_checkout_is_recognised_and_an_installed_one_is_not(tmp_path, monkeypatch):
    assert D.checkout_root() == Path(__file__).resolve().parents[1]
    fake = tmp_path / "site-packages" / "adcert_plugin" / "data.py"
    fake.parent.mkdir(parents=True)
    monkeypatch.setattr(D, "__file__", str(fake))
    assert D.checkout_root() is None


def test_tests_find_data_by_the_same_rule_only(tmp_path, monkeypatch):
    """No hard-coded fallback in the suite: a wrong ADCERT_DATA is not papered over by ../shared/data."""
    import conftest

    beside = tmp_path / "shared" / "data" / "MNIST" / "raw"  # data that a hard-coded fallback would find
    beside.mkdir(parents=True)
    monkeypatch.setattr(conftest, "REPO", tmp_path / "clone")
    monkeypatch.setenv(D.ENV_VAR, str(tmp_path / "nowhere"))
    assert conftest.shared_data_dir() is None
    write_fake = tmp_path / "d" / "MNIST" / "raw"
    write_fake.mkdir(parents=True)
    monkeypatch.setenv(D.ENV_VAR, str(tmp_path / "d"))
    assert conftest.shared_data_dir() == (tmp_path / "d").resolve()


def test_every_data_dir_help_states_the_rule():
    from click.testing import CliRunner

    from adcert_plugin.cli import eval_cmd, train_cmd
    from vnncomp.cli import export_cmd

    for command in (train_cmd, eval_cmd, export_cmd):
        text = " ".join(CliRunner().invoke(command, ["--help"], terminal_width=200).output.split())
        assert "$ADCERT_DATA, else ../shared/data beside the source checkout when it exists, else ./data" in text

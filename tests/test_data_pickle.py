"""CIFAR-10 python batches are pickles: a planted one must not run code (issue 36)."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

import adcert_plugin.data as D
from adcert_plugin.errors import DataError


def _write_batches(root, make):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(make(name))
    return folder


def _real_batch(name, n=4, protocol=2):
    rng = np.random.default_rng(len(name))
    batch = {
        b"batch_label": name.encode(),
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [b"x.png"] * n,
    }
    return pickle.dumps(batch, protocol=protocol)


class _Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):  # what an attacker's file does: call a function while unpickling
        return (open, (self.target, "w"))


@pytest.mark.parametrize("protocol", [2, 4])
def test_official_layout_still_loads(tmp_path, protocol):
    _write_batches(tmp_path, lambda name: _real_batch(name, protocol=protocol))
    x, y = D.load_split("cifar10", "test", tmp_path)
    assert tuple(x.shape) == (4, 3, 32, 32) and len(y) == 4


def test_a_planted_payload_is_refused_and_never_runs(tmp_path):
    target = tmp_path / "pwned"
    _write_batches(tmp_path, lambda name: pickle.dumps({b"data": _Payload(str(target)), b"labels": []}))
    with pytest.raises(DataError, match=r"names io.open.*could run code"):
        D.load_split("cifar10", "train", tmp_path)
    assert not target.exists()


def test_a_payload_via_os_system_is_refused(tmp_path):
    target = tmp_path / "pwned2"

    class System:
        def __reduce__(self):
            return (os.system, (f"touch {target}",))

    _write_batches(tmp_path, lambda name: pickle.dumps(System()))
    with pytest.raises(DataError, match="refused"):
        D.load_split("cifar10", "test", tmp_path)
    assert not target.exists()


@pytest.mark.parametrize("content", [b"", b"\x80\x02}q\x00(", b"garbage", pickle.dumps([1, 2, 3])])
def test_truncated_or_wrong_batches_are_one_data_error(tmp_path, content):
    _write_batches(tmp_path, lambda name: content)
    with pytest.raises(DataError, match="cannot read CIFAR batch"):
        D.load_split("cifar10", "test", tmp_path)

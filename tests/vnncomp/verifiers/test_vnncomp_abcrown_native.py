"""abCROWN loading adcert's network and test split itself (abcrown_native.py) answers as the ONNX path does.

The YAML is checked without abCROWN; the comparison runs the real alpha-beta-CROWN (``make abcrown``)
on 50 samples of a small MLP trained on fake MNIST, both ways, and is skipped without it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from complete_fixtures import EPS, trained_mlp

from adcert_plugin.bounds import InputBox
from adcert_plugin.data import load_split
from adcert_plugin.errors import VerifierError
from adcert_plugin.training import load_model
from vnncomp.export import abcrown_native
from vnncomp.export.abcrown import NATIVE_INDICES, write_native_configs
from vnncomp.export.benchmark import MODEL_FILE, export_benchmark
from vnncomp.export.instances import read_metadata
from vnncomp.results import read_abcrown_pickle
from vnncomp.verifiers import find_abcrown, find_abcrown_python, verify_benchmark

N = 50


@pytest.fixture(scope="module")
def native_bench(tmp_path_factory):
    folder = tmp_path_factory.mktemp("native")
    checkpoint, data_root = trained_mlp(folder)
    bench = folder / "bench"
    info = export_benchmark(checkpoint, bench, data_dir=data_root, eps=2 * EPS, n=N, timeout=60.0, end=64)
    write_native_configs(bench, [e["index"] for e in info.instances], 60.0, bench / MODEL_FILE, data_root, 2 * EPS, 10)
    return bench, checkpoint, data_root


def test_the_loader_gives_adcerts_network_and_box(native_bench):
    bench, checkpoint, data_root = native_bench
    x, labels, data_max, data_min, eps = abcrown_native.data(None, str(checkpoint), str(data_root), 2 * EPS)
    images, y = load_split("mnist", "test", data_root)
    box = InputBox.from_pixels(images[:5], 2 * EPS, (0.0,), (1.0,))
    # abCROWN's box: (X ± eps) clipped to [data_min, data_max]
    assert torch.allclose((x[:5] - eps).clamp(min=data_min), box.lower_norm)
    assert torch.allclose((x[:5] + eps).clamp(max=data_max), box.upper_norm)
    assert torch.equal(labels, y)
    net = abcrown_native.model(str(checkpoint))
    ref, _ = load_model(checkpoint)
    assert torch.equal(net(x[:5]), ref(x[:5]))
    config = yaml.safe_load((bench / "abcrown_native_cpu.yaml").read_text())
    assert config["model"]["name"].startswith(f'Customized("{abcrown_native.__file__}", "model"')
    assert "csv_name" not in config["general"] and config["data"]["data_idx_file"] == str(bench / NATIVE_INDICES)
    indices = [int(v) for v in (bench / NATIVE_INDICES).read_text().split()]
    assert indices == [e["index"] for e in read_metadata(bench)["instances"]] and len(indices) == N


def _abcrown_found() -> bool:
    try:
        find_abcrown(), find_abcrown_python()
    except VerifierError:
        return False
    return True


@pytest.mark.skipif(not _abcrown_found(), reason="alpha-beta-CROWN absent (`make abcrown`)")
def test_native_answers_equal_the_onnx_paths(native_bench):
    bench, _, _ = native_bench
    onnx_results, _ = verify_benchmark(bench, "abcrown", mode="csv", device="cpu", timeout=60, force=True)
    folder = bench / "results" / "abcrown"
    log = folder / "native.log"
    with log.open("w") as out:
        status = subprocess.run(
            [
                find_abcrown_python(),
                str(find_abcrown() / "abcrown.py"),
                "--config",
                str(bench / "abcrown_native_cpu.yaml"),
            ],
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=1800,
        ).returncode
    assert status == 0, log.read_text()[-2000:]
    names = [r.instance for r in onnx_results]  # instances.csv order = the index list's order
    native = read_abcrown_pickle(folder / "native_cpu.pkl", names)
    assert len(native) == len(onnx_results) == N
    assert [r.result for r in native] == [r.result for r in onnx_results], [
        (o.instance, o.result, n.result) for o, n in zip(onnx_results, native) if o.result != n.result
    ]
    assert {r.result for r in native} >= {"unsat"}

"""Other people's results: VNN-COMP results.csv (with counterexample files) and the 2026 JSON records."""

from __future__ import annotations

import gzip
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tiny_benchmarks import padded_cnn_benchmark

from adcert_plugin.errors import ConfigError
from vnncomp.export.instances import read_instances, write_instances_csv
from vnncomp.export.vnnlib import format_number
from vnncomp.results import check_answers, write_results_table
from vnncomp.results.external import detect_format, read_2026_records, read_source, read_vnncomp_csv


@pytest.fixture(scope="module")
def padded(tmp_path_factory):
    root = tmp_path_factory.mktemp("padded") / "bench"
    return root, padded_cnn_benchmark(root)


def _instances(root: Path) -> dict:
    return {i.name: i for i in read_instances(root)}


def _published(tmp_path: Path, facts, unsat_word: str = "holds") -> Path:
    folder = tmp_path / "published" / "other_tool" / "tiny_bench"
    folder.mkdir(parents=True)
    (folder / "results.csv").write_text(
        "tiny_bench,./benchmarks/tiny/onnx/tiny.onnx,./benchmarks/tiny/vnnlib/sat.vnnlib.gz,1.5,violated,3.25\n"
        f"tiny_bench,./benchmarks/tiny/onnx/tiny.onnx,./benchmarks/tiny/vnnlib/unsat.vnnlib,1.5,{unsat_word},4.5\n"
        "acasxu,./benchmarks/acasxu/onnx/ACASXU_run2a_1_1_batch_2000.onnx,./benchmarks/acasxu/prop_1.vnnlib,"
        ".007,holds,7.3\n"
    )
    x = facts["point"].numpy().ravel()
    text = "sat\n(" + "\n".join(f"(X_{i} {format_number(v)})" for i, v in enumerate(x)) + ")\n"
    (folder / "tiny_sat.counterexample.gz").write_bytes(gzip.compress(text.encode()))
    return folder


def test_vnncomp_results_csv_rows_and_counterexamples(tmp_path, padded):
    root, facts = padded
    folder = _published(tmp_path, facts)
    results = {r.instance: r for r in read_vnncomp_csv(folder / "results.csv", _instances(root))}
    assert set(results) == {"sat", "unsat"}, "the acasxu row belongs to another benchmark"
    assert results["sat"].verifier == "vnncomp:other_tool" and results["sat"].result == "sat"
    assert results["sat"].seconds == 3.25 and np.allclose(results["sat"].counterexample, facts["point"].numpy().ravel())
    assert results["unsat"].result == "unsat" and results["unsat"].counterexample is None
    assert detect_format(folder) == "vnncomp-csv" and detect_format(folder / "results.csv") == "vnncomp-csv"


def test_published_unsat_on_a_falsified_instance_is_flagged(tmp_path, padded):
    root, facts = padded
    bench = tmp_path / "bench"
    shutil.copytree(root, bench)
    folder = _published(tmp_path, facts)
    (folder / "results.csv").write_text((folder / "results.csv").read_text().replace("violated", "holds", 1))
    results, kind = read_source(folder, _instances(bench))
    checked = check_answers(bench, results)
    assert kind == "vnncomp-csv" and len(checked.contradictions) == 1
    assert checked.contradictions[0].startswith("sat: vnncomp:other_tool says unsat but a counterexample is in hand")


def test_vnncomp_csv_for_another_benchmark_is_refused(tmp_path, padded):
    root, facts = padded
    folder = _published(tmp_path, facts)
    (folder / "results.csv").write_text("acasxu,a.onnx,prop_1.vnnlib,0.1,holds,1.0\n")
    with pytest.raises(ConfigError, match="names an instance of this benchmark"):
        read_vnncomp_csv(folder, _instances(root))


def _records_benchmark(tmp_path: Path, root: Path) -> Path:
    """The padded CNN's two properties under 2026-style names: <model>_idx<i>_sample<k>."""
    bench = tmp_path / "b2026"
    (bench / "vnnlib").mkdir(parents=True)
    shutil.copytree(root / "onnx", bench / "onnx")
    shutil.copy(root / "vnnlib/sat.vnnlib", bench / "vnnlib/cnn7_idx5_sample0.vnnlib")
    shutil.copy(root / "vnnlib/unsat.vnnlib", bench / "vnnlib/cnn7_idx7_sample1.vnnlib")
    write_instances_csv(
        bench / "instances.csv",
        [
            ("onnx/tiny.onnx", "vnnlib/cnn7_idx5_sample0.vnnlib", 30),
            ("onnx/tiny.onnx", "vnnlib/cnn7_idx7_sample1.vnnlib", 30),
        ],
    )
    return bench


def test_2026_records_map_by_model_and_index(tmp_path, padded):
    root, _ = padded
    bench = _records_benchmark(tmp_path, root)
    records = {
        "5": {"result": "unsat", "method": "abCROWN", "running_time": 1.25},
        "7": {"result": "timeout", "method": "abCROWN", "running_time": 1007.2},
        "9": {"result": "sat", "method": "abCROWN", "running_time": 0.3},
    }
    path = tmp_path / "cnn7.json"
    path.write_text(json.dumps(records))
    results = read_2026_records(path, _instances(bench))
    assert [(r.instance, r.verifier, r.result, r.seconds) for r in results] == [
        ("cnn7_idx5_sample0", "published:abCROWN", "unsat", 1.25),
        ("cnn7_idx7_sample1", "published:abCROWN", "timeout", 1007.2),
    ]
    assert detect_format(path) == "records-2026"
    with pytest.raises(ConfigError, match="no instance of this benchmark belongs to model 'other'"):
        read_2026_records(path.rename(tmp_path / "other.json"), _instances(bench))


def test_adcert_table_is_detected(tmp_path):
    path = write_results_table(tmp_path / "t.csv", [])
    assert detect_format(path) == "table"
    (tmp_path / "bad.csv").write_text("a,b\n")
    with pytest.raises(ConfigError, match="neither an adcert results table"):
        detect_format(tmp_path / "bad.csv")

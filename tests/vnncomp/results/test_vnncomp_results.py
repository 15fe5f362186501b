"""Verifier result parsers, the restricted unpickler, counterexample checks and the cross-check."""

from __future__ import annotations

import os
import pickle
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from adcert_plugin.errors import ConfigError, SoundnessError, VerifierError
from adcert_plugin.models import create_model
from vnncomp.export.onnx_export import export_onnx, run_onnx
from vnncomp.export.vnnlib import property_from_sample, render_v1
from vnncomp.results import (
    VerifierResult,
    check_counterexample,
    cross_check,
    load_pickle_restricted,
    read_abcrown_pickle,
    read_result_file,
    read_results,
    read_results_table,
    validate_counterexamples,
    write_result_file,
    write_results_table,
)

# abCROWN single_vnnlib results file with --save_adv_example (formats.md §2.3)
ABCROWN_SAT = "sat\n((X_0  0.125)\n(X_1  -0.5)\n(X_2  0.75)\n(Y_0  1.5)\n(Y_1  2.25))"
# NeuralSAT main.py with --export_runtime --export_cex: '{status},{runtime:.04f}', then
# get_adv_string(): "(" + "\n ".join("(X_i v)" ..., "(Y_j v)" ...) + ")"
NEURALSAT_SAT = "sat,0.4321\n((X_0 0.125)\n (X_1 -0.5)\n (X_2 0.75)\n (Y_0 1.5)\n (Y_1 2.25))\n"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, word",
    [("unsat", "unsat"), ("unsat\n", "unsat"), ("timeout", "timeout"), ("holds", "unsat"), ("violated\n", "sat")],
)
def test_abcrown_single_words(tmp_path, text, word):
    result = read_result_file(_write(tmp_path, "inst.txt", text), "abcrown")
    assert (result.instance, result.result, result.counterexample) == ("inst", word, None)


@pytest.mark.parametrize(
    "text, verifier, seconds", [(ABCROWN_SAT, "abcrown", None), (NEURALSAT_SAT, "neuralsat", 0.4321)]
)
def test_sat_with_counterexample(tmp_path, text, verifier, seconds):
    result = read_result_file(_write(tmp_path, "p_idx3.txt", text), verifier)
    assert result.result == "sat" and result.instance == "p_idx3"
    assert result.counterexample.tolist() == [0.125, -0.5, 0.75]
    assert result.output.tolist() == [1.5, 2.25]
    assert np.isnan(result.seconds) if seconds is None else result.seconds == seconds


@pytest.mark.parametrize(
    "first, word",
    [
        ("unsat,12.5000", "unsat"),
        ("unknown,3.0", "unknown"),
        ("timeout,120.0", "timeout"),
        ("invalid_counterexample,1.0", "error"),
    ],
)
def test_neuralsat_status_lines(tmp_path, first, word):
    result = read_result_file(_write(tmp_path, "a.txt", first + "\n"), "neuralsat")
    assert result.result == word and result.seconds == float(first.split(",")[1])


@pytest.mark.parametrize("text", ["", "maybe", "sat\n((X_0 0.1)\n(X_2 0.3))"])
def test_unreadable_results_raise(tmp_path, text):
    with pytest.raises(VerifierError):
        read_result_file(_write(tmp_path, "a.txt", text), "abcrown")


def test_marabou_file_round_trip(tmp_path):
    original = VerifierResult(
        "net_idx5_eps0.1", "marabou", "sat", 1.5, np.array([0.1, -1e-12, 0.3]), np.array([1.0, 2.5])
    )
    path = write_result_file(tmp_path / "marabou" / "net_idx5_eps0.1.txt", original)
    text = path.read_text()
    assert text.startswith("sat\n((X_0  0.1)\n(X_1  -0.000000000001)") and text.rstrip().endswith("(Y_1  2.5))")
    back = read_result_file(path, "marabou")
    assert back.result == "sat" and np.array_equal(back.counterexample, original.counterexample)
    assert np.array_equal(back.output, original.output)
    assert [r.result for r in read_results(tmp_path / "marabou")] == ["sat"]


def _abcrown_pickle() -> dict:
    summary = defaultdict(list)
    statuses = ["safe-incomplete", "unsafe-pgd", "unknown", "safe (timed out)", "unsafe-bab", "safe"]
    for i, s in enumerate(statuses):
        summary[s].append(i)
    return {
        "summary": summary,
        "results": [[s, np.float64(0.5 + i)] for i, s in enumerate(statuses)],
        "bab_ret": [[0, 0.1, 5, np.float32(0.2), np.array([1, 2])]],
    }


def test_abcrown_pickle_statuses(tmp_path):
    path = tmp_path / "results.pkl"
    path.write_bytes(pickle.dumps(_abcrown_pickle()))
    names = [f"i{k}" for k in range(6)]
    results = read_abcrown_pickle(path, names)
    assert [r.result for r in results] == ["unsat", "sat", "timeout", "timeout", "sat", "unsat"]
    assert [r.seconds for r in results] == [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]
    assert results[1].note == "unsafe-pgd"
    assert [r.instance for r in read_results(path, instances=names)] == names
    with pytest.raises(VerifierError, match="instances"):
        read_abcrown_pickle(path, names[:3])


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.dumps({"summary": {}, "results": [], "x": _Evil(marker)})
    with pytest.raises(VerifierError, match="refusing to load"):
        load_pickle_restricted(data)
    assert not marker.exists()
    path = tmp_path / "r.pkl"
    path.write_bytes(pickle.dumps({"results": [["safe", 1.0]], "model": torch.nn.Linear(1, 1)}))
    with pytest.raises(VerifierError, match="refusing to load"):
        read_abcrown_pickle(path, ["a"])


class _StorageFromBytes:
    """Pickles as torch's own storage rebuild, whose bytes torch.load would unpickle: here, code."""

    def __init__(self, payload: bytes):
        self.payload = payload

    def __reduce__(self):
        return (torch.storage._load_from_bytes, (self.payload,))


def test_abcrown_pickle_with_torch_tensors_reads_without_building_them(tmp_path):
    # what abCROWN writes once an instance reaches branch and bound: tensors in bab_ret
    record = {
        "summary": {"safe": [0], "unknown": [1]},
        "results": [["safe", 3.5], ["unknown", 7.0]],
        "bab_ret": [
            [0, torch.tensor(-0.25), 17, 3.1],
            [1, torch.ones(2, 3, requires_grad=True)[0], 40, 7.0],
            [2, torch.nn.Parameter(torch.zeros(2)), torch.Size([2]), torch.float32],
        ],
    }
    path = tmp_path / "bab.pkl"
    path.write_bytes(pickle.dumps(record))
    results = read_abcrown_pickle(path, ["a", "b"])
    assert [(r.result, r.seconds) for r in results] == [("unsat", 3.5), ("timeout", 7.0)]
    loaded = load_pickle_restricted(path.read_bytes())
    assert all(type(v).__name__ == "OpaqueTensor" for v in (loaded["bab_ret"][0][1], loaded["bab_ret"][1][1]))
    # a tensor's storage bytes are never handed to torch.load: a payload there does not run
    marker = tmp_path / "pwned"
    evil = {"results": [["safe", 1.0]], "bab_ret": [_StorageFromBytes(pickle.dumps(_Evil(marker)))]}
    assert [r.result for r in read_abcrown_pickle(_pickled(tmp_path / "e.pkl", evil), ["a"])] == ["unsat"]
    assert not marker.exists()
    # tensors allowed do not open the door to anything else
    with pytest.raises(VerifierError, match="refusing to load"):
        load_pickle_restricted(pickle.dumps({"results": [], "bab_ret": [torch.ones(1), _Evil(marker)]}))
    assert not marker.exists()


def _pickled(path: Path, record) -> Path:
    path.write_bytes(pickle.dumps(record))
    return path


def test_results_table_round_trip(tmp_path):
    results = [
        VerifierResult("a", "marabou", "unsat", 1.25),
        VerifierResult("b", "marabou", "error", 2.0, note="rejected sat: x, y"),
    ]
    back = read_results_table(write_results_table(tmp_path / "t.csv", results))
    assert [(r.instance, r.result, r.seconds, r.note) for r in back] == [
        ("a", "unsat", 1.25, ""),
        ("b", "error", 2.0, "rejected sat: x, y"),
    ]


# ------------------------------------------------------------ counterexample checks


@pytest.fixture(scope="module")
def tiny_instance(tmp_path_factory):
    """A 2x2 single-channel MLP, a sample x0, and its predicted class."""
    root = tmp_path_factory.mktemp("cex")
    torch.manual_seed(0)
    model = create_model("mlp", (1, 2, 2), 3, hidden=(8,)).eval()
    onnx_path = export_onnx(model, (1, 2, 2), root / "net.onnx").path
    x0 = np.array([[[0.2, 0.4], [0.6, 0.8]]], dtype=np.float32)
    pred = int(run_onnx(onnx_path, x0[None]).argmax())
    return root, onnx_path, x0, pred


def _vnnlib(root: Path, x0, label: int, eps: float) -> Path:
    path = root / f"p_{label}_{eps}.vnnlib"
    path.write_text(render_v1(property_from_sample(x0, label, eps, (0.0,), (1.0,), 3)))
    return path


def test_counterexample_accepted_when_valid(tiny_instance):
    root, onnx_path, x0, pred = tiny_instance
    wrong = (pred + 1) % 3  # x0 itself violates robustness for a label it does not predict
    outcome = check_counterexample(onnx_path, _vnnlib(root, x0, wrong, 0.05), x0.ravel())
    assert outcome.valid, outcome.reason


def test_counterexample_outside_box_rejected(tiny_instance):
    root, onnx_path, x0, pred = tiny_instance
    vnnlib = _vnnlib(root, x0, (pred + 1) % 3, 0.05)
    x = x0.ravel().astype(np.float64).copy()
    x[2] += 0.05 + 1e-3
    outcome = check_counterexample(onnx_path, vnnlib, x)
    assert not outcome.valid and "outside" in outcome.reason


def test_counterexample_that_does_not_violate_rejected(tiny_instance):
    root, onnx_path, x0, pred = tiny_instance
    outcome = check_counterexample(onnx_path, _vnnlib(root, x0, pred, 0.001), x0.ravel())
    assert not outcome.valid and "no disjunct" in outcome.reason


def test_counterexample_with_wrong_reported_outputs_rejected(tiny_instance):
    root, onnx_path, x0, pred = tiny_instance
    vnnlib = _vnnlib(root, x0, (pred + 1) % 3, 0.05)
    y = run_onnx(onnx_path, x0[None])[0] + 0.5
    assert not check_counterexample(onnx_path, vnnlib, x0.ravel(), y).valid


def test_validate_counterexamples_marks_bad_sat_as_error(tiny_instance):
    root, onnx_path, x0, pred = tiny_instance

    class Inst:
        onnx = onnx_path
        vnnlib = _vnnlib(root, x0, pred, 0.001)

    good_word = VerifierResult("p", "marabou", "unsat", 1.0)
    bad = VerifierResult("p", "marabou", "sat", 1.0, x0.ravel())
    missing = VerifierResult("p", "abcrown", "sat", 1.0)
    out = validate_counterexamples([good_word, bad, missing], {"p": Inst})
    assert [r.result for r in out] == ["unsat", "error", "error"]
    assert "no disjunct" in out[1].note and "no counterexample" in out[2].note
    assert validate_counterexamples([missing], {"p": Inst}, require=False)[0].result == "sat"


# ------------------------------------------------------------------------ cross check

ROWS = [
    {"index": 10, "label": 1, "prediction": 1, "pgd_robust": True, "certified_by": "IBP", "status": "certified"},
    {"index": 11, "label": 2, "prediction": 2, "pgd_robust": True, "certified_by": None, "status": "unknown"},
    {"index": 12, "label": 3, "prediction": 3, "pgd_robust": False, "certified_by": None, "status": "attacked"},
    {"index": 13, "label": 0, "prediction": 4, "pgd_robust": False, "certified_by": None, "status": "wrong"},
]
INDEX = {"n_idx10": 10, "n_idx11": 11, "n_idx12": 12}


def _r(instance, word, verifier="marabou"):
    return VerifierResult(instance, verifier, word, 1.0)


def test_cross_check_merges_certified_accuracy():
    results = [
        _r("n_idx10", "unsat"),
        _r("n_idx11", "unsat"),
        _r("n_idx12", "sat"),
        _r("n_idx11", "timeout", "abcrown"),
    ]
    check = cross_check(ROWS, results, INDEX)
    assert (check.total, check.certified_incomplete, check.certified_merged, check.falsified) == (4, 1, 2, 2)
    assert check.certified_accuracy == 0.5 and check.contradictions == []
    assert [r["merged"] for r in check.rows] == ["certified", "certified", "falsified", "falsified"]
    assert check.rows[1]["verifiers"] == {"marabou": "unsat", "abcrown": "timeout"}


@pytest.mark.parametrize(
    "results, fragment",
    [
        ([_r("n_idx12", "unsat")], "attack succeeded"),
        ([_r("n_idx10", "sat")], "IBP certified"),
        ([_r("n_idx11", "unsat"), _r("n_idx11", "sat", "abcrown")], "unsat vs"),
    ],
)
def test_cross_check_contradictions(results, fragment):
    with pytest.raises(SoundnessError, match=fragment):
        cross_check(ROWS, results, INDEX)
    assert len(cross_check(ROWS, results, INDEX, raise_on_contradiction=False).contradictions) == 1


def test_the_evals_own_complete_answers_count_and_are_cross_checked():
    """adcert-eval --complete answers sit in the rows: an unsat there certifies, a sat there contradicts."""
    rows = [
        dict(ROWS[1], complete={"verifier": "neuralsat", "result": "unsat"}),
        ROWS[2],
        dict(
            ROWS[0],
            index=14,
            certified_by=None,
            status="unknown",
            complete={"verifier": "neuralsat", "result": "timeout"},
        ),
    ]
    check = cross_check(rows, [_r("n_idx12", "sat")], INDEX)
    assert [r["merged"] for r in check.rows] == ["certified", "falsified", "open"]
    assert check.certified_merged == 1 and check.rows[0]["verifiers"] == {"eval:neuralsat": "unsat"}
    with pytest.raises(SoundnessError, match="eval:neuralsat unsat vs marabou sat"):
        cross_check(rows, [_r("n_idx11", "sat")], INDEX)


def test_cross_check_refuses_label_mismatch():
    with pytest.raises(ConfigError, match="label"):
        cross_check(ROWS, [_r("n_idx10", "unsat")], INDEX, instance_labels={"n_idx10": 7})


def test_cross_check_with_no_verified_sample_in_the_eval_report_is_an_error():
    """Issue 17: an export of other samples than the eval's cross-checks nothing; that is not a result."""
    with pytest.raises(ConfigError, match="none of the 2 verified samples .* is in the eval report.*--start/--end"):
        cross_check(ROWS, [_r("n_idx90", "unsat"), _r("n_idx91", "sat")], {"n_idx90": 90, "n_idx91": 91})
    check = cross_check(ROWS, [_r("n_idx10", "unsat"), _r("n_idx90", "unsat")], {"n_idx10": 10, "n_idx90": 90})
    assert check.certified_merged == 1  # a partial overlap still merges what it can (and warns)


@pytest.mark.parametrize("content", ["", "\n\n", '{"n": 40, "standard_acc": 0.9, "samples": 40}\n', "[]"])
def test_report_of_an_empty_or_non_eval_file_is_one_line(tmp_path, content):
    from click.testing import CliRunner

    from vnncomp.cli import report_cmd

    eval_file = tmp_path / ("summary.json" if content.startswith(("{", "[")) else "samples.jsonl")
    eval_file.write_text(content)
    (tmp_path / "bench").mkdir()
    result = CliRunner().invoke(report_cmd, [str(eval_file), str(tmp_path / "bench")])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("Error: ConfigError: ") and "holds no per-sample rows" in lines[0]
    assert "nan" not in result.output

"""examples/study_crosscheck.py finds every evaluated run of a study and names its method."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("study_crosscheck", REPO / "examples" / "study_crosscheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_final_selected_and_framework_evaluation_is_found_by_its_method(tmp_path):
    for run in (
        "seed100/grid/cc-dist-alpha0.1-beta5",  # the selected grid point: its test evaluation
        "seed101/final/ad-cert-alpha0.1-variant=rslad-cert",
        "seed101/framework-expressive-losses/cc-ibp-alpha0.5",
        "seed100/grid/mtl-ibp-alpha0.01",  # not selected: validation only
    ):
        folder = tmp_path / run / ("eval-test" if "mtl" not in run else "eval-validation")
        folder.mkdir(parents=True)
        (folder / "complete.jsonl").write_text("")
    (tmp_path / "seed100" / "teacher" / "eval-test").mkdir(parents=True)  # a teacher has no verifier answers
    found = _script().final_evals(tmp_path, ("mtl-ibp", "cc-ibp", "ad-cert", "cc-dist"))
    assert [(method, folder.relative_to(tmp_path).parts[1]) for method, folder in found] == [
        ("cc-dist", "grid"),
        ("ad-cert", "final"),
        ("cc-ibp (expressive-losses)", "framework-expressive-losses"),
    ]

"""The study and unified plots say what they draw (issue 36): test and validation on separate
axes, α labels that do not cover each other, line styles in the legend, labelled axes, the seed."""

from __future__ import annotations

import shutil

import matplotlib
import pytest
from conftest import REPO

from adcert_plugin.experiments.report import plot_results
from adcert_plugin.experiments.study.archive import unpack
from adcert_plugin.experiments.study.report import plot_curves, plot_study
from adcert_plugin.io import read_json

matplotlib.use("Agg")
RESULTS = REPO / "examples" / "results"


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions save, kept open for inspection."""
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    saved = []
    monkeypatch.setattr(Figure, "savefig", lambda self, path, *a, **k: saved.append(self))
    monkeypatch.setattr(plt, "close", lambda fig=None: None)
    return saved


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_study_plot_separates_test_and_validation_and_labels_alpha(figures, tmp_path):
    results = read_json(RESULTS / "study-mnist-0.1" / "results.json")
    plot_study(results, tmp_path / "plot.png")
    study = figures[0]
    test_ax, val_ax = study.axes
    assert "test" in test_ax.get_title() and "validation" in val_ax.get_title()
    assert not test_ax.texts and sum(t.startswith("α=") for t in _texts(val_ax)) >= 4
    legend = [t.get_text() for t in val_ax.get_legend().get_texts()]
    assert any("dashed" in t for t in legend) and any("chosen" in t for t in legend)


def test_curves_have_a_y_label_and_name_their_seed(figures, tmp_path):
    results = read_json(RESULTS / "study-mnist-0.1" / "results.json")
    shutil.copy(RESULTS / "study-mnist-0.1" / "state.tar.gz", tmp_path / "state.tar.gz")
    unpack(tmp_path / "state")  # the committed state is an archive
    plot_curves(results, tmp_path / "curves.png")
    for ax in figures[0].axes:
        assert ax.get_ylabel() and f"seed {results['seeds'][0]}" in ax.get_title()
        assert len(ax.lines) == len(results["chosen"])  # every selected run drawn


def _overlaps(fig, ax) -> int:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts if t.get_text().startswith("α=")]
    return sum(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def test_unified_plot_alpha_labels_do_not_overlap(figures, tmp_path):
    plot_results(read_json(RESULTS / "unified_cpu" / "results.json"), tmp_path / "plot.png")
    fig = figures[0]
    for ax in fig.axes:
        assert sum(t.startswith("α=") for t in _texts(ax)) >= 8
        assert _overlaps(fig, ax) == 0

"""The ctbench studies (issue 37): every run trains under the ctbench conventions, the teacher too."""

from __future__ import annotations

from pathlib import Path

from adcert_plugin.experiments.study import get_study


def test_ctbench_studies_train_every_run_under_ctbench():
    for name in ("ctbench-mnist-0.1", "ctbench-mnist-0.3", "ctbench-fmnist-0.1"):
        study = get_study(name)
        teacher = study.teacher_config(Path("t"), 100)
        assert teacher.recipe.conventions == "ctbench" and teacher.recipe.robust_weight == 1.0
        assert teacher.recipe.swa_start_epoch is None
        for method in study.methods:
            for point in study.grid_points(method):
                cfg = study.student_config(method, point, Path("s"), Path("t/model.pt"), 100)
                assert cfg.recipe == study.recipe and cfg.recipe.conventions == "ctbench"
                assert cfg.attack.restarts == 3
    study = get_study("ctbench-mnist-0.1")
    assert {p["variant"] for p in study.grid_points("ad-cert")} == {"ad-cert", "rslad-cert"}
    assert {p["beta"] for p in study.grid_points("cc-dist")} == {1.0, 5.0, 25.0}
    assert get_study("mnist-0.1").recipe.conventions == "expressive-losses"  # the earlier study, unchanged

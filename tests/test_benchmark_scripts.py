"""The benchmark scripts a GPU session runs as they are: they must keep working without one."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def test_epoch_throughput_runs_every_method_and_reports_each_against_plain_training(tmp_path):
    out = tmp_path / "rows.json"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "epoch_throughput.py"),
            "--device",
            "cpu",
            "--steps",
            "1",
            "--batch",
            "4",
            "--losses",
            "ibp",
            "ad-cert",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["loss"] for r in rows] == ["plain-ce", "ibp", "ad-cert"]
    assert rows[0]["x_plain"] == 1.0 and all(r["x_plain"] > 0 and r["peak_bytes"] > 0 for r in rows)
    assert all(abs(r["images_per_s"] * r["seconds_per_step"] - 4) < 1e-6 for r in rows)
    assert "| ad-cert |" in done.stdout


def test_conv_fusion_variants_compute_the_three_products_of_the_interval_pass():
    """The fused convolutions the benchmark times are the same arithmetic as the separate ones."""
    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    from conv_fusion import products

    torch.set_default_dtype(torch.float64)  # equal up to rounding on any CPU
    try:
        outs = {name: fn() for name, fn in products(2, 4, 6, 8, 2).items()}
    finally:
        torch.set_default_dtype(torch.float32)
    for name in ("grouped", "batched"):
        assert all(torch.allclose(a, b, rtol=1e-10, atol=1e-10) for a, b in zip(outs[name], outs["separate"])), name


def test_conv_fusion_prints_a_row_per_layer():
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "conv_fusion.py"),
            "--shapes",
            "mnist",
            "--batch",
            "2",
            "--repeats",
            "2",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("| mnist |") == 3


def test_layout_cost_prints_a_paired_row_per_loss():
    script = str(REPO / "benchmarks" / "layout_cost.py")
    done = subprocess.run(
        [sys.executable, script, "--batch", "4", "--repeats", "2", "--losses", "ibp", "pgd"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("| ibp |") == 1 and done.stdout.count("| pgd |") == 1


def test_fused_relu_prints_a_paired_row_per_layer_and_step():
    from adcert_plugin.bounds import fused

    if not fused.available():
        import pytest

        pytest.skip("the fused kernels do not compile on this machine")
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "fused_relu.py"),
            "--shapes",
            "mnist",
            "--batch",
            "2",
            "--repeats",
            "2",
            "--losses",
            "ibp",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("| mnist 64×28×28 |") == 1 and done.stdout.count("| mnist ibp |") == 1


def test_attack_floor_times_every_kernel_of_the_attack_with_its_arithmetic():
    """One forward and one input-gradient kernel per conv and linear layer, whose FLOPs add up to the
    network's (counted by torch), a mask pass per ReLU, and the flatten's copy when channels-last."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    sys.path.insert(0, str(REPO / "benchmarks"))
    from attack_floor import kernels

    from adcert_plugin.models import create_model

    model = create_model("cnn7", (1, 28, 28), 10).eval()
    found = kernels(model, (1, 28, 28), 3)
    kinds = [name.split(" ", 1)[1] for name in found]
    assert sum(k.startswith("forward") for k in kinds) == 7 and kinds.count("input gradient") == 7
    assert kinds.count("mask (backward)") == 6 and kinds.count("copy") == 1
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.rand(3, 1, 28, 28))
    forward_gflop = sum(gflop for name, (_, gflop) in found.items() if " forward" in name)
    assert abs(forward_gflop - counter.get_total_flops() / 1e9) < 1e-9
    for fn, _ in found.values():
        fn()  # each runs on its own tensors


def test_attack_floor_prints_the_floor_beside_the_step_as_run():
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "attack_floor.py"),
            "--shapes",
            "mnist",
            "--batch",
            "2",
            "--repeats",
            "2",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("PGD-1 floor") == 1 and done.stdout.count("| mnist | 3:Conv2d input gradient |") == 1


def test_complete_throughput_table_names_each_verifier_and_says_when_the_machine_was_contended():
    import argparse
    import os

    sys.path.insert(0, str(REPO / "benchmarks"))
    import complete_throughput as ct

    row = {
        "verifier": "abcrown",
        "exit": 0,
        "wall": 100.0,
        "cascade": 40.0,
        "complete_wall": 55.0,
        "undecided": 122,
        "counts": {"unsat": 43, "sat": 76, "timeout": 3},
        "certified": 89.35,
        "upper": 90.1,
        "load_before": 9.0,
        "load_after": 8.0,
        "command": "x --complete abcrown",
        "answers": {1: "unsat", 2: "sat", 3: "timeout"},
    }
    args = argparse.Namespace(end=10000, eps=0.1, timeout=30.0, jobs=2, bounds_first=True)
    other = dict(row, verifier="neuralsat", load_before=0.1, load_after=0.1, answers={1: "unsat", 2: "unsat", 3: "sat"})
    text = ct.table([row, other], args)
    lines = text.splitlines()
    assert lines[2].split()[:5] == ["abcrown", "0", "100.0", "40.0", "55.0"] and lines[3].startswith("neuralsat")
    assert ("CONTENDED" in text) == ((os.cpu_count() or 1) + 1 < 9.0)  # the run's own processes allowed for
    assert "--bounds-first" in lines[0]
    assert "both decided 2 samples; they agree on 1; they DISAGREE on [2]" in text

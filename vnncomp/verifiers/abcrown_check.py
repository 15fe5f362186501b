"""``python -m vnncomp.verifiers.abcrown_check``: is alpha-beta-CROWN installed and right? (``make abcrown``)

Writes a one-instance benchmark in a temporary folder (a small CNN and a box interval arithmetic
proves, so the answer is known: ``unsat``), runs the abCROWN that adcert finds with no flag
(``.venv-abcrown``, or ``ADCERT_ABCROWN`` / ``ADCERT_ABCROWN_PYTHON``) on it, and exits 1 unless
it answers ``unsat``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from adcert_plugin.errors import AdcertError

from ..export.abcrown import write_abcrown_configs
from ..export.instances import write_instances_csv
from ..export.onnx_export import export_onnx
from ..export.vnnlib import property_from_sample, render_v1
from .abcrown import find_abcrown, find_abcrown_python
from .verify import verify_benchmark


def write_check_benchmark(root: Path, eps: float = 0.001) -> Path:
    """A benchmark with one instance whose answer is unsat (a tiny box around a fixed image)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 4, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(100, 3)).eval()
    x = torch.rand(1, 1, 10, 10)
    with torch.no_grad():
        label = int(net(x).argmax())
    export_onnx(net, (1, 10, 10), root / "onnx" / "check.onnx")
    (root / "vnnlib").mkdir(parents=True)
    prop = property_from_sample(x[0].numpy(), label, eps, (0.0,), (1.0,), 3, comment="make abcrown: expected unsat")
    (root / "vnnlib" / "check.vnnlib").write_text(render_v1(prop))
    write_instances_csv(root / "instances.csv", [("onnx/check.onnx", "vnnlib/check.vnnlib", 60)])
    write_abcrown_configs(root, 60.0)
    return root


def _say(line: str, stream=None) -> None:
    (stream or sys.stdout).write(line + "\n")


def main() -> int:
    try:
        _say(f"alpha-beta-CROWN: {find_abcrown()} under {find_abcrown_python()}")
        with tempfile.TemporaryDirectory(prefix="abcrown-check-") as tmp:
            bench = write_check_benchmark(Path(tmp) / "bench")
            (result,), _ = verify_benchmark(bench, "abcrown", device="cpu", mode="single")
    except AdcertError as err:
        _say(f"Error: {err}", sys.stderr)
        return 1
    _say(f"check instance: {result.result} in {result.seconds:.1f} s{' (' + result.note + ')' if result.note else ''}")
    if result.result != "unsat":
        _say(
            "Error: alpha-beta-CROWN did not prove the check instance (expected unsat); the note above says why",
            sys.stderr,
        )
        return 1
    _say("alpha-beta-CROWN works: adcert-verify --verifier abcrown and adcert-eval --complete abcrown find it")
    return 0


if __name__ == "__main__":
    sys.exit(main())

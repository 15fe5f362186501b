"""Shared fixtures: tiny seeded networks, the real data folder, a synthetic batch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from adcert_plugin.data import resolve_data_dir
from adcert_plugin.errors import DataError
from adcert_plugin.models import create_model

REPO = Path(__file__).resolve().parents[1]


def pytest_report_header(config):
    """Which auto_LiRPA this run tests against (the suite runs against 0.3 and upstream 0.7)."""
    import importlib.metadata as metadata

    try:
        version = metadata.version("auto_LiRPA")
        where = metadata.distribution("auto_LiRPA").locate_file("")
    except metadata.PackageNotFoundError:
        return "auto_LiRPA: not installed"
    return f"auto_LiRPA {version} ({where})"


@pytest.fixture(scope="session", autouse=True)
def expected_auto_lirpa():
    """ADCERT_EXPECT_LIRPA=0.7.0 makes a run against upstream fail if another version is what loads."""
    expected = os.environ.get("ADCERT_EXPECT_LIRPA")
    if expected:
        from adcert_plugin.bounds.lirpa import auto_lirpa_version

        found = ".".join(map(str, auto_lirpa_version() or ()))
        assert found == expected, f"ADCERT_EXPECT_LIRPA={expected} but auto_LiRPA {found or 'none'} is installed"


# The suite's tensors are tiny: intra-op threads cost more than they save (about 4x on a
# 2-core machine), so every test runs on one torch thread.
torch.set_num_threads(1)


def shared_data_dir() -> Path | None:
    """The data root by the README's rule, the CLI's (``adcert_plugin.data.resolve_data_dir``):
    --data-dir, else $ADCERT_DATA, else ../shared/data beside the checkout, else ./data.
    None when that folder does not exist or holds no MNIST."""
    try:
        root = resolve_data_dir()
    except DataError:
        return None
    return root if (root / "MNIST" / "raw").is_dir() else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip(
            "real data not found by the README's rule: set ADCERT_DATA or put ../shared/data beside the checkout"
        )
    return path


def tiny_net(kind: str, seed: int = 0, in_shape=(1, 8, 8), num_classes: int = 4) -> torch.nn.Sequential:
    """Seeded small nets: 'mlp', 'cnn', 'cnn-bn' (BN whose running stats are non-trivial)."""
    torch.manual_seed(seed)
    if kind == "mlp":
        return create_model("mlp", in_shape, num_classes, hidden=(16, 12))
    model = create_model("small-cnn", in_shape, num_classes, width=4, linear_size=16, bn=(kind == "cnn-bn"))
    if kind == "cnn-bn":
        with torch.no_grad():
            model.train()
            for _ in range(3):  # move running statistics away from (0, 1)
                model(torch.randn(16, *in_shape) * 2 + 0.5)
            for m in model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.fixture
def batch():
    torch.manual_seed(1)
    x = torch.rand(4, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 3])
    return x, y


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance of 2 CPUs for one test module (starting Ray costs seconds: once per module).

    Its workers import the test helpers (a fake verifier pickled by reference): they inherit
    PYTHONPATH from this process when Ray starts. Code that opens ``parallel.session`` meanwhile
    uses this instance and leaves it running.
    """
    from adcert_plugin import parallel

    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests"), str(REPO), *([old] if old else [])])
    try:
        with parallel.session(num_cpus=2):
            yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old

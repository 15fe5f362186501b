"""NeuralSAT (registry package ``neuralsat``, import name ``src``), the default verifier, in its own venv.

NeuralSAT's metadata pins torch/torchvision versions that clash with adcert's, so it lives
in an environment of its own (``make neuralsat`` builds ``.venv-neuralsat`` in the checkout).
The interpreter is looked up in this order: the ``python`` argument (``--python``), the
environment variable ``ADCERT_NEURALSAT_PYTHON``, ``<checkout>/.venv-neuralsat/bin/python``,
then this interpreter if NeuralSAT is installed in it.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TypeGuard

from adcert_plugin.errors import VerifierError

from ..export.instances import Instance
from ..results import VerifierResult
from .common import PROJECT_ROOT, Command, plan, python_env, run_benchmark

ENV_PYTHON = "ADCERT_NEURALSAT_PYTHON"
MAKE_TARGET = "make neuralsat"
PROJECT_VENV_PYTHON = PROJECT_ROOT / ".venv-neuralsat" / "bin" / "python"

_FIND_SRC = (
    "import importlib.util as u, sys; s = u.find_spec('src'); sys.stdout.write(s.origin if s and s.origin else '')"
)


def _is_neuralsat(folder: Path | None) -> TypeGuard[Path]:
    return folder is not None and (folder / "main.py").is_file() and (folder / "verifier" / "verifier.py").is_file()


def _src_folder(python: str) -> Path | None:
    """Folder of the ``src`` package as ``python`` sees it (None when it has none)."""
    try:
        origin = subprocess.run(
            [python, "-c", _FIND_SRC], capture_output=True, text=True, timeout=120, check=True, stdin=subprocess.DEVNULL
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as err:
        raise VerifierError(f"cannot run {python} to find NeuralSAT: {err}") from err
    return Path(origin).parent if origin else None


def find_neuralsat(python: str | Path | None = None) -> tuple[str, Path]:
    """The interpreter that has NeuralSAT, and the folder of its ``main.py``.

    Args:
        python: Interpreter of the environment NeuralSAT is installed in (default: the lookup
            order of this module's docstring).

    Raises:
        VerifierError: None found, or the named interpreter lacks NeuralSAT.
    """
    named = python or os.environ.get(ENV_PYTHON)
    if named:
        where = "--python" if python else ENV_PYTHON
        if not Path(named).exists():
            raise VerifierError(
                f"NeuralSAT interpreter {named} ({where}) does not exist; build it with "
                f"`{MAKE_TARGET}` or point {where} at a venv that has neuralsat"
            )
        folder = _src_folder(str(named))
        if not _is_neuralsat(folder):
            raise VerifierError(
                f"NeuralSAT is not installed for {named} ({where}): `{MAKE_TARGET}` builds "
                f"{PROJECT_VENV_PYTHON.parent.parent}, or pip install --no-deps neuralsat there"
            )
        return str(named), folder
    if PROJECT_VENV_PYTHON.exists():
        folder = _src_folder(str(PROJECT_VENV_PYTHON))
        if _is_neuralsat(folder):
            return str(PROJECT_VENV_PYTHON), folder
    spec = importlib.util.find_spec("src")
    folder = Path(spec.origin).parent if spec is not None and spec.origin else None
    if _is_neuralsat(folder):
        return sys.executable, folder
    raise VerifierError(
        f"NeuralSAT not found: run `{MAKE_TARGET}` in the checkout (builds .venv-neuralsat), "
        f"or set {ENV_PYTHON} / --python to the interpreter of a venv that has it"
    )


class NeuralSATRunner:
    """NeuralSAT's ``main.py`` per instance, with cwd and ``XDG_CACHE_HOME`` in the results folder
    (each instance a fork of one process that imported NeuralSAT: ``preload``, ``warm.py``).

    Its results file has ``<status>,<seconds>`` on line 1 (``--export_runtime``) and the
    counterexample block after it (``--export_cex``).
    """

    name = "neuralsat"
    # What main.py imports before its clock starts (about 6 s); each instance then runs as a fork
    # of a process that has them (warm.py). A module missing in another version turns that off.
    preload = (
        "torch",
        "helper.network.read_onnx",
        "helper.network.read_pth",
        "helper.spec.objective",
        "helper.misc.logger",
        "helper.misc.export",
        "helper.misc.result",
        "verifier.verifier",
        "setting",
    )

    def __init__(self, device: str = "cpu", python: str | Path | None = None):
        self.python, self.folder = find_neuralsat(python)
        self.device = device

    def command(self, instance: Instance, results_file: Path, seconds: float) -> Command:
        # onnxruntime caches in XDG_CACHE_HOME; adcert's own PYTHONPATH has no business in NeuralSAT's venv
        cache = results_file.parent / "cache"
        cache.mkdir(parents=True, exist_ok=True)  # there before the verifier, whether or not it writes there
        env = python_env(cache_dir=cache)
        env.pop("PYTHONPATH", None)
        return Command(
            [
                self.python,
                str(self.folder / "main.py"),
                "--net",
                str(instance.onnx),
                "--spec",
                str(instance.vnnlib),
                "--timeout",
                str(seconds),
                "--device",
                self.device,
                "--result_file",
                str(results_file),
                "--export_cex",
                "--export_runtime",
                "--verbosity",
                "0",
            ],
            env,
        )


def run_neuralsat(
    bench_dir,
    timeout: float | None = None,
    device: str = "cpu",
    instances: Sequence[str] | None = None,
    python: str | Path | None = None,
    jobs: int = 1,
    force: bool = False,
) -> list[VerifierResult]:
    """Run NeuralSAT on every instance of a benchmark, as its own program in its own venv.

    Args:
        bench_dir: Benchmark folder with ``instances.csv``.
        timeout: Seconds per instance (default: the csv column).
        device: ``cpu`` or ``cuda``.
        instances: Names to run (default: all).
        python: Interpreter of NeuralSAT's venv (default: see :func:`find_neuralsat`).
        jobs: Instances run at once.
        force: Rerun instances whose answers are already there.

    Raises:
        VerifierError: NeuralSAT is not found.
    """
    runner = NeuralSATRunner(device, python)
    return run_benchmark(runner, plan(bench_dir, runner.name, timeout, instances, jobs, force))

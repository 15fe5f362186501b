"""One verifier process with a wall limit, its output in a log file."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from adcert_plugin.errors import VerifierError


@dataclass(frozen=True)
class Command:
    """How to start a verifier on one instance (``cwd`` default: the results folder)."""

    argv: list[str]
    env: dict | None = None
    cwd: Path | None = None


def run_process(command: Command, log_file: Path, limit: float, verifier: str,
                default_cwd: Path) -> tuple[int | None, float]:
    """Run ``command`` with its output in ``log_file``; (exit status or None when killed, seconds)."""
    start = time.monotonic()
    with log_file.open("w") as log:
        try:
            proc = subprocess.run(command.argv, cwd=command.cwd or default_cwd, env=command.env, stdout=log,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=limit)
        except subprocess.TimeoutExpired:  # subprocess.run kills the child before raising
            return None, time.monotonic() - start
        except OSError as err:
            raise VerifierError(f"cannot start {verifier} ({command.argv[0]}): {err}") from err
    return proc.returncode, time.monotonic() - start

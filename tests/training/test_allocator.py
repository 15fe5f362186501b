"""allocator.py: with the raised thresholds, a freed large block is reused, not page-faulted in again."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only"
)

_PROBE = """
import resource, sys, torch
from adcert_plugin.training.allocator import reuse_freed_memory
print(reuse_freed_memory())
torch.empty(16 << 20).fill_(1.0)  # 64 MB: above glibc's largest adaptive mmap threshold (32 MiB)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(8):
    torch.empty(16 << 20).fill_(1.0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(**env) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, env={**os.environ, **env}
    )
    applied, faults = done.stdout.split()
    return applied, int(faults)


def test_a_freed_large_block_is_reused_instead_of_faulted_in_again():
    applied, reused = _faults(ADCERT_MALLOC="")
    kept, system = _faults(ADCERT_MALLOC="system")
    assert (applied, kept) == ("True", "False")
    assert system > 8 * 8000  # eight fresh 64 MB blocks: 16k pages of 4 KiB each
    assert reused < system / 4  # at most a block or two faulted in again, not every one

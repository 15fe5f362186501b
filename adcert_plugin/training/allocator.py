"""Let a CPU training process reuse the memory it frees instead of page-faulting it in again.

PyTorch has no caching allocator on the CPU: every tensor comes from malloc. glibc serves blocks
over its mmap threshold (adaptive, at most 32 MiB) with a fresh mmap and gives them back with
munmap, and trims the heap's free top above its trim threshold. A bound-propagation step
allocates temporaries of that size every step (CNN7's 25088×512 linear layer: 51 MB for |W|,
its sign and its gradient), so each step page-faults them in anew: measured on an MNIST IBP step,
100k-170k minor page faults (0.4-0.7 GB touched afresh) and about 4 % of its CPU time, against
none with the settings below. Raising both thresholds keeps freed blocks in the heap for the next
step: the process keeps its peak resident size instead of returning it between steps.

``reuse_freed_memory()`` is called by ``train()`` for a CPU run (and by the step benchmarks for
every step they time, the plain one included). Linux with glibc only; elsewhere, or with
``ADCERT_MALLOC=system``, nothing changes. It changes no computed value.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import platform

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
MMAP_THRESHOLD = 256 << 20  # blocks up to this size come from the heap and are reused
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # free heap top kept up to this size


@functools.lru_cache(maxsize=1)
def reuse_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process, once; True when they were set."""
    if os.environ.get("ADCERT_MALLOC", "").lower() == "system" or platform.system() != "Linux":
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        done = (
            libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        )
    except (OSError, AttributeError):
        return False
    log.debug("malloc thresholds %s", "raised" if done else "left as they were (mallopt refused)")
    return done

"""What runs on this machine, from /proc: a process's descendants, processes by title, liveness."""

from __future__ import annotations

import time
from pathlib import Path


def _table() -> dict[int, tuple[int, str]]:
    """pid → (parent pid, command line) of every live process (zombies left out)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            table[int(entry.name)] = (int(ppid), cmdline)
    return table


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (children, their children, ...)."""
    table, found, frontier = _table(), set(), {pid}
    while frontier:
        frontier = {p for p, (parent, _) in table.items() if parent in frontier} - found
        found |= frontier
    return found


def titled(prefix: str) -> list[int]:
    """Live processes whose command line (a Ray worker's title: ``ray::<task name>``) starts with ``prefix``."""
    return [pid for pid, (_, cmdline) in _table().items() if cmdline.startswith(prefix)]


def alive(pids) -> set[int]:
    return set(pids) & set(_table())


def wait_gone(pids, seconds: float) -> set[int]:
    """The processes of ``pids`` still alive after up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive(pids)

"""Loading third-party plugins from an entry-point group, shared by every registry.

A plugin may fail to import in any way; the failure is remembered per name and reported when
that name is asked for, so one broken package never breaks the others.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Container
from typing import Any


def load_entry_points(group: str, known: Container[str], use: Callable[[str, Any], None]) -> dict[str, str]:
    """Call ``use(name, loaded)`` for each entry point of ``group`` not in ``known``.

    Returns:
        ``{name: "<target>: <Error>: <first line>"}`` for those that failed to load or register.
    """
    broken = {}
    for ep in importlib.metadata.entry_points(group=group):
        if ep.name in known:
            continue
        try:
            use(ep.name, ep.load())
        except Exception as err:  # noqa: BLE001 - a third-party plugin may fail in any way
            text = str(err).strip()
            broken[ep.name] = f"{ep.value}: {type(err).__name__}: {text.splitlines()[0][:200] if text else ''}"
    return broken

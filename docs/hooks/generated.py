"""mkdocs hook: pages show what the commands print, run at build time, so the docs cannot drift.

A line ``<!-- generated: TARGET PROG ARGS... -->`` in a page becomes a text block holding what the
click command TARGET prints when run as ``PROG ARGS...`` (``--help`` for its reference).
TARGET is ``package.module:attribute`` or ``path/to/script.py:attribute`` (from the repository
root). A command that fails fails the build. (mkdocs-click exists, but with click 8.3 it prints
``Sentinel.UNSET`` as the default of every flag and leaves the arguments out of its tables.)
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
from pathlib import Path

import click
from click.testing import CliRunner

MARKER = re.compile(r"^<!-- generated: (.+?) -->$", re.M)
ROOT = Path(__file__).resolve().parents[2]
WIDTH = 100


def _load(target: str) -> click.Command:
    where, attribute = target.rsplit(":", 1)
    if where.endswith(".py"):
        spec = importlib.util.spec_from_file_location(Path(where).stem, ROOT / where)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    command = getattr(module, attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{target} is not a click command")
    return command


def render(line: str) -> str:
    """What the command named by a marker's text prints, as a fenced text block."""
    target, prog, *args = shlex.split(line)
    result = CliRunner().invoke(_load(target), args, prog_name=prog, terminal_width=WIDTH, max_content_width=WIDTH)
    if result.exit_code != 0:
        raise RuntimeError(f"{prog} {shlex.join(args)} exited {result.exit_code}: {result.output}{result.exception!r}")
    return f"```text\n$ {prog} {shlex.join(args)}\n{result.output.rstrip()}\n```"


def on_page_markdown(markdown: str, **_) -> str:
    return MARKER.sub(lambda match: render(match.group(1)), markdown)

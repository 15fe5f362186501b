"""One-line CLI errors for every adcert command, and what a command says when it is interrupted.

``@handle_errors`` (placed right above the function, below ``@click.command`` and the
options) turns an :class:`AdcertError` into click's ``Error: <Class>: <message>`` on
stderr and exits with the class's ``exit_code``. It also adds a ``--debug`` flag (or set
``ADCERT_DEBUG=1``) that re-raises with the full traceback. Any other exception is a bug
and keeps its traceback.

Ctrl-C prints ``Interrupted.`` and what to do next (a command registers that with
:func:`on_interrupt`, e.g. the exact command with ``--resume``) and exits 130. Library
deprecation warnings (torch's ``torch.jit.script`` one, raised inside auto_LiRPA) are a
developer's business: the CLI output is ours, so they are hidden unless ``--debug``.
"""

from __future__ import annotations

import functools
import os
import shlex
import warnings
from collections.abc import Callable, Sequence

import click

from ..errors import AdcertError, quiet_library_warnings

INTERRUPTED_EXIT = 130  # the shell's code for SIGINT
_ARGS_KEY, _HINT_KEY = "adcert.args", "adcert.on_interrupt"


class AdcertClickError(click.ClickException):
    """A ClickException carrying an AdcertError's class name and exit code."""

    def __init__(self, err: AdcertError):
        message = " ".join(str(err).split()) or "(no message)"
        super().__init__(f"{type(err).__name__}: {message}")
        self.exit_code = err.exit_code  # type: ignore[misc]  # click reads it per instance


class OneLineCommand(click.Command):
    """A click command whose usage errors print as one ``Error: ...`` line (no usage block).

    It also keeps the raw arguments (``command_args``), so a command can tell the user the
    exact command to rerun.
    """

    def parse_args(self, ctx, args):
        ctx.meta[_ARGS_KEY] = list(args)
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as err:
            err.ctx = None
            raise


def command_args() -> list[str]:
    """The arguments the current command was called with (after its name)."""
    return list(click.get_current_context().meta.get(_ARGS_KEY, []))


def rerun_command(name: str, args: Sequence[str], add: Sequence[str] = (), drop: Sequence[str] = ()) -> str:
    """``name args`` as a shell line, with the flags ``drop`` removed and ``add`` appended once."""
    kept = [a for a in args if a not in drop]
    return shlex.join([name, *kept, *(a for a in add if a not in kept)])


def on_interrupt(hint: Callable[[], str]) -> None:
    """Register what Ctrl-C should tell the user (called when it happens, so it can look at files)."""
    click.get_current_context().meta[_HINT_KEY] = hint


def handle_errors(fn):
    """Decorator for click command functions: map AdcertError to a one-line error and exit code."""

    @functools.wraps(fn)
    def wrapper(*args, debug: bool = False, **kwargs):
        debug = debug or bool(os.environ.get("ADCERT_DEBUG"))
        with warnings.catch_warnings():
            if not debug:
                quiet_library_warnings()
            try:
                return fn(*args, **kwargs)
            except AdcertError as err:
                if debug:
                    raise
                raise AdcertClickError(err) from err
            except KeyboardInterrupt:
                hint = click.get_current_context().meta.get(_HINT_KEY)
                click.echo("Interrupted." + (f" {hint()}" if hint else ""), err=True)
                raise click.exceptions.Exit(INTERRUPTED_EXIT) from None

    return click.option("--debug", is_flag=True, default=False,
                        help="Show the full traceback (and library warnings) instead of a one-line error.")(wrapper)

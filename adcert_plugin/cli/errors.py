"""One-line CLI errors for every adcert command, and what a command says when it is interrupted.

``@handle_errors`` (placed right above the function, below ``@click.command`` and the
options) turns an :class:`AdcertError` into click's ``Error: <Class>: <message>`` on
stderr and exits with the class's ``exit_code``. It also adds a ``--debug`` flag (or set
``ADCERT_DEBUG=1``) that re-raises with the full traceback. An OSError the user can fix (a
full disk, a read-only folder, no permission, a file where a folder should be) is one line too
(``io.output_error``). Any other exception is a bug and keeps its traceback.

Ctrl-C prints ``Interrupted.`` and what to do next (a command registers that with
:func:`on_interrupt`, e.g. the exact command with ``--resume``) and exits 130. SIGTERM (what a
scheduler sends) is taken as Ctrl-C, so the command stops its verifier processes and Ray tasks
the same way instead of dying with them still running; a second SIGTERM ends it at once. Library
deprecation warnings (torch's ``torch.jit.script`` one, raised inside auto_LiRPA) are a
developer's business: the CLI output is ours, so they are hidden unless ``--debug``.
"""

from __future__ import annotations

import functools
import os
import shlex
import signal
import threading
import warnings
from collections.abc import Callable, Sequence

import click

from ..errors import AdcertError, quiet_library_warnings
from ..io import output_error
from .startup import command_started

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


def _terminated(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise KeyboardInterrupt


def sigterm_as_interrupt() -> None:
    """SIGTERM raises KeyboardInterrupt in the main thread (when nobody else handles it)."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) in (
        signal.SIG_DFL,
        None,
    ):
        signal.signal(signal.SIGTERM, _terminated)


def handle_errors(fn):
    """Decorator for click command functions: map AdcertError to a one-line error and exit code."""

    @functools.wraps(fn)
    def wrapper(*args, debug: bool = False, **kwargs):
        sigterm_as_interrupt()
        command_started()
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
            except OSError as err:  # a full disk, a read-only folder, a file in the path: the user's to fix
                mapped = output_error(err)
                if debug or mapped is None:
                    raise
                raise AdcertClickError(mapped) from err
            except KeyboardInterrupt:
                hint = click.get_current_context().meta.get(_HINT_KEY)
                click.echo("Interrupted." + (f" {hint()}" if hint else ""), err=True)
                raise click.exceptions.Exit(INTERRUPTED_EXIT) from None

    return click.option(
        "--debug",
        is_flag=True,
        default=False,
        help="Show the full traceback (and library warnings) instead of a one-line error.",
    )(wrapper)

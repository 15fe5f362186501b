"""One-line CLI errors for every adcert command.

``@handle_errors`` (placed right above the function, below ``@click.command`` and the
options) turns an :class:`AdcertError` into click's ``Error: <Class>: <message>`` on
stderr and exits with the class's ``exit_code``. It also adds a ``--debug`` flag (or set
``ADCERT_DEBUG=1``) that re-raises with the full traceback. Any other exception is a bug
and keeps its traceback.
"""

from __future__ import annotations

import functools
import os

import click

from ..errors import AdcertError


class AdcertClickError(click.ClickException):
    """A ClickException carrying an AdcertError's class name and exit code."""

    def __init__(self, err: AdcertError):
        message = " ".join(str(err).split()) or "(no message)"
        super().__init__(f"{type(err).__name__}: {message}")
        self.exit_code = err.exit_code


def handle_errors(fn):
    """Decorator for click command functions: map AdcertError to a one-line error and exit code."""

    @functools.wraps(fn)
    def wrapper(*args, debug: bool = False, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AdcertError as err:
            if debug or os.environ.get("ADCERT_DEBUG"):
                raise
            raise AdcertClickError(err) from err

    return click.option("--debug", is_flag=True, default=False,
                        help="Show the full traceback instead of a one-line error.")(wrapper)

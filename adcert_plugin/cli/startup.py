"""Ctrl-C while a command is still starting (importing torch takes seconds on a busy machine).

Python's default is a KeyboardInterrupt traceback from deep inside an import. A console script
(``adcert-*``) instead says that nothing was done and exits 130; ``handle_errors`` puts the
default handler back as the command starts, from where Ctrl-C says what to do next. Importing
adcert as a library (tests, notebooks) changes nothing.
"""

from __future__ import annotations

import os
import signal
import sys

INTERRUPTED_EXIT = 130


def _starting(signum, frame):
    sys.stderr.write("Interrupted while starting; nothing was done.\n")
    raise SystemExit(INTERRUPTED_EXIT)


def quiet_interrupt_while_starting() -> None:
    """Install the quiet handler, only in a console script, and only over Python's default."""
    if (
        os.path.basename(sys.argv[0] if sys.argv else "").startswith("adcert-")
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):
        signal.signal(signal.SIGINT, _starting)


def command_started() -> None:
    """From here on Ctrl-C raises KeyboardInterrupt again (handle_errors turns it into advice)."""
    if signal.getsignal(signal.SIGINT) is _starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)

"""The adcert-train / adcert-eval / adcert-eval-merge / adcert-losses commands, and the error handling every CLI shares.

commands.py  the click commands (thin: parse, build a config, call one API function)
errors.py    handle_errors: AdcertError -> one line and the class's exit code
"""

from .startup import quiet_interrupt_while_starting

quiet_interrupt_while_starting()  # Ctrl-C during the imports below (torch: seconds) is not a traceback

from .commands import eval_cmd, losses_cmd, merge_cmd, train_cmd  # noqa: E402 (after the Ctrl-C guard)
from .errors import OneLineCommand, command_args, handle_errors, on_interrupt, rerun_command  # noqa: E402

__all__ = [
    "OneLineCommand",
    "command_args",
    "eval_cmd",
    "handle_errors",
    "losses_cmd",
    "merge_cmd",
    "on_interrupt",
    "rerun_command",
    "train_cmd",
]

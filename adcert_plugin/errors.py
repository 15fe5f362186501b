"""The one error hierarchy of adcert.

The library raises only these for problems a user can fix; the CLI turns each into a
one-line ``Error: <Class>: <message>`` and exits with the class's ``exit_code``.
A message says what failed, the offending value, and what to do about it.
"""

from __future__ import annotations

import warnings
from typing import Any


class AdcertError(Exception):
    """Base class: a user-fixable problem."""

    exit_code = 1


class ConfigError(AdcertError):
    """Unknown key, bad range, missing file, incompatible resume."""

    exit_code = 2


class RegistryError(AdcertError):
    """Unknown or duplicate name in a registry, or a plugin that fails to load."""

    exit_code = 2


class UnknownLossError(RegistryError):
    """A loss name that no plugin registers."""


class UnknownModelError(RegistryError):
    """A model name that is not in the model zoo."""


class DuplicateNameError(RegistryError):
    """A second registration under a name already taken."""


class PluginLoadError(RegistryError):
    """A third-party plugin that is installed but fails to import."""


class DataError(AdcertError):
    """A data set that is missing or corrupt."""


class UnsupportedModelError(AdcertError):
    """A layer that cannot be bounded or exported."""


class CheckpointError(AdcertError):
    """A checkpoint that is missing, mismatched or unsafe to load."""


class OutputError(AdcertError):
    """A file or folder that cannot be written or read: a full disk, a read-only place, no permission,
    a file where a folder should be (``io.output_error`` words it)."""


class ExportError(AdcertError):
    """An export that does not match PyTorch, or cannot be written."""


class VerifierError(AdcertError):
    """A verifier that is missing, times out, or writes an unreadable result."""


class InstanceError(VerifierError):
    """A verifier that ran but failed on some instances (no answer): exit 4, apart from contradictions (3)."""

    exit_code = 4


class SoundnessError(AdcertError):
    """A certified point that an attack breaks, or a verifier contradicting a certificate."""

    exit_code = 3
    report: Any = None  # the EvalReport that holds the contradictions, when an evaluation raised it


class TrainingError(AdcertError):
    """Training that cannot go on (a NaN loss, say); the last good checkpoint is kept."""


def quiet_library_warnings() -> None:
    """Hide deprecation notices from torch and auto_LiRPA (call inside ``warnings.catch_warnings``).

    A filter is not enough: importing auto_LiRPA runs ``warnings.simplefilter("once")``, which
    goes in front of every filter set before it. So the notices are dropped where they are shown.
    """
    shown = warnings.showwarning

    def show(message, category, *args, **kwargs):
        if not issubclass(category, DeprecationWarning):
            shown(message, category, *args, **kwargs)

    warnings.showwarning = show

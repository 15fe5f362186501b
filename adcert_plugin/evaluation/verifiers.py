"""Complete verifiers as seen from the evaluation: a typed request, typed answers, a registry.

The evaluation never imports a verifier. A complete verifier is any object with a ``name`` and a
``verify(request) -> list[CompleteAnswer]`` method; it reaches :func:`create_verifier` through the
``adcert.verifiers`` entry-point group (``vnncomp`` registers neuralsat, abcrown and marabou there),
or through :func:`register_verifier` (plugins, tests). An entry point's value is a zero-argument
callable that returns the verifier::

    [adcert.verifiers]
    neuralsat = vnncomp.verifiers.complete:neuralsat

Entry points load lazily, all together, on the first lookup of an unknown name; one that fails
to load raises :class:`PluginLoadError` only when its name is asked for.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from ..errors import DuplicateNameError, PluginLoadError, RegistryError
from ..plugins import load_entry_points
from .report import ANSWER_WORDS as ANSWERS  # noqa: F401 - the VNN-COMP words (unsat = robust); complete.py imports them

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "adcert.verifiers"


@dataclass(frozen=True)
class CompleteRequest:
    """One batch of samples for a complete verifier: is each one robust in its eps box?

    Attributes:
        model: the network, eval mode, on the CPU, taking *normalised* inputs ``[B, C, H, W]``.
        x: pixel-space images in [0, 1], ``[N, C, H, W]``.
        y: labels ``[N]``.
        indices: the test-set index of each sample (answers are matched by it).
        eps: pixel-space L-inf radius; the box is clip(x ± eps, 0, 1), then normalised.
        mean, std: per-channel normalisation (outside the network).
        num_classes: K, the network's output width.
        timeout: seconds per sample.
        jobs: samples to run in parallel.
        work_dir: a folder the verifier may keep files in (benchmark, logs); kept between calls,
            so a verifier can reuse answers it already has for the same network.
        network_sha256: identity of the network (the checkpoint's sha256).
        network: a file-name-safe name for it (``<dataset>_<arch>``).
        options: verifier-specific settings (``device``, ``neuralsat_python``, ``abcrown``,
            ``abcrown_python``, ...); a verifier ignores the keys it does not know.
    """

    model: torch.nn.Module
    x: torch.Tensor
    y: torch.Tensor
    indices: tuple[int, ...]
    eps: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    timeout: float
    jobs: int
    work_dir: Path
    network_sha256: str
    network: str = "network"
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CompleteAnswer:
    """A verifier's answer on one sample.

    Attributes:
        index: the test-set index.
        result: one of :data:`ANSWERS`.
        seconds: wall time on this sample.
        counterexample: for ``sat``: the input the verifier found, *normalised* and flattened
            ``[C*H*W]`` (as in VNN-LIB); the evaluation re-checks it on the PyTorch model.
        note: why (an error message, a rejected counterexample, the verifier's own time).
        contradiction: set when the answer contradicts evidence the verifier side holds (say an
            ``unsat`` while a re-checked counterexample is in hand): the evaluation records it as
            a soundness error (exit 3). Such an answer should also be ``error``.
    """

    index: int
    result: str
    seconds: float
    counterexample: object = None  # numpy array or tensor, or None
    note: str = ""
    contradiction: str = ""


@runtime_checkable
class CompleteVerifier(Protocol):
    """What the evaluation calls: one answer per sample of the request, in any order.

    A verifier may also define ``check(options) -> None``, raising ``VerifierError`` when it
    cannot run (not installed, bad interpreter); the evaluation calls it before the cascade,
    so a missing verifier fails in seconds, not after the bounds. And ``bulk(options) -> bool``:
    true when it verifies a whole request in one process better than sample by sample (abCROWN's
    csv mode pays its start-up once per request); such requests are never split into one Ray task
    per sample, and the evaluation sends them in large chunks (:func:`is_bulk`).
    """

    name: str

    def verify(self, request: CompleteRequest) -> list[CompleteAnswer]: ...


def is_bulk(verifier: CompleteVerifier, options: Mapping[str, str]) -> bool:
    """Whether ``verifier`` runs a many-sample request as one process (its optional ``bulk`` method)."""
    bulk = getattr(verifier, "bulk", None)
    return bool(bulk(dict(options))) if callable(bulk) else False


_REGISTRY: dict[str, Callable[[], CompleteVerifier]] = {}
_BROKEN: dict[str, str] = {}
_entry_points_loaded = False


def register_verifier(name: str, factory: Callable[[], CompleteVerifier], replace: bool = False) -> None:
    """Register a zero-argument ``factory`` returning a :class:`CompleteVerifier` under ``name``.

    Raises:
        DuplicateNameError: ``name`` is taken (and ``replace`` is false).
    """
    if name in _REGISTRY and not replace:
        raise DuplicateNameError(f"complete verifier {name!r} is already registered; pick another name")
    _REGISTRY[name] = factory


def unregister_verifier(name: str) -> None:
    """Remove ``name`` from the registry (tests; plugins reloading themselves)."""
    _REGISTRY.pop(name, None)
    _BROKEN.pop(name, None)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for name, reason in load_entry_points(ENTRY_POINT_GROUP, _REGISTRY, _REGISTRY.__setitem__).items():
        _BROKEN[name] = reason
        log.warning("verifier plugin %r failed to load: %s", name, reason)


def list_verifiers() -> list[str]:
    """Registered complete-verifier names, sorted."""
    _load_entry_points()
    return sorted(_REGISTRY)


def create_verifier(name: str) -> CompleteVerifier:
    """The complete verifier registered as ``name``.

    Raises:
        RegistryError: no such verifier (with close matches and the known names).
        PluginLoadError: the plugin that provides it failed to load.
    """
    if name not in _REGISTRY:
        _load_entry_points()
    if name in _BROKEN and name not in _REGISTRY:
        raise PluginLoadError(
            f"complete verifier {name!r} failed to load ({_BROKEN[name]}); "
            "fix or reinstall the package that provides it"
        )
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        known = ", ".join(sorted(_REGISTRY)) or "none: reinstall adcert (pip install -e .) to register its verifiers"
        raise RegistryError(f"unknown complete verifier {name!r}{hint}; known: {known}")
    verifier = _REGISTRY[name]()
    if not isinstance(verifier, CompleteVerifier):
        raise PluginLoadError(
            f"complete verifier {name!r}: its factory returned {type(verifier).__name__}, "
            "which has no name and verify(request)"
        )
    return verifier

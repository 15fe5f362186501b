"""The loss registry: one place for AD-CERT, CC-Dist and every baseline (timm style).

``adcert_plugin.losses`` exposes these names and imports the built-in losses, which register
themselves here.

    @register_loss("my-loss", config=MyConfig, needs={"attack", "bounds"}, description="...")
    def my_loss(ctx: LossContext, cfg: MyConfig) -> LossOutput: ...

    loss = create_loss("mtl-ibp", alpha=0.01)     # params checked against MtlIbpConfig
    list_losses("cc-*")                             # ['cc-dist', 'cc-ibp']

A registered object is either a function ``fn(ctx, cfg) -> LossOutput`` or a subclass of
``Loss`` (for losses with training-only modules; it overrides ``prepare``/``compute``).

Third-party losses: a distribution declares entry points in the ``adcert.losses`` group, e.g.

    [adcert.losses]
    myloss = mypkg.losses:register

The entry-point name is the loss name it provides. The value refers either to a **zero-argument
callable**, which is called once after loading and must call ``register_loss`` (the
recommended form), or to a **module**, whose import registers the losses. Entry points are
loaded lazily, all together, the first time an unknown name is looked up or ``list_losses``/
``describe_losses`` runs. A plugin that fails to load is remembered and raises
``PluginLoadError`` only when its name is requested; other losses keep working.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, DuplicateNameError, PluginLoadError, UnknownLossError
from ..plugins import load_entry_points
from .base import NEEDS, Loss, NoConfig

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "adcert.losses"


@dataclass(frozen=True)
class LossEntry:
    """A registry row: what ``create_loss`` builds a ``Loss`` from."""

    name: str
    target: Any  # function (ctx, cfg) -> LossOutput, or a Loss subclass
    config: type
    needs: frozenset[str]
    description: str


_REGISTRY: dict[str, LossEntry] = {}
_BROKEN: dict[str, str] = {}  # entry-point name -> why it failed to load
_entry_points_loaded = False


def register_loss(name: str, config: type | None = None, needs=frozenset(), description: str = "") -> Callable:
    """Decorator registering a loss function or ``Loss`` subclass under ``name``.

    Args:
        name: registry name (the methods.md name for built-ins).
        config: frozen dataclass of the loss's parameters (None: no parameters).
        needs: subset of {"attack", "bounds", "teacher", "features"}.
        description: one line for ``describe_losses`` (default: the docstring's first line).

    Raises:
        DuplicateNameError: ``name`` is already registered.
        ConfigError: unknown ``needs`` or a config that is not a dataclass.
    """
    needs = frozenset(needs)
    if needs - NEEDS:
        raise ConfigError(f"loss {name!r}: unknown needs {sorted(needs - NEEDS)}; use {sorted(NEEDS)}")
    config = config or NoConfig
    if not dataclasses.is_dataclass(config):
        raise ConfigError(f"loss {name!r}: config must be a dataclass, got {config!r}")

    def wrap(target):
        if name in _REGISTRY:
            raise DuplicateNameError(
                f"loss {name!r} is already registered (by {_origin(_REGISTRY[name].target)}); pick another name"
            )
        doc = (target.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = LossEntry(name, target, config, needs, description or (doc[0] if doc else ""))
        return target

    return wrap


def unregister_loss(name: str) -> None:
    """Remove ``name`` from the registry (plugins reloading themselves; tests)."""
    _REGISTRY.pop(name, None)
    _BROKEN.pop(name, None)


def _origin(target) -> str:
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', target)}"


def _load_entry_points() -> None:
    """Load every ``adcert.losses`` entry point once; remember failures per name."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True

    def register(name, loaded):  # importing the module registers its losses; a function registers when called
        if callable(loaded) and not isinstance(loaded, type):
            loaded()

    for name, reason in load_entry_points(ENTRY_POINT_GROUP, _REGISTRY, register).items():
        _BROKEN[name] = reason
        log.warning("loss plugin %r failed to load: %s", name, reason)


def _forget_entry_points() -> None:
    """Clear the 'entry points loaded' memo so the next lookup scans them again (tests)."""
    global _entry_points_loaded
    _entry_points_loaded = False
    _BROKEN.clear()


def _entry(name: str) -> LossEntry:
    if name not in _REGISTRY:
        _load_entry_points()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _BROKEN:
        raise PluginLoadError(
            f"loss plugin {name!r} failed to load ({_BROKEN[name]}); fix or uninstall the package that provides it"
        )
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise UnknownLossError(f"unknown loss {name!r}{hint}; known losses: {', '.join(sorted(_REGISTRY))}")


def loss_config(name: str, **params):
    """Validated config instance of loss ``name`` (unknown params raise ConfigError)."""
    entry = _entry(name)
    fields = [f.name for f in dataclasses.fields(entry.config)]
    for key in params:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            known = ", ".join(fields) or "none"
            raise ConfigError(f"loss {name!r} has no parameter {key!r}{hint}; its parameters: {known}")
    return entry.config(**params)


def create_loss(name: str, **params) -> Loss:
    """Build the loss ``name`` with ``params`` validated against its config dataclass.

    Raises:
        UnknownLossError: no such loss (message lists close matches and known names).
        PluginLoadError: the plugin providing ``name`` failed to load.
        ConfigError: an unknown parameter (named, with close matches) or a value out of range.
    """
    entry = _entry(name)
    config = loss_config(name, **params)
    if isinstance(entry.target, type) and issubclass(entry.target, Loss):
        return entry.target(name, config, entry.needs, description=entry.description)
    return Loss(name, config, entry.needs, fn=entry.target, description=entry.description)


def loss_needs(name: str) -> frozenset[str]:
    """What loss ``name`` uses (e.g. the trainer checks "teacher" before loading data)."""
    return _entry(name).needs


def list_losses(pattern: str = "*") -> list[str]:
    """Registered loss names matching the fnmatch ``pattern``, sorted."""
    _load_entry_points()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def describe_losses() -> dict[str, str]:
    """``{name: one-line description}`` for every registered loss, sorted by name."""
    _load_entry_points()
    return {n: _REGISTRY[n].description for n in sorted(_REGISTRY)}

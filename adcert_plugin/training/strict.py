"""Strict conversion of nested dicts (parsed YAML/JSON) into frozen config dataclasses.

``build(cls, data, source)`` checks every key (an unknown one raises ``ConfigError`` naming
the dotted key, the source and a ``difflib`` close match), checks and converts every value
against the field's annotation (``int`` → ``float``, list → tuple, "5e-4" → 0.0005, since
YAML 1.1 reads an exponent without a dot as a string), then constructs the dataclass, so its
``__post_init__`` range checks run. A ``FieldError`` raised there is reported with the dotted
path and the source of that value. ``source`` is a string, or a dict mapping dotted keys to
where each value came from (a preset, a file, a flag).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

from ..errors import AdcertError, ConfigError

Source = str | dict


class FieldError(ConfigError):
    """A bad value of one field; ``build`` adds the dotted section path and the source."""

    def __init__(self, name: str, value: Any, why: str):
        self.name, self.value, self.why = name, value, why
        super().__init__(f"{name}={value!r}: {why}")


def check(ok: bool, name: str, value: Any, why: str) -> None:
    """Raise ``FieldError(name, value, why)`` unless ``ok`` (for ``__post_init__`` range checks)."""
    if not ok:
        raise FieldError(name, value, why)


def plain(value: Any) -> Any:
    """Tuples → lists and Paths → str, recursively: a value YAML can write and read back."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def flatten(data: dict, prefix: str = "", keep: Iterable[str] = ()) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; dotted keys in ``keep`` stay whole (free-form dicts)."""
    out = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value and dotted not in keep:
            out.update(flatten(value, dotted, keep))
        else:
            out[dotted] = value
    return out


def _source(source: Source, key: str) -> str:
    return source if isinstance(source, str) else source.get(key, "the defaults")


def check_keys(cls, data: Any, where: str, source: str) -> None:
    """Raise on a key that ``cls`` (recursively) does not have; values are not checked here."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'the config'} in {source}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if key not in hints:
            names = [f.name for f in fields(cls)]
            dotted = f"{where}.{key}" if where else key
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
            hint = f"; did you mean {(where + '.' if where else '') + close[0]!r}?" if close else ""
            raise ConfigError(f"unknown key {dotted!r} in {source}{hint} (valid here: {', '.join(names)})")
        if dataclasses.is_dataclass(hints[key]):
            check_keys(hints[key], value, f"{where}.{key}" if where else key, source)


def build(cls, data: Any, source: Source, where: str = ""):
    """Build dataclass ``cls`` from ``data``; missing keys take the dataclass defaults."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where or 'the config'} in {_source(source, where)}: expected a mapping, got {type(data).__name__}"
        )
    check_keys(cls, data, where, _source(source, where))
    hints, kwargs = typing.get_type_hints(cls), {}
    for f in fields(cls):
        if f.name in data:
            dotted = f"{where}.{f.name}" if where else f.name
            kwargs[f.name] = _coerce(hints[f.name], data[f.name], dotted, source)
    try:
        return cls(**kwargs)
    except FieldError as err:
        dotted = f"{where}.{err.name}" if where else err.name
        raise ConfigError(f"{dotted}={err.value!r} in {_source(source, dotted)}: {err.why}") from None
    except ValueError as err:  # a dataclass outside adcert's hierarchy (AttackConfig) checking itself
        raise ConfigError(f"{where or 'config'} from {_sources(source, data, where)}: {err}") from None
    except AdcertError as err:  # e.g. a registry refusing a name: say where the section came from
        if not where:
            raise
        raise type(err)(f"{err} ({where} from {_sources(source, data, where)})") from None


def _sources(source: Source, data: dict, where: str) -> str:
    """Where a section's values came from (its keys are set one by one: --set attack.steps=0)."""
    return ", ".join(sorted({_source(source, k) for k in flatten(data, where)} or {_source(source, where)}))


def _coerce(tp, value, where: str, source: Source):
    """Check ``value`` against annotation ``tp``; return it converted."""
    if dataclasses.is_dataclass(tp):
        return build(tp, value, source, where)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    src = _source(source, where)
    bad = ConfigError(f"{where}={value!r} in {src}: expected {getattr(tp, '__name__', str(tp))}")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where, source)
            except ConfigError:
                continue
        raise ConfigError(f"{where}={value!r} in {src}: expected {' or '.join(_name(a) for a in args)}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}={value!r} in {src}: must be one of {', '.join(map(repr, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad
        return tuple(_coerce(args[0], v, f"{where}[{i}]", src) for i, v in enumerate(value))
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise bad
        return plain(value)
    if tp is float and isinstance(value, str):
        try:
            return number_from_text(value)
        except ValueError:
            raise bad from None
    if tp is str and isinstance(value, Path):
        return str(value)
    if tp in (bool, int, float, str):
        ok = isinstance(value, (int, float) if tp is float else tp) and (tp is bool or not isinstance(value, bool))
        if not ok:
            raise bad
        return float(value) if tp is float else value
    raise bad


def number_from_text(text: str) -> float:
    """A finite number written as the papers write it: ``0.0078``, ``5e-4`` or a fraction ``2/255``.

    Raises:
        ValueError: not a number, or NaN / infinite (a time or a radius of NaN means nothing).
    """
    top, slash, bottom = str(text).strip().partition("/")
    try:
        value = float(top) / float(bottom) if slash else float(top)
    except ZeroDivisionError:
        raise ValueError(f"{text!r} divides by zero") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def _name(tp) -> str:
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp).replace("typing.", ""))

"""The resolved run config: defaults < ``--preset`` < ``--config FILE`` < flags < ``--set``.

Each layer is checked for unknown keys on its own (so an error names the file or flag it came
from, with a close match), then the layers are merged and built once into a ``TrainConfig``.
When a layer changes ``loss.name`` without giving ``loss.params``, the params of lower layers
are dropped (they belong to the other loss).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .config import LossConfig, TrainConfig, read_config_file
from .presets import get_preset
from .strict import build, check_keys, flatten, plain

_FREE_FORM = ("loss.params", "model.kwargs")  # dicts merged and validated as a whole


def _nest(dotted: dict[str, Any]) -> dict:
    out: dict = {}
    for key, value in dotted.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section")
        node[parts[-1]] = value
    return out


def parse_sets(sets: Iterable[str]) -> dict[str, Any]:
    """``["optim.lr=1e-3", ...]`` → ``{"optim.lr": 0.001}``; values are parsed as YAML."""
    out = {}
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE (e.g. optim.lr=1e-3), got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item!r}: cannot parse the value: {' '.join(str(err).split())}") from None
        out[key.strip()] = value
    return out


def _merge(base: dict, layer: dict, provenance: dict, source: str) -> dict:
    """Deep-merge ``layer`` into ``base`` (a copy); ``loss.params`` merge key by key."""
    merged = copy.deepcopy(base)
    old_loss = merged.get("loss", {}).get("name", LossConfig.name)
    new_loss = layer.get("loss", {}).get("name")
    if new_loss is not None and new_loss != old_loss and "params" not in layer.get("loss", {}):
        merged.get("loss", {}).pop("params", None)
        for key in [k for k in provenance if k.startswith("loss.params")]:
            del provenance[key]
    for key, value in flatten(layer, keep=_FREE_FORM).items():
        node = merged
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if isinstance(value, dict) and isinstance(node.get(parts[-1]), dict):
            node[parts[-1]] = {**node[parts[-1]], **copy.deepcopy(value)}
        else:
            node[parts[-1]] = copy.deepcopy(value)
        provenance[key] = source
        for sub in flatten(value, key) if isinstance(value, dict) else {}:
            provenance[sub] = source
    return merged


def build_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    sets: Iterable[str] = (),
    resume: bool = False,
) -> TrainConfig:
    """Layer defaults < preset < config file < flags < --set, strictly, into one TrainConfig.

    Args:
        preset: a registered preset name (see ``list_presets``).
        config_file: a YAML or JSON file.
        flags: dotted keys → values from explicit CLI flags (``None`` values are skipped).
        sets: ``KEY=VALUE`` strings.
        resume: with neither a preset nor a config file, start from ``<out_dir>/config.yaml``
            (out_dir from the flags or sets) when it exists.
    """
    flag_layer = _nest({k: plain(v) for k, v in (flags or {}).items() if v is not None})
    set_layer = _nest(parse_sets(sets))
    layers: list[tuple[str, dict]] = []
    if preset is not None:
        layers.append((f"preset {preset!r}", get_preset(preset)))
    if config_file is not None:
        layers.append((str(config_file), read_config_file(config_file)))
    elif resume and preset is None:
        out_dir = set_layer.get("out_dir", flag_layer.get("out_dir"))
        saved = Path(out_dir or TrainConfig.out_dir) / "config.yaml"
        if saved.is_file():
            layers.append((str(saved), read_config_file(saved)))
    layers += [("command-line flags", flag_layer), ("--set", set_layer)]
    merged: dict = {}
    provenance: dict[str, str] = {}
    for source, layer in layers:
        check_keys(TrainConfig, layer, "", source)
        merged = _merge(merged, layer, provenance, source)
    return build(TrainConfig, merged, provenance)

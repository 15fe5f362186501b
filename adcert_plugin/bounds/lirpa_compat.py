"""Compatibility layer for auto_LiRPA 0.3 (the registry's version) on torch 2.x and numpy 2.

Version-gated: it acts only when the installed auto_LiRPA is older than 0.4. A newer
auto_LiRPA (the GitHub version) is used untouched. This module never imports auto_LiRPA
itself: ``lirpa.py`` calls ``prepare_import()`` before its import and ``patch_bounded_module``
after it, so auto_LiRPA keeps exactly one importer.

What 0.3 trips on, and the fix for each:
  * ``numpy.lib.arraysetops`` is gone in numpy 2 → a shim module exposing ``numpy.isin``.
  * ``torch.onnx.symbolic_helper._set_opset_version`` moved under ``torch.onnx._internal``
    (and ``torch.onnx.utils._optimize_graph`` may) → re-attached where 0.3 looks for them.
  * ``torch._C.Node.__getitem__`` is gone → ``node[k]`` re-created from ``node.kindOf(k)``.
  * ``BoundedModule._named_members`` lacks ``remove_duplicate`` → ``.parameters()`` fails;
    a wrapper accepts and honours the argument.
  * sparse alpha in alpha-CROWN breaks on conv layers → ``DEFAULT_BOUND_OPTS`` turns it off.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import types
from typing import Any

FIRST_FIXED = (0, 4)
DEFAULT_BOUND_OPTS_03 = {"sparse_features_alpha": False, "sparse_spec_alpha": False}


def installed_version() -> tuple[int, ...] | None:
    """auto_LiRPA's version from its metadata (without importing it), or None if absent."""
    try:
        text = importlib.metadata.version("auto_LiRPA")
    except importlib.metadata.PackageNotFoundError:
        return None
    return _parse_version(text)


def _parse_version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def needs_compat(version: tuple[int, ...] | None) -> bool:
    return version is not None and version < FIRST_FIXED


def default_bound_opts(version: tuple[int, ...] | None) -> dict:
    """Bound options to pass to BoundedModule for this auto_LiRPA version."""
    return dict(DEFAULT_BOUND_OPTS_03) if needs_compat(version) else {}


def prepare_import(version: tuple[int, ...] | None) -> list[str]:
    """Install the pre-import shims when ``version`` needs them. Returns what was patched."""
    if not needs_compat(version):
        return []
    applied = []
    applied += _shim_numpy_arraysetops()
    applied += _shim_torch_onnx()
    applied += _shim_node_getitem()
    return applied


def _shim_numpy_arraysetops() -> list[str]:
    import numpy

    try:
        importlib.import_module("numpy.lib.arraysetops")
        return []
    except ImportError:
        shim = types.ModuleType("numpy.lib.arraysetops")
        shim.isin = numpy.isin  # type: ignore[attr-defined]  # a stand-in module, built here
        sys.modules["numpy.lib.arraysetops"] = shim
        return ["numpy.lib.arraysetops"]


def _shim_torch_onnx() -> list[str]:
    import torch.onnx.symbolic_helper as helper
    import torch.onnx.utils as onnx_utils

    applied = []
    if not hasattr(onnx_utils, "_optimize_graph"):
        from torch.onnx._internal.torchscript_exporter import utils as internal_utils

        onnx_utils._optimize_graph = internal_utils._optimize_graph
        applied.append("torch.onnx.utils._optimize_graph")
    if not hasattr(helper, "_set_opset_version"):
        from torch.onnx._internal.torchscript_exporter._globals import GLOBALS

        def _set_opset_version(opset_version: int) -> None:
            GLOBALS.export_onnx_opset_version = opset_version

        helper._set_opset_version = _set_opset_version
        applied.append("torch.onnx.symbolic_helper._set_opset_version")
    return applied


def _shim_node_getitem() -> list[str]:
    import torch

    if hasattr(torch._C.Node, "__getitem__"):
        return []

    def node_getitem(node, name):
        # kindOf gives the attribute's type tag ("i", "f", "s", "t", "is", ...), which is
        # also the name of the typed getter: node.i(name), node.f(name), ...
        return getattr(node, node.kindOf(name))(name)

    torch._C.Node.__getitem__ = node_getitem
    return ["torch._C.Node.__getitem__"]


def patch_bounded_module(bounded_module_cls: Any, version: tuple[int, ...] | None) -> list[str]:
    """Post-import fix: let ``BoundedModule._named_members`` take ``remove_duplicate``."""
    if not needs_compat(version) or getattr(bounded_module_cls, "_adcert_compat", False):
        return []
    original = bounded_module_cls._named_members

    def _named_members(self, get_members_fn, prefix="", recurse=True, remove_duplicate=True):
        if remove_duplicate:  # 0.3's own loop already skips repeats
            yield from original(self, get_members_fn, prefix, recurse)
            return
        modules = self.named_modules(prefix=prefix, remove_duplicate=False) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, value in get_members_fn(module):
                if value is not None:
                    yield (module_prefix + ("." if module_prefix else "") + name, value)

    bounded_module_cls._named_members = _named_members
    bounded_module_cls._adcert_compat = True
    return ["BoundedModule._named_members"]

"""The auto_LiRPA compatibility layer: gated on the version, a no-op on a newer auto_LiRPA."""

from __future__ import annotations

import re

import pytest
from conftest import REPO

from adcert_plugin import bounds
from adcert_plugin.bounds import lirpa_compat

PACKAGES = [REPO / name for name in ("adcert_plugin", "vnncomp")]


@pytest.mark.parametrize(
    "text,expected", [("0.3", (0, 3)), ("0.3.1", (0, 3, 1)), ("0.7.1", (0, 7, 1)), ("0.6.0.dev0", (0, 6, 0))]
)
def test_version_parsing(text, expected):
    assert lirpa_compat._parse_version(text) == expected


def test_compat_only_for_versions_before_0_4():
    assert lirpa_compat.needs_compat((0, 3))
    assert not lirpa_compat.needs_compat((0, 4))
    assert not lirpa_compat.needs_compat((0, 7, 1))
    assert not lirpa_compat.needs_compat(None)


def test_newer_auto_lirpa_is_left_untouched():
    class FakeBoundedModule:
        def _named_members(self, get_members_fn, prefix="", recurse=True, remove_duplicate=True):
            return iter(())

    original = FakeBoundedModule._named_members
    assert lirpa_compat.prepare_import((0, 7, 1)) == []
    assert lirpa_compat.patch_bounded_module(FakeBoundedModule, (0, 7, 1)) == []
    assert FakeBoundedModule._named_members is original
    assert lirpa_compat.default_bound_opts((0, 7, 1)) == {}


def test_old_auto_lirpa_gets_sparse_alpha_off():
    assert lirpa_compat.default_bound_opts((0, 3)) == {"sparse_features_alpha": False, "sparse_spec_alpha": False}


def test_patched_bounded_module_lists_parameters():
    """0.3's _named_members lacked remove_duplicate, so .parameters() raised on torch 2.x."""
    from conftest import tiny_net

    model = tiny_net("cnn-bn")
    bounded = bounds.wrap_model(model, (1, 8, 8), use_native_ibp=False)
    module = bounded._bounded_module()
    params = list(module.parameters())
    assert {id(p) for p in params} == {id(p) for p in model.parameters()}
    assert len(list(module.named_parameters(remove_duplicate=False))) >= len(params)


def test_only_bounds_module_imports_auto_lirpa():
    importers = [
        path
        for package in PACKAGES
        for path in package.rglob("*.py")
        if re.search(r"^\s*(import|from)\s+auto_LiRPA", path.read_text(), re.M)
    ]
    assert [p.relative_to(PACKAGES[0].parent).as_posix() for p in importers] == ["adcert_plugin/bounds/lirpa.py"]


def test_library_code_does_not_print():
    offenders = [
        path
        for package in PACKAGES
        for path in package.rglob("*.py")
        if not path.name.startswith("cli") and re.search(r"^\s*print\(", path.read_text(), re.M)
    ]
    assert offenders == []

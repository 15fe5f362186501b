"""The layout: no import cycle between modules, and every import goes down the pipeline.

Every module of adcert_plugin and vnncomp is parsed with ``ast``; every import counts,
function-level ones included (a lazy import still ties the two modules together).
"""

from __future__ import annotations

import ast

from conftest import REPO

PACKAGES = ("adcert_plugin", "vnncomp")

# Lowest first. A module may import its own room, or a room on a lower level; never a room on
# its own level or above. vnncomp sits above all of adcert_plugin (it uses it, never the reverse).
LEVELS = [
    {"adcert_plugin", "adcert_plugin.errors"},
    {"adcert_plugin.io", "adcert_plugin.plugins", "adcert_plugin.parallel"},
    {"adcert_plugin.splits"},
    {"adcert_plugin.data", "adcert_plugin.models"},
    {"adcert_plugin.bounds"},
    {"adcert_plugin.attacks"},
    {"adcert_plugin.losses"},
    {"adcert_plugin.training"},
    {"adcert_plugin.evaluation"},
    {"adcert_plugin.experiments"},
    {"adcert_plugin.cli"},
    {"vnncomp", "vnncomp.export"},
    {"vnncomp.results"},
    {"vnncomp.verifiers"},
    {"vnncomp.cli", "vnncomp.benchmark"},  # vnncomp.benchmark: the old import path, for old benchmark folders
]
LEVEL = {room: i for i, rooms in enumerate(LEVELS) for room in rooms}


def _modules() -> dict[str, ast.Module]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = ast.parse(path.read_text(), str(path))
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return (REPO / name.replace(".", "/") / "__init__.py").is_file()


def _imports(name: str, tree: ast.Module) -> set[str]:
    """Project modules that ``name`` imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if _is_package(name) else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # `import a.b.c` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


GRAPH = {name: _imports(name, tree) for name, tree in MODULES.items()}


def _room(module: str) -> str:
    for size in range(len(module.split(".")), 0, -1):
        prefix = ".".join(module.split(".")[:size])
        if prefix in LEVEL:
            return prefix
    raise AssertionError(f"{module} belongs to no room of LEVELS; add it there")


def test_every_module_has_a_room_and_lazy_imports_count():
    for module in MODULES:
        _room(module)
    assert "adcert_plugin.training" in GRAPH["adcert_plugin.cli.commands"]  # imported inside train_cmd
    assert "adcert_plugin.bounds" in GRAPH["vnncomp.export.selection"]  # imported inside _certifier


def test_no_import_cycle():
    """No strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert cycles == [], f"import cycles: {cycles}"


def test_imports_go_down_the_pipeline():
    upward = [
        f"{src} imports {dst}"
        for src, targets in sorted(GRAPH.items())
        for dst in sorted(targets)
        if _room(src) != _room(dst) and LEVEL[_room(dst)] >= LEVEL[_room(src)]
    ]
    assert upward == [], "imports that go up (or sideways) the pipeline:\n" + "\n".join(upward)


def test_the_checks_catch_an_upward_import():
    """A lazy import of the trainer from a loss would be reported (the test is not vacuous)."""
    tree = ast.parse("def f():\n    from ..training import train\n")
    found = _imports("adcert_plugin.losses.ibp", tree)
    assert found == {"adcert_plugin.training"}
    assert LEVEL[_room("adcert_plugin.training")] > LEVEL[_room("adcert_plugin.losses.ibp")]

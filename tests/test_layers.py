"""Imports only go down the layers of DESIGN.md, and no two modules import each other in a circle.

Every module under ``rock_env/`` is parsed (not imported) with :mod:`ast`; every import counts,
also one inside a function, under ``if TYPE_CHECKING:`` or spelled as a string that names a
module (``importlib.import_module("rock_env.x")``, an entry point ``"rock_env.x:attr"``, a
lazy export table; not a module name after ``"-m"`` in a command line, which another process
runs). A failure names the importing module, its line and the imported module.

Layers, bottom to top (a module may import its own layer and the ones below)::

    errors, paths, validation, conf, _gem
    core, protocol
    sandbox, games, registry
    tools, agents, vector
    remote
    api, cluster
    server, rollout, policies, config, gym_compat
    cli, demo, play, hub_cli, the package itself (rock_env/__init__.py)

``validation`` (the shared input checks) and ``_gem`` (lazy GEM access) import only ``errors``
and sit with it; ``cluster``
(Ray connect and leftover reaping) is shared by the server and the rollouts, so it sits below
both; ``gym_compat`` registers Gymnasium aliases that call :func:`rock_env.api.make`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "rock_env"
STRING_IMPORT = re.compile(r"(rock_env(?:\.\w+)+)(?::[\w.]+)?")
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

#: Layer of each top-level part of the package, bottom (0) to top.
LAYERS: dict[str, int] = {
    "errors": 0,
    "paths": 0,
    "validation": 0,
    "version": 0,
    "conf": 0,
    "_gem": 0,
    "core": 1,
    "protocol": 1,
    "sandbox": 2,
    "games": 2,
    "registry": 2,
    "tools": 3,
    "agents": 3,
    "vector": 3,
    "remote": 4,
    "api": 5,
    "cluster": 5,
    "server": 6,
    "rollout": 6,
    "policies": 6,
    "config": 6,
    "gym_compat": 6,
    "cli": 7,
    "demo": 7,
    "play": 7,
    "hub_cli": 7,
    "": 7,  # rock_env/__init__.py: the public API re-exports from everywhere
}


@dataclass(frozen=True)
class Import:
    """One import of a ``rock_env`` module by another."""

    source: str
    target: str
    line: int

    def __str__(self) -> str:
        path = self.source.replace(".", "/")
        return f"{path} (line {self.line}) imports {self.target}"


def module_name(path: Path) -> str:
    """``rock_env/remote/env.py`` -> ``rock_env.remote.env``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve_from(source: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    base = source.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(source: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    """The ``rock_env`` modules that ``source`` imports (a ``from pkg import sub`` counts as ``pkg.sub``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    commands = _command_line_modules(tree)
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(source, is_package, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in modules else base)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in commands:
            named = _named_module(node.value, modules)
            targets = [named] if named else []
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                yield Import(source, _known_module(target, modules), node.lineno)


def _command_line_modules(tree: ast.AST) -> set[int]:
    """The ``"rock_env.x"`` strings right after ``"-m"`` in a list: another process runs them, none is imported."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple)):
            for before, item in zip(node.elts, node.elts[1:], strict=False):
                if isinstance(before, ast.Constant) and before.value == "-m":
                    found.add(id(item))
    return found


def _named_module(text: str, modules: dict[str, Path]) -> str | None:
    """The module a string names for a later import: ``"rock_env.x.y"`` or ``"rock_env.x.y:attr"``.

    Such strings are imports in waiting (``importlib.import_module(name)``, entry points, lazy
    export tables), so they count like import statements. Prose never matches exactly.
    """
    match = STRING_IMPORT.fullmatch(text)
    if match is None or match.group(1) not in modules:
        return None
    return match.group(1)


def _known_module(target: str, modules: dict[str, Path]) -> str:
    """``target`` or its closest enclosing module that exists (``pkg.mod.attr`` -> ``pkg.mod``)."""
    while target not in modules and "." in target:
        target = target.rsplit(".", 1)[0]
    return target


def part_of(module: str) -> str:
    """The top-level part of a module: ``rock_env.remote.env`` -> ``remote``; the package -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_of(module: str) -> int:
    part = part_of(module)
    if part not in LAYERS:
        raise AssertionError(f"{module} is in no layer: add {part!r} to LAYERS in tests/test_layers.py")
    return LAYERS[part]


def all_imports() -> list[Import]:
    modules = all_modules()
    return [imp for name, path in modules.items() for imp in imports_of(name, path, modules)]


def upward_imports(imports: list[Import]) -> list[str]:
    """Each import of a higher layer, described."""
    bad = []
    for imp in imports:
        if layer_of(imp.target) > layer_of(imp.source):
            bad.append(
                f"{imp}: {_part_name(imp.source)} (layer {layer_of(imp.source)}) must not import "
                f"{_part_name(imp.target)} (layer {layer_of(imp.target)})"
            )
    return sorted(set(bad))


def _part_name(module: str) -> str:
    return part_of(module) or f"{PACKAGE}/__init__ (the public API)"


def cycles(imports: list[Import]) -> list[list[str]]:
    """The import cycles between modules (each once, as the list of modules round it).

    One kind of edge is left out: a module importing a package that contains it
    (``rock_env.vector.make`` -> ``rock_env.vector``): importing the submodule always starts the
    package's ``__init__`` first, so such an edge adds no order of its own. Every other circle is a cycle.
    """
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.source != imp.target and not _is_parent(imp.target, imp.source):
            graph.setdefault(imp.source, set()).add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _is_parent(package: str, module: str) -> bool:
    return module.startswith(package + ".")


def test_every_module_is_in_a_layer() -> None:
    missing = sorted({part_of(m) for m in all_modules() if part_of(m) not in LAYERS})
    assert not missing, f"parts of {PACKAGE} in no layer (add them to LAYERS): {missing}"


def test_imports_only_go_down() -> None:
    bad = upward_imports(all_imports())
    assert not bad, "upward imports (a lower layer takes an argument or a registered factory instead):\n" + "\n".join(
        bad
    )


def test_no_import_cycles() -> None:
    imports = all_imports()
    found = cycles(imports)
    lines = []
    for component in found:
        members = set(component)
        edges = sorted({str(i) for i in imports if i.source in members and i.target in members})
        lines.append(" <-> ".join(component) + "\n    " + "\n    ".join(edges))
    assert not found, "import cycles between modules:\n" + "\n".join(lines)


# --- the checker itself catches what it should ----------------------------------------------


CHECKER_CASES = {
    "a function-level upward import": (
        {"rock_env.registry.x": "def f():\n    from rock_env.remote import env\n", "rock_env.remote.env": ""},
        [
            "rock_env/registry/x (line 2) imports rock_env.remote.env: registry (layer 2) must not import remote (layer 4)"
        ],
        [],
    ),
    "string and TYPE_CHECKING imports (prose is no import)": (
        {
            "rock_env.core": "import importlib\nimportlib.import_module('rock_env.server.app')\n"
            "FAMILIES = ('rock_env.server.app:create',)\nDOC = 'see rock_env.server.app for more'\n",
            "rock_env.errors": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import rock_env.core\n",
            "rock_env.server.app": "",
        },
        [
            "rock_env/core (line 2) imports rock_env.server.app",
            "rock_env/core (line 3) imports rock_env.server.app",
            "rock_env/errors (line 3) imports rock_env.core",
        ],
        [],
    ),
    "downward and same-layer imports, a package name, a command line": (
        {
            "rock_env.api": "from rock_env.remote import env\nfrom rock_env import errors\nNAME = 'rock_env'\n",
            "rock_env.errors": "import sys\nCMD = [sys.executable, '-m', 'rock_env.api']\n",
            "rock_env.remote.env": "from rock_env.vector.base import X\n",
            "rock_env.vector.base": "from rock_env.registry import spec\nfrom rock_env.tools import y\n",
            "rock_env.registry.spec": "",
            "rock_env.tools.y": "",
        },
        [],
        [],
    ),
    "a cycle through a relative, function-level import": (
        {
            "rock_env.vector.a": "from rock_env.vector import b\n",
            "rock_env.vector.b": "def f():\n    from . import c\n",
            "rock_env.vector.c": "import rock_env.vector.a\n",
        },
        [],
        [["rock_env.vector.a", "rock_env.vector.b", "rock_env.vector.c"]],
    ),
}


@pytest.mark.parametrize("case", sorted(CHECKER_CASES))
def test_the_checker_itself(tmp_path: Path, case: str) -> None:
    files, want_bad, want_cycles = CHECKER_CASES[case]
    modules: dict[str, Path] = {}
    for name, text in files.items():
        path = tmp_path / (name.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        modules[name] = path
    imports = [imp for name, path in modules.items() for imp in imports_of(name, path, modules)]
    bad = upward_imports(imports)
    assert len(bad) == len(want_bad) and all(w in b for w, b in zip(want_bad, bad, strict=True)), bad
    assert cycles(imports) == want_cycles


@pytest.mark.parametrize("part", sorted({part_of(m) for m in all_modules()}))
def test_layer_table_names_real_parts(part: str) -> None:
    assert part in LAYERS, f"{part!r} is a part of {PACKAGE} without a layer"

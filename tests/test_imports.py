"""The package's modules import each other without cycles.

Every import counts: at module level, inside functions, under ``TYPE_CHECKING``; relative
imports are resolved. An import inside a function still ties the two modules together (it only
moves the failure to the first call), so a cycle made of them is a cycle all the same.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import keysentry

PACKAGE = Path(keysentry.__file__).parent


@dataclass(frozen=True)
class Edge:
    target: str
    where: str  # "path:line" of the import statement


def _modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package) for every module under ``root``."""
    found: dict[str, tuple[Path, bool]] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        if package:
            parts.pop()
        found[".".join(parts)] = (path, package)
    return found


def _imported(node: ast.Import | ast.ImportFrom, module: str, package: bool) -> Iterator[str]:
    """The dotted names an import statement of ``module`` may refer to."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
        return
    if node.level:
        base = module.split(".") if package else module.split(".")[:-1]
        if node.level > 1:
            base = base[: -(node.level - 1)]
        source = ".".join([*base, node.module] if node.module else base)
    else:
        source = node.module or ""
    for alias in node.names:
        yield f"{source}.{alias.name}"  # ``from package import module``
    yield source


def import_graph(root: Path) -> dict[str, list[Edge]]:
    """Each module of the package at ``root`` -> the package's modules it imports."""
    modules = _modules(root)
    graph: dict[str, list[Edge]] = {}
    for name, (path, package) in modules.items():
        edges: dict[str, Edge] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            where = f"{path.relative_to(root.parent)}:{node.lineno}"
            names = list(_imported(node, name, package))
            if isinstance(node, ast.ImportFrom):
                # ``from x import y``: the module x.y when there is one, else x itself.
                *submodules, source = names
                targets = [t for t in submodules if t in modules] or [source]
            else:
                targets = names
            for target in targets:
                if target in modules and target != name:
                    edges.setdefault(target, Edge(target, where))
        graph[name] = sorted(edges.values(), key=lambda e: e.target)
    return graph


def find_cycle(graph: dict[str, list[Edge]]) -> list[tuple[str, Edge]] | None:
    """One cycle as (module, the edge it leaves by) steps, or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[tuple[str, Edge]] = []

    def visit(module: str) -> list[tuple[str, Edge]] | None:
        state[module] = 1
        for edge in graph.get(module, ()):
            path.append((module, edge))
            if state.get(edge.target) == 1:
                start = next(i for i, (m, _) in enumerate(path) if m == edge.target)
                return path[start:]
            if edge.target not in state:
                cycle = visit(edge.target)
                if cycle is not None:
                    return cycle
            path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle is not None:
                return cycle
    return None


def _describe(cycle: list[tuple[str, Edge]]) -> str:
    return "\n".join(f"  {m} -> {e.target}  ({e.where})" for m, e in cycle)


def test_the_package_has_no_import_cycles() -> None:
    cycle = find_cycle(import_graph(PACKAGE))
    if cycle is not None:
        pytest.fail("import cycle in keysentry:\n" + _describe(cycle), pytrace=False)


def test_the_graph_sees_function_level_and_relative_imports() -> None:
    graph = import_graph(PACKAGE)
    targets = {m: {e.target for e in edges} for m, edges in graph.items()}
    # from_url imports the remote stores inside the function, by relative imports.
    assert {"keysentry.stores.redis", "keysentry.stores.sql"} <= targets["keysentry.stores.url"]
    # ``from ..errors import ...`` two levels up; ``from . import __version__`` the package.
    assert "keysentry.errors" in targets["keysentry.stores.redis"]
    assert "keysentry" in targets["keysentry.cli"]
    # The lazy attribute of a package is an import too.
    assert "keysentry.ratelimit.redis" in targets["keysentry.ratelimit"]


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "a.py").write_text("from .sub import b\n")
    (root / "sub" / "__init__.py").write_text("")
    (root / "sub" / "b.py").write_text("def f():\n    from .. import c\n")
    (root / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n"
    )
    cycle = find_cycle(import_graph(root))
    assert cycle is not None
    assert sorted(m for m, _ in cycle) == ["pkg.a", "pkg.c", "pkg.sub.b"]
    assert "pkg/sub/b.py:2" in _describe(cycle)

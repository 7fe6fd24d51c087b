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


def _imported(node: ast.Import | ast.ImportFrom, module: str, package: bool) -> list[list[str]]:
    """What one import statement of ``module`` imports: per name, the dotted names it may be,
    most specific first (``from x import y``: the module ``x.y``, else something of ``x``)."""
    if isinstance(node, ast.Import):
        return [[alias.name] for alias in node.names]
    if node.level:
        base = module.split(".") if package else module.split(".")[:-1]
        if node.level > 1:
            base = base[: -(node.level - 1)]
        source = ".".join([*base, node.module] if node.module else base)
    else:
        source = node.module or ""
    return [[f"{source}.{alias.name}", source] for alias in node.names]


def _imports(root: Path) -> Iterator[tuple[str, list[str], str]]:
    """(module, the dotted names one imported name may be, "path:line"), for every import
    statement of the package at ``root``, wherever it stands."""
    for name, (path, package) in _modules(root).items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                where = f"{path.relative_to(root.parent)}:{node.lineno}"
                for candidates in _imported(node, name, package):
                    yield name, candidates, where


def import_graph(root: Path) -> dict[str, list[Edge]]:
    """Each module of the package at ``root`` -> the package's modules it imports."""
    modules = _modules(root)
    edges: dict[str, dict[str, Edge]] = {name: {} for name in modules}
    for name, candidates, where in _imports(root):
        target = next((c for c in candidates if c in modules), None)
        if target is not None and target != name:
            edges[name].setdefault(target, Edge(target, where))
    return {name: sorted(found.values(), key=lambda e: e.target) for name, found in edges.items()}


def outside_imports(root: Path) -> dict[str, set[str]]:
    """Each module of the package at ``root`` -> the top-level packages it imports from
    outside it (``starlette``, ``redis``, ``os``...)."""
    own = root.name
    found: dict[str, set[str]] = {name: set() for name in _modules(root)}
    for name, names, _ in _imports(root):
        top = names[-1].split(".")[0]
        if top and top != own:
            found[name].add(top)
    return found


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


#: Web frameworks, by the top-level package they are imported as.
FRAMEWORKS = frozenset({"starlette", "fastapi", "flask", "werkzeug", "django", "rest_framework"})


@pytest.mark.parametrize(
    ("module", "frameworks"),
    [
        ("keysentry", set()),
        ("keysentry.starlette", {"starlette"}),
        ("keysentry.fastapi", {"fastapi", "starlette"}),  # FastAPI is built on Starlette
        ("keysentry.flask", {"flask", "werkzeug"}),
        ("keysentry.django.middleware", {"django"}),
        ("keysentry.django.management.commands.keysentry", {"django"}),
        ("keysentry.django.drf", {"django", "rest_framework"}),  # DRF is built on Django
    ],
)
def test_each_framework_helper_imports_its_own_framework_only(
    module: str, frameworks: set[str]
) -> None:
    graph, outside = import_graph(PACKAGE), outside_imports(PACKAGE)
    reached, todo = {module}, [module]
    while todo:
        for edge in graph[todo.pop()]:
            if edge.target not in reached:
                reached.add(edge.target)
                todo.append(edge.target)
    imported = {top: m for m in sorted(reached) for top in outside[m] & FRAMEWORKS}
    assert set(imported) == frameworks, f"{module} reaches {imported} (framework: importer)"


def test_no_module_imports_another_ones_private_names() -> None:
    """What two modules share lives in a module of its own (``_asgi_scopes.py``, ``_urls.py``),
    under public names there, rather than behind one module's underscore."""
    modules = _modules(PACKAGE)
    private = [
        f"{where}: {candidates[0]}"
        for _, candidates, where in _imports(PACKAGE)
        if len(candidates) == 2
        and candidates[1] in modules
        and candidates[0] not in modules
        and candidates[0].rpartition(".")[2].startswith("_")
        and not candidates[0].endswith("__")
    ]
    assert private == []


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

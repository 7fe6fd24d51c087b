"""Exempt paths (health checks, public docs) matched so that no spelling of a path bypasses auth.

An entry is exact (``/health``) or a subtree (``/public/*``: ``/public`` and everything under
it, at a segment boundary, so ``/public-admin`` stays protected). Matching is case-sensitive
and a path counts only in its canonical spelling: one with ``.`` or ``..`` segments, empty
segments, backslashes or control characters is never exempt, whatever it would normalise to.
Refusing to exempt is always safe (the request merely needs a key), so we never normalise a
path into an exemption. A trailing slash is part of the path: ``/health/`` is exempt only if
listed, since an app may route ``/x`` and ``/x/`` to different handlers.

Paths are relative to the app: an ASGI ``root_path`` prefix is removed first, as Starlette's
router does, and WSGI's ``PATH_INFO`` already excludes ``SCRIPT_NAME``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["CostPaths", "ExemptPaths", "app_path"]


def app_path(path: str, root_path: str) -> str:
    """``path`` relative to the app mounted at ``root_path`` (Starlette's ``get_route_path``)."""
    if root_path and path.startswith(root_path):
        if len(path) == len(root_path):
            return "/"
        if path[len(root_path)] == "/":
            return path[len(root_path) :]
    return path


def _canonical(path: str) -> bool:
    if not path.startswith("/") or "\\" in path or "//" in path:
        return False
    if not path.isprintable():
        return False
    return all(seg not in (".", "..") for seg in path.split("/"))


def _entry(path: str) -> str:
    if not path.startswith("/") or not _canonical(path.removesuffix("/*") or "/"):
        raise ValueError(f"exempt path {path!r} must be a canonical absolute path like '/health'")
    return path


class ExemptPaths:
    __slots__ = ("_exact", "_trees")

    def __init__(self, paths: Iterable[str]) -> None:
        entries = [_entry(p) for p in paths]
        self._exact = frozenset(p for p in entries if not p.endswith("/*"))
        self._trees = tuple(p[:-2].rstrip("/") for p in entries if p.endswith("/*"))

    def __bool__(self) -> bool:
        return bool(self._exact or self._trees)

    def __repr__(self) -> str:
        return f"ExemptPaths({sorted(self._exact) + [t + '/*' for t in self._trees]})"

    def match(self, path: str) -> bool:
        if path in self._exact:
            return _canonical(path)
        for tree in self._trees:
            if path == tree or path.startswith(tree + "/") or (not tree and path.startswith("/")):
                return _canonical(path)
        return False


class CostPaths:
    """What a request costs by its path: ``{"/v1/generate": 5, "/v1/images/*": 10}``, matched
    like exempt paths (exact, or a subtree at a segment boundary; the longest entry wins);
    every other path costs 1. A path in any other spelling than the canonical one (``.``
    segments, ``//``) costs the most any entry costs: it may reach a costly route."""

    __slots__ = ("_exact", "_most", "_trees")

    def __init__(self, costs: Mapping[str, int]) -> None:
        exact: dict[str, int] = {}
        trees: list[tuple[str, int]] = []
        for path, cost in costs.items():
            if (
                not isinstance(path, str)
                or not path.startswith("/")
                or not _canonical(path.removesuffix("/*") or "/")
            ):
                raise ValueError(f"cost path {path!r} must be a canonical absolute path")
            if isinstance(cost, bool) or not isinstance(cost, int) or not 1 <= cost <= 1_000_000:
                raise ValueError(f"the cost of {path!r} must be a whole number from 1 to 1000000")
            if path.endswith("/*"):
                trees.append((path[:-2].rstrip("/"), cost))
            else:
                exact[path] = cost
        self._exact = exact
        # Longest first: the most specific subtree decides.
        self._trees = tuple(sorted(trees, key=lambda t: len(t[0]), reverse=True))
        self._most = max([*exact.values(), *(c for _, c in trees), 1])

    def __bool__(self) -> bool:
        return bool(self._exact or self._trees)

    def __repr__(self) -> str:
        shown = {**self._exact, **{t + "/*": c for t, c in self._trees}}
        return f"CostPaths({shown})"

    def cost(self, path: str) -> int:
        found = self._exact.get(path)
        if found is None:
            for tree, cost in self._trees:
                if path == tree or path.startswith(tree + "/") or not tree:
                    found = cost
                    break
        if not _canonical(path):
            return self._most
        return 1 if found is None else found

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

from collections.abc import Iterable

__all__ = ["ExemptPaths", "app_path"]


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

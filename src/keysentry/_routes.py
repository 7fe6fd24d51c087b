"""The route template Starlette or FastAPI matched for a request, read after the app answered.

Only for usage history with ``usage_routes`` on: the drivers run before routing, so they look
once the app has returned, where the frameworks leave the route they chose. Framework-free
(duck-typed), so the drivers import no framework:

* Starlette and FastAPI put the matched route in ``scope["route"]`` (its ``path`` is the
  template, ``/items/{item_id}``). Under a ``Mount`` that is the path within the mount: the
  mounts' own templates are found once per route, by walking the app's router
  (``scope["router"]``), and kept. (One route object mounted in two places is counted under
  the first.)
Flask drops its request (and the rule it matched) before its WSGI app returns: the Flask
extension (``keysentry.flask``) notes ``request.url_rule`` itself, from a ``before_request``
hook. A request whose route cannot be told (no route matched, another framework, a mount the walk
cannot see into) has none: it counts in its day's total only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["AsgiRoutes"]

#: Routes whose templates are kept, at most (an app's own routes: a few hundred).
MAX_KNOWN = 4096
#: Mounts inside mounts walked at most when looking for a route.
MAX_DEPTH = 8


class AsgiRoutes:
    """The template of ``scope["route"]``: a dict lookup for a route seen before."""

    __slots__ = ("_known",)

    def __init__(self) -> None:
        #: id of a route object -> (the route, its full template); the route is held so that
        #: its id cannot be reused by another object.
        self._known: dict[int, tuple[object, str]] = {}

    def __call__(self, scope: Mapping[str, Any]) -> str | None:
        route = scope.get("route")
        if route is None:
            return None
        known = self._known.get(id(route))
        if known is not None and known[0] is route:
            return known[1]
        template = _template(scope, route)
        if template is not None and len(self._known) < MAX_KNOWN:
            self._known[id(route)] = (route, template)
        return template


def _template(scope: Mapping[str, Any], route: object) -> str | None:
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return None
    root = scope.get("root_path", "")
    if root == scope.get("app_root_path", root):
        return path  # not under a mount
    return _mounted(getattr(scope.get("router"), "routes", None), route, "", 0)


def _mounted(routes: object, wanted: object, prefix: str, depth: int) -> str | None:
    """The full template of ``wanted`` among ``routes`` and the mounts within them."""
    if depth > MAX_DEPTH or not isinstance(routes, list):
        return None
    for candidate in routes:
        path = getattr(candidate, "path", None)
        if not isinstance(path, str):
            continue
        if candidate is wanted:
            return prefix + path
        inner = getattr(candidate, "routes", None)
        if inner:
            found = _mounted(inner, wanted, prefix + path, depth + 1)
            if found is not None:
                return found
    return None

"""The portal's routes, as data: what the app answers, and what its OpenAPI document declares.

Paths are below the portal's mount point; ``{id}`` is one path segment, a key id.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["API", "FORM", "PAGE", "ROUTES", "Route", "match"]

API = "api"  # JSON, for scripts: a session (with the CSRF header) or an admin key
FORM = "form"  # the dashboard's forms: a session and the CSRF field
PAGE = "page"  # HTML pages


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    action: str
    face: str


ROUTES: tuple[Route, ...] = (
    Route("GET", "/", "dashboard", PAGE),
    Route("POST", "/keys", "create", FORM),
    Route("POST", "/keys/{id}/rotate", "rotate", FORM),
    Route("POST", "/keys/{id}/disable", "disable", FORM),
    Route("POST", "/keys/{id}/enable", "enable", FORM),
    Route("POST", "/keys/{id}/revoke", "revoke", FORM),
    Route("GET", "/api/keys", "list", API),
    Route("POST", "/api/keys", "create", API),
    Route("GET", "/api/keys/{id}", "show", API),
    Route("PATCH", "/api/keys/{id}", "update", API),
    Route("DELETE", "/api/keys/{id}", "delete", API),
    Route("POST", "/api/keys/{id}/disable", "disable", API),
    Route("POST", "/api/keys/{id}/enable", "enable", API),
    Route("POST", "/api/keys/{id}/rotate", "rotate", API),
    Route("POST", "/api/keys/{id}/revoke", "revoke", API),
    Route("GET", "/api/keys/{id}/usage", "usage", API),
    Route("GET", "/api/account", "account", API),
)

#: Served to anyone: the stylesheet, the script, the API's description.
STATIC = {"/static/portal.css": "text/css", "/static/portal.js": "text/javascript"}
OPENAPI = "/api/openapi.json"

_SPLIT = {route: route.path.strip("/").split("/") for route in ROUTES}


def match(path: str) -> tuple[list[Route], str | None]:
    """The routes whose path matches (any method), and the key id in it."""
    parts = path.strip("/").split("/") if path != "/" else [""]
    found: list[Route] = []
    key_id = None
    for route, pattern in _SPLIT.items():
        if len(pattern) != len(parts):
            continue
        bound = None
        for want, got in zip(pattern, parts, strict=True):
            if want == "{id}":
                bound = got
            elif want != got:
                break
        else:
            found.append(route)
            key_id = bound
    return found, key_id

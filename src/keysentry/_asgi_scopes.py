"""What the Starlette and FastAPI helpers share: the identity the ASGI middleware left in the
scope, the credit it charged (given back when a route's scopes refuse the key), and a refusal
answered on HTTP or on a websocket handshake.

Private to ``starlette.py`` and ``fastapi.py``. It imports Starlette, which FastAPI is built
on, and nothing of FastAPI; ``flask.py`` imports none of it (``_scopes.py`` holds what all three
share without a framework).
"""

from __future__ import annotations

from typing import Any, cast

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.routing import Match
from starlette.websockets import WebSocket

from ._route_costs import declared_cost, install
from .core import CHARGED, Charge, Keysentry
from .responses import Rendered
from .stores.base import KeyStore

__all__ = [
    "DenialResponse",
    "declare_costs",
    "deny",
    "identity_of",
    "refund",
    "refund_from_thread",
    "route_cost",
]

#: ASGI extension that lets a refused websocket handshake carry an HTTP response.
_DENIAL_EXTENSION = "websocket.http.response"


class DenialResponse(Response):
    """A refusal as rendered by a guard (``ks.render(denial)``), as a Starlette response."""

    def __init__(self, rendered: Rendered) -> None:
        self.status_code = rendered.status
        self.body = rendered.body
        self.background = None
        # A copy: outer middleware (CORS, for one) may append to the header list it is sent.
        self.raw_headers = list(rendered.headers)


def identity_of(conn: HTTPConnection) -> object:
    """What the middleware left for this request (a :class:`~keysentry.KeyIdentity`), or None.

    Read from the scope itself: ``request.state`` would build a ``State`` object to answer.
    """
    state = conn.scope.get("state")
    return state.get("api_key") if state else None


def _charged(conn: HTTPConnection) -> Charge | None:
    """The credit account the middleware charged for this request (taken: refunded once)."""
    state = conn.scope.get("state")
    return state.pop(CHARGED, None) if state else None


async def refund(keysentry: Keysentry, conn: HTTPConnection) -> None:
    """A request refused for a scope spends no credit: give back what the middleware took."""
    account = _charged(conn)
    if account is not None:
        await keysentry.arefund(account)


def refund_from_thread(keysentry: Keysentry, conn: HTTPConnection) -> None:
    """:func:`refund` for a sync endpoint, on Starlette's threadpool."""
    account = _charged(conn)
    if account is None:
        return
    if isinstance(keysentry.store, KeyStore):
        keysentry.refund(account)
    else:
        import anyio.from_thread

        anyio.from_thread.run(keysentry.arefund, account)


async def deny(conn: HTTPConnection, rendered: Rendered, code: str) -> Response | None:
    """Answer a refusal: the response to send for HTTP; for a websocket, refuse the handshake
    here (the HTTP response where the server supports it, else a close with 1008, as the
    middleware does) and return None."""
    if conn.scope["type"] != "websocket":
        return DenialResponse(rendered)
    websocket = cast(WebSocket, conn)
    if _DENIAL_EXTENSION in (conn.scope.get("extensions") or {}):
        await websocket.send_denial_response(DenialResponse(rendered))
    else:
        await websocket.close(1008, code)
    return None


def route_cost(scope: Any) -> int | None:
    """The cost declared on the route this request reaches in the Starlette (or FastAPI) app
    serving it (``scope["app"]``, which Starlette sets before its middleware runs), found as
    its router will find it: the first route that matches fully, through mounts. None when no
    route matches or the route declares none."""
    app = scope.get("app")
    routes = getattr(getattr(app, "router", None), "routes", None)
    return None if routes is None else _cost_in(routes, scope, 0)


def _cost_in(routes: Any, scope: Any, depth: int) -> int | None:
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None and depth < 8:
            # FastAPI's included router: its routes as included (prefix, dependencies).
            found = _cost_in(list(contexts()), scope, depth + 1)
            if found is not None:
                return found
            continue
        try:
            match, child = route.matches(scope)
        except Exception:  # noqa: S112 - a route that cannot judge this request: not it
            continue
        if match is not Match.FULL:
            continue
        inner = getattr(route, "routes", None)
        if inner is not None and depth < 8:  # a Mount: on to its routes, as the router goes
            return _cost_in(inner, {**scope, **child}, depth + 1)
        return _declared(route, child, scope)
    return None


def _declared(route: Any, child: Any, scope: Any) -> int | None:
    endpoint = child.get("endpoint", getattr(route, "endpoint", None))
    found = declared_cost(endpoint)
    if found is None and isinstance(endpoint, type):  # an HTTPEndpoint: its method's
        method = "get" if scope.get("method") == "HEAD" else str(scope.get("method", "")).lower()
        found = declared_cost(getattr(endpoint, method, None))
    dependant = getattr(route, "dependant", None)  # FastAPI: a require(..., cost=) dependency
    if found is None and dependant is not None:
        found = _in_dependencies(dependant, 0)
    return found


def _in_dependencies(dependant: Any, depth: int) -> int | None:
    for sub in getattr(dependant, "dependencies", ()):
        found = declared_cost(getattr(sub, "call", None))
        if found is None and depth < 8:
            found = _in_dependencies(sub, depth + 1)
        if found is not None:
            return found
    return None


def _path_key(scope: Any) -> tuple[str, str, str, str]:
    return (scope["type"], scope.get("method", ""), scope.get("root_path", ""), scope["path"])


def declare_costs(keysentry: Keysentry) -> None:
    """From now on, ``keysentry``'s middleware charges the costs routes declare."""
    install(keysentry, route_cost, _path_key)

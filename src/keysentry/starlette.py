"""Route scopes for Starlette: ``@scopes.require("read")`` on endpoints behind the middleware.

:class:`Scopes` is bound to the :class:`~keysentry.Keysentry` guard that authenticates the app,
so a refusal is rendered by that guard (its realm, its ``error_body``), exactly as the
middleware renders its own, and is rendered once, when the route is decorated::

    ks = Keysentry(store, exempt=["/health"])
    scopes = Scopes(ks)

    @scopes.require("read")
    async def list_items(request: Request) -> Response: ...

    app = Starlette(routes=[Route("/v1/items", list_items)])
    app.add_middleware(ASGIMiddleware, keysentry=ks)

Authentication stays in :class:`~keysentry.ASGIMiddleware`; the decorator only reads the
identity it left in ``scope["state"]["api_key"]``. FastAPI calls routes with keyword
arguments, not a request: there, use the dependency in ``keysentry.fastapi``. Importing this
module imports Starlette.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.websockets import WebSocket

from ._scopes import UNAUTHENTICATED, Requirement
from .core import CHARGED, Keysentry
from .responses import Rendered
from .stores.base import KeyStore

__all__ = ["DenialResponse", "Scopes"]

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])

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


def _identity_of(conn: HTTPConnection) -> object:
    """What the middleware left for this request (a :class:`~keysentry.KeyIdentity`), or None.

    Read from the scope itself: ``request.state`` would build a ``State`` object to answer.
    Shared with ``fastapi.py``.
    """
    state = conn.scope.get("state")
    return state.get("api_key") if state else None


def _charged(conn: HTTPConnection) -> str | None:
    """The credit account the middleware charged for this request (taken: refunded once)."""
    state = conn.scope.get("state")
    return state.pop(CHARGED, None) if state else None


async def _refund(keysentry: Keysentry, conn: HTTPConnection) -> None:
    """A request refused for a scope spends no credit: give back what the middleware took."""
    account = _charged(conn)
    if account is not None:
        await keysentry.arefund(account)


def _refund_from_thread(keysentry: Keysentry, conn: HTTPConnection) -> None:
    """:func:`_refund` for a sync endpoint, on Starlette's threadpool."""
    account = _charged(conn)
    if account is None:
        return
    if isinstance(keysentry.store, KeyStore):
        keysentry.refund(account)
    else:
        import anyio.from_thread

        anyio.from_thread.run(keysentry.arefund, account)


async def _deny(conn: HTTPConnection, rendered: Rendered, code: str) -> Response | None:
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


class Scopes:
    """Scope checks for the routes of apps guarded by ``keysentry``: ``Scopes(ks)``."""

    __slots__ = ("_unauthenticated", "keysentry")

    def __init__(self, keysentry: Keysentry) -> None:
        self.keysentry = keysentry
        self._unauthenticated = keysentry.render(UNAUTHENTICATED)

    def __repr__(self) -> str:
        return f"Scopes({self.keysentry!r})"

    def require(self, *scopes: str) -> Callable[[Endpoint], Endpoint]:
        """Decorate an endpoint so that only keys holding every one of ``scopes`` reach it.

        Works on async and sync function endpoints (a sync one still runs in the threadpool),
        on the methods of an ``HTTPEndpoint`` and on websocket function endpoints. A key
        without a scope gets 403 ``INSUFFICIENT_SCOPE`` (``details.required``, and
        ``WWW-Authenticate: Bearer ..., error="insufficient_scope", scope="..."``); a request
        no key authenticated (an exempt path, or no middleware) gets 401 ``MISSING_API_KEY``.
        With no scopes, any authenticated key passes.
        """
        requirement = Requirement.of(scopes)
        insufficient = requirement.insufficient
        guard = self.keysentry
        forbidden = guard.render(insufficient)
        unauthenticated = self._unauthenticated

        def decorate(endpoint: Endpoint) -> Endpoint:
            # Starlette calls endpoint(request) or, for HTTPEndpoint methods, method(self,
            # request): the connection is always the last positional argument.
            if inspect.iscoroutinefunction(endpoint):

                @functools.wraps(endpoint)
                async def guarded(*args: Any) -> Any:
                    conn: HTTPConnection = args[-1]
                    denial = requirement.check(_identity_of(conn))
                    if denial is insufficient:
                        await _refund(guard, conn)
                        return await _deny(conn, forbidden, denial.code)
                    if denial is not None:
                        return await _deny(conn, unauthenticated, denial.code)
                    return await endpoint(*args)

                return cast(Endpoint, guarded)

            @functools.wraps(endpoint)
            def guarded_sync(*args: Any) -> Any:
                denial = requirement.check(_identity_of(args[-1]))
                if denial is insufficient:
                    _refund_from_thread(guard, args[-1])
                    return DenialResponse(forbidden)
                if denial is not None:
                    return DenialResponse(unauthenticated)
                return endpoint(*args)

            return cast(Endpoint, guarded_sync)

        return decorate

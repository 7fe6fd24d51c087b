"""What the Starlette and FastAPI helpers share: the identity the ASGI middleware left in the
scope, the credit it charged (given back when a route's scopes refuse the key), and a refusal
answered on HTTP or on a websocket handshake.

Private to ``starlette.py`` and ``fastapi.py``. It imports Starlette, which FastAPI is built
on, and nothing of FastAPI; ``flask.py`` imports none of it (``_scopes.py`` holds what all three
share without a framework).
"""

from __future__ import annotations

from typing import cast

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.websockets import WebSocket

from .core import CHARGED, Charge, Keysentry
from .responses import Rendered
from .stores.base import KeyStore

__all__ = ["DenialResponse", "deny", "identity_of", "refund", "refund_from_thread"]

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

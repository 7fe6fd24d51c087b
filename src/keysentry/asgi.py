"""The ASGI driver: translates a scope into the core's values and the decision back.

Pure ASGI (no ``BaseHTTPMiddleware``: it would cost a task per request and break streaming and
context variables). ``http`` and ``websocket`` scopes are guarded; everything else (``lifespan``)
passes through untouched. A refused websocket gets the error as an HTTP response through the
``websocket.http.response`` extension when the server offers it, and a close with code 1008
(policy violation) otherwise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .core import Keysentry
from .decision import Lookup, client_allowed
from .errors import Denial
from .paths import app_path
from .ratelimit.headers import encoded_rate_headers

__all__ = ["ASGIMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ASGIMiddleware:
    """``app.add_middleware(ASGIMiddleware, keysentry=ks)``, or ``ASGIMiddleware(app, ks)``."""

    def __init__(self, app: ASGIApp, keysentry: Keysentry) -> None:
        keysentry.require_async()
        self.app = app
        self.keysentry = keysentry
        self._auth = keysentry.header.lower().encode()
        self._key = (
            None if keysentry.api_key_header is None else keysentry.api_key_header.lower().encode()
        )
        self._strip = (
            frozenset(n for n in (self._auth, self._key) if n is not None)
            if keysentry.strip_credentials
            else None
        )
        # Settings read on every request, resolved once.
        self._exempt = keysentry.exempt or None
        self._reader = keysentry.reader
        self._query = keysentry.reader.query_param is not None
        self._check = keysentry.check
        self._bearer = keysentry.reader.bearer
        self._preflight = keysentry.allow_preflight
        self._legacy = keysentry.legacy_rate_headers
        self._limited = keysentry.limiter is not None
        self._proxies = keysentry.trusted_proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        exempt = self._exempt
        if exempt is not None and exempt.match(app_path(scope["path"], scope.get("root_path", ""))):
            await self.app(scope, receive, send)
            return

        auth_name = self._auth
        key_name = self._key
        auth = key = None
        repeated = False
        for name, value in scope["headers"]:
            if name == auth_name:
                repeated |= auth is not None and value != auth
                auth = value
            elif name == key_name:
                repeated |= key is not None and value != key
                key = value
        if auth is None and key is None and self._preflight and _is_preflight(scope):
            await self.app(scope, receive, send)
            return
        if repeated or self._query:
            token = self._read_all(scope, repeated)
        elif auth is not None and key is None:
            token = self._bearer(auth)  # the common case, one call shorter
        else:
            token = self._reader.read(auth, key)
        result = token if isinstance(token, Denial) else self._check(token)
        if isinstance(result, Lookup):
            result = await self.keysentry.aresolve(result)
        if isinstance(result, Denial):
            await self._deny(scope, receive, send, result)
            return
        if result.restricted:
            refused = client_allowed(result, self._client(scope))
            if refused is not None:
                await self._deny(scope, receive, send, refused)
                return
        if self._limited and result.policies:
            limited = await self.keysentry.alimit(result)
            if isinstance(limited, Denial):
                await self._deny(scope, receive, send, limited)
                return
            if limited is not None:
                send = _adding_headers(
                    send,
                    encoded_rate_headers(limited, result.policy_field_bytes, self._legacy),
                )

        state = scope.get("state")
        if state is None:
            scope["state"] = state = {}
        state["api_key"] = result.identity
        if self._strip is not None:
            strip = self._strip
            scope = dict(scope)
            scope["headers"] = [(n, v) for n, v in scope["headers"] if n not in strip]
        await self.app(scope, receive, send)

    def _client(self, scope: Scope) -> str | None:
        """The client address an allowlist checks: the peer, or behind trusted proxies the
        address their forwarding header names."""
        peer = scope.get("client")
        address: str | None = peer[0] if peer else None
        proxies = self._proxies
        if proxies is None:
            return address
        name = proxies.header_name
        return proxies.client(address, [v for n, v in scope["headers"] if n == name])

    def _read_all(self, scope: Scope, repeated: bool) -> bytes | Denial:
        """The slow path: repeated headers, or a query parameter to consider."""
        reader = self._reader
        auth_name = self._auth
        key_name = self._key
        query = reader.query_values(scope.get("query_string", b"")) if self._query else []
        headers = scope["headers"]
        return reader.read_all(
            [v for n, v in headers if n == auth_name],
            [v for n, v in headers if n == key_name],
            query,
        )

    async def _deny(self, scope: Scope, receive: Receive, send: Send, denial: Denial) -> None:
        rendered = self.keysentry.render(denial)
        # A copy: outer middleware (CORS, for one) may append to a message's header list.
        headers = list(rendered.headers)
        if scope["type"] == "http":
            start = {"type": "http.response.start", "status": rendered.status, "headers": headers}
            await send(start)
            await send({"type": "http.response.body", "body": rendered.body})
            return
        message = await receive()
        if message["type"] != "websocket.connect":
            return  # the client left before the handshake finished
        if "websocket.http.response" in (scope.get("extensions") or {}):
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": rendered.status,
                    "headers": headers,
                }
            )
            await send({"type": "websocket.http.response.body", "body": rendered.body})
        else:
            await send({"type": "websocket.close", "code": 1008, "reason": denial.code})


def _adding_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """``send`` that appends ``extra`` to the response start (or websocket accept) headers."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] in ("http.response.start", "websocket.accept"):
            # A new message: the app may reuse its own dict and header list across responses.
            message = {**message, "headers": [*message.get("headers", ()), *extra]}
        await send(message)

    return send_with_headers


def _is_preflight(scope: Scope) -> bool:
    if scope["type"] != "http" or scope["method"] != "OPTIONS":
        return False
    names = {name for name, _ in scope["headers"]}
    return b"origin" in names and b"access-control-request-method" in names

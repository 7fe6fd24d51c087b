"""The ASGI driver: translates a scope into the core's values and the decision back.

Pure ASGI (no ``BaseHTTPMiddleware``: it would cost a task per request and break streaming and
context variables). ``http`` and ``websocket`` scopes are guarded; everything else passes
through, ``lifespan`` with the usage flusher started at startup and flushed at shutdown. A
refused websocket gets the error as an HTTP response through the ``websocket.http.response``
extension when the server offers it, and a close with code 1008 (policy violation) otherwise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from time import perf_counter
from typing import Any

from .core import CHARGED, Keysentry
from .decision import UNKNOWN_KEY, Lookup, Verdict, client_allowed
from .errors import Denial
from .paths import app_path
from .ratelimit.gcra import RateDecision
from .ratelimit.headers import encoded_rate_headers
from .usage import UsageRecorder

__all__ = ["ASGIMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]


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
        self._usage = keysentry.usage
        self._events = keysentry.on_decision is not None
        self._proxies = keysentry.trusted_proxies
        self._attempts = keysentry.attempts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            if kind == "lifespan" and self._usage is not None:
                receive = self._lifespan(receive, self._usage)
            await self.app(scope, receive, send)
            return
        exempt = self._exempt
        if exempt is not None and exempt.match(app_path(scope["path"], scope.get("root_path", ""))):
            await self.app(scope, receive, send)
            return
        started = perf_counter() if self._events else 0.0

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
        if type(result) is not Verdict:  # one test on the common path
            attempts = self._attempts
            if isinstance(result, Lookup):
                blocked = None if attempts is None else attempts.blocked(self._client(scope))
                result = blocked or await self.keysentry.aresolve(result)
            if isinstance(result, Denial):
                if result is UNKNOWN_KEY and attempts is not None:
                    result = await attempts.afailed(self._client(scope), result)
                await self._deny(scope, receive, send, result, None, started, token)
                return
        if result.admit:
            admitted = await self._admit(scope, result)
            if isinstance(admitted, Denial):
                await self._deny(scope, receive, send, admitted, result, started)
                return
            if admitted is not None:
                send = _adding_headers(send, admitted)
        if self._usage is not None:
            self._usage.note(result.record.id)
        if self._events:
            self.keysentry.emit(result, None, started, scope.get("method", "GET"), scope["path"])

        state = scope.get("state")
        if state is None:
            scope["state"] = state = {}
        state["api_key"] = result.identity
        if result.charged:
            state[CHARGED] = result.credit_account
        if self._strip is not None:
            strip = self._strip
            scope = dict(scope)
            scope["headers"] = [(n, v) for n, v in scope["headers"] if n not in strip]
        await self.app(scope, receive, send)

    async def _admit(self, scope: Scope, verdict: Verdict) -> Denial | Headers | None:
        """The checks for keys that have more than a digest: client address, rate limit,
        credits, in that order (a refusal by one spends nothing of the next). The refusal, or
        the RateLimit headers to add, or None."""
        if verdict.restricted:
            refused = client_allowed(verdict, self._client(scope))
            if refused is not None:
                return refused
        limited: RateDecision | None = None
        if self._limited and verdict.policies:
            decided = await self.keysentry.alimit(verdict)
            if isinstance(decided, Denial):
                return decided
            limited = decided
        if verdict.charged:
            unpaid = await self.keysentry.aspend(verdict)
            if unpaid is not None:
                return self.keysentry.with_rate_headers(unpaid, verdict, limited)
        if limited is None:
            return None
        return encoded_rate_headers(limited, verdict.policy_field_bytes, self._legacy)

    @staticmethod
    def _lifespan(receive: Receive, usage: UsageRecorder) -> Receive:
        """``receive`` that starts the usage flusher at startup and flushes at shutdown,
        before the app hears of it (its shutdown may close the store)."""

        async def receive_lifespan() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                usage.start()
            elif message["type"] == "lifespan.shutdown":
                await usage.aclose()
            return message

        return receive_lifespan

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

    async def _deny(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        denial: Denial,
        verdict: Verdict | None,
        started: float,
        token: bytes | Denial | None = None,
    ) -> None:
        if self._events:
            method = scope.get("method", "GET")
            self.keysentry.emit(verdict, denial, started, method, scope["path"], token)
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


def _adding_headers(send: Send, extra: Headers) -> Send:
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

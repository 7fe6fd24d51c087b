"""The ASGI driver: translates a scope into the pipeline's values and its outcome back.

Pure ASGI (no ``BaseHTTPMiddleware``: it would cost a task per request and break streaming and
context variables). ``http`` and ``websocket`` scopes are guarded; everything else passes
through, ``lifespan`` with the usage flusher started at startup and flushed at shutdown. A
refused websocket gets the error as an HTTP response through the ``websocket.http.response``
extension when the server offers it, and a close with code 1008 (policy violation) otherwise.
Every decision is the pipeline's (``pipeline.py``); this module only reads and writes ASGI.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from functools import partial
from typing import Any

from ._installed import refuse_twice
from ._routes import AsgiRoutes
from .core import CHARGED, Keysentry
from .decision import Verdict
from .errors import Denial
from .paths import app_path
from .pipeline import PASS, Admitted, Pending
from .ratelimit.headers import encoded_rate_headers

__all__ = ["ASGIMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_ONCE = (
    "app.add_middleware(ASGIMiddleware, keysentry=ks), ASGIMiddleware(app, ks) or "
    "FastAPIKeys(ks).init_app(app), only one of them"
)


class ASGIMiddleware:
    """``app.add_middleware(ASGIMiddleware, keysentry=ks)``, or ``ASGIMiddleware(app, ks)``."""

    def __init__(self, app: ASGIApp, keysentry: Keysentry) -> None:
        keysentry.require_async()
        refuse_twice(app, ASGIMiddleware, _ONCE)
        self.app = app
        self.keysentry = keysentry
        self._pipeline = keysentry._pipeline
        settings = keysentry.settings
        self._auth = settings.header.lower().encode()
        key = settings.api_key_header
        self._key = None if key is None else key.lower().encode()
        names = frozenset(n for n in (self._auth, self._key) if n is not None)
        self._strip = names if settings.strip_credentials else None
        self._query = settings.reader.query_values
        self._legacy = settings.legacy_rate_headers
        recorder = keysentry.usage_recorder
        #: With ``usage_routes``: the usage recorder, and what reads the matched route.
        self._recorder = recorder if settings.usage_routes else None
        self._routes = AsgiRoutes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            usage = self.keysentry.usage_recorder
            if kind == "lifespan" and usage is not None:
                receive = usage.lifespan(receive)
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
        pipeline = self._pipeline
        outcome = pipeline.decide(self, scope, auth, key, repeated)
        while type(outcome) is Pending:
            outcome = pipeline.resume(outcome, await outcome.arun())
        if type(outcome) is Verdict:
            verdict = outcome
        elif type(outcome) is Admitted:
            verdict, decision = outcome
            fields = encoded_rate_headers(decision, verdict.policy_field_bytes, self._legacy)
            send = partial(_send_with, send, fields)
        elif outcome is PASS:
            await self.app(scope, receive, send)
            return
        else:
            await self._deny(scope, receive, send, outcome)  # type: ignore[arg-type]
            return
        state = scope.get("state")
        if state is None:
            scope["state"] = state = {}
        state["api_key"] = verdict.identity
        if verdict.charged:
            state[CHARGED] = verdict.charge
        if self._strip is not None:
            strip = self._strip
            scope = dict(scope)
            scope["headers"] = [(n, v) for n, v in scope["headers"] if n not in strip]
        await self.app(scope, receive, send)
        if self._recorder is not None:
            template = self._routes(scope)  # the router has left its choice in the scope
            if template is not None:
                self._recorder.note_route(template, verdict.record.id)

    # -- what the pipeline asks (keysentry.pipeline.Driver) --------------------------------------

    def credentials(self, scope: Scope) -> tuple[list[bytes], list[bytes], list[bytes]]:
        headers = scope["headers"]
        return (
            [v for n, v in headers if n == self._auth],
            [v for n, v in headers if n == self._key],
            self._query(scope.get("query_string", b"")),
        )

    def preflight(self, scope: Scope) -> bool:
        if scope["type"] != "http" or scope["method"] != "OPTIONS":
            return False
        names = {name for name, _ in scope["headers"]}
        return b"origin" in names and b"access-control-request-method" in names

    def route_path(self, scope: Scope) -> str:
        return app_path(scope["path"], scope.get("root_path", ""))

    def path(self, scope: Scope) -> str:
        return str(scope["path"])

    def method(self, scope: Scope) -> str:
        return str(scope.get("method", "GET"))

    def peer(self, scope: Scope) -> str | None:
        client = scope.get("client")
        return str(client[0]) if client else None

    def forwarded(self, scope: Scope, header: bytes) -> list[bytes]:
        return [v for n, v in scope["headers"] if n == header]

    # -- answering ----------------------------------------------------------------------------

    async def _deny(self, scope: Scope, receive: Receive, send: Send, denial: Denial) -> None:
        rendered = self._pipeline.render(denial)
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
            start = {"type": "websocket.http.response.start", "status": rendered.status}
            await send({**start, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": rendered.body})
        else:
            await send({"type": "websocket.close", "code": 1008, "reason": denial.code})


def _send_with(
    send: Send, fields: Sequence[tuple[bytes, bytes]], message: Message
) -> Awaitable[None]:
    """``send``, with the RateLimit ``fields`` added to the response start (or websocket
    accept); bound per request with :func:`functools.partial`, which runs no Python code."""
    kind = message["type"]
    if kind == "http.response.start" or kind == "websocket.accept":
        # A new message: the app may reuse its own dict and header list across responses.
        message = {**message, "headers": [*message.get("headers", ()), *fields]}
    return send(message)

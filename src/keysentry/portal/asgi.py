"""The portal's ASGI driver: reads a request into the portal's values, answers the portal's
waits by awaiting the guard's ``a*`` lifecycle methods and the host's ``owner_of``, writes
the response. Mount it anywhere: ``app.mount("/account/keys", portal(ks, owner_of=...))``.

``owner_of`` is called with a Starlette :class:`~starlette.requests.Request` (its
``session``, ``cookies``, ``state``...), sync or async, and returns the signed-in account or
None. Importing this module imports Starlette.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import Request as StarletteRequest

from ..paths import app_path
from ..records import KeyIdentity
from .app import Portal
from .http import MAX_BODY, Request, Response
from .steps import Call, Step

__all__ = ["OwnerOf", "PortalApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The host's sign-in: the account signed in for a request, or None.
OwnerOf = Callable[[StarletteRequest], "str | Awaitable[str | None] | None"]


class PortalApp:
    """The portal as an ASGI app (see :func:`keysentry.portal.portal`)."""

    def __init__(self, portal: Portal, owner_of: OwnerOf | None) -> None:
        self.portal = portal
        self.owner_of = owner_of
        ks = portal.keysentry
        self._blocking = ks._async_store is None  # a sync-only store: its calls on a thread

    def __repr__(self) -> str:
        return f"PortalApp({self.portal!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # served on its own, not mounted
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = await _body(receive)
        root = str(scope.get("root_path", ""))
        state = scope.get("state") or {}
        identity = state.get("api_key")
        request = Request(
            method=str(scope["method"]),
            path=app_path(str(scope["path"]), root) or "/",
            root=root.rstrip("/"),
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=list(scope["headers"]),
            body=body,
            secure=scope.get("scheme") == "https",
            peer=str(scope["client"][0]) if scope.get("client") else None,
            identity=identity if isinstance(identity, KeyIdentity) else None,
        )
        response = await self._run(self.portal.handle(request), scope, body)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": response.encoded_headers(),
            }
        )
        await send({"type": "http.response.body", "body": response.body})

    async def _run(self, step: Step[Response], scope: Scope, body: bytes | None) -> Response:
        ks = self.portal.keysentry
        answer: Any = None
        failed: BaseException | None = None
        while True:
            try:
                wanted = step.throw(failed) if failed is not None else step.send(answer)
            except StopIteration as done:
                result: Response = done.value
                return result
            answer = failed = None
            try:
                if isinstance(wanted, Call):
                    if self._blocking:
                        method = getattr(ks, wanted.method)
                        answer = await asyncio.to_thread(method, *wanted.args, **wanted.kwargs)
                    else:
                        method = getattr(ks, "a" + wanted.method)
                        answer = await method(*wanted.args, **wanted.kwargs)
                else:
                    answer = await self._signed_in(scope, body)
            except Exception as exc:
                failed = exc

    async def _signed_in(self, scope: Scope, body: bytes | None) -> object:
        if self.owner_of is None:
            return None

        async def replay() -> Message:
            return {"type": "http.request", "body": body or b"", "more_body": False}

        account = self.owner_of(StarletteRequest(scope, replay))
        if inspect.isawaitable(account):
            account = await account
        return account


async def _body(receive: Receive) -> bytes | None:
    """The request body, or None past :data:`MAX_BODY` (what is left is not read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)

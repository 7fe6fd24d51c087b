"""Calling an app the way a server does: a hand-built ASGI scope or WSGI environ.

Test clients tidy up what they send: httpx resolves ``.`` and ``..`` in paths and refuses
invalid header bytes, werkzeug's client parses ``//health`` as a host. The cases that depend on
the exact values a server hands over (raw paths, NUL or non-ASCII header bytes, merged headers)
go through these helpers, which deliver them untouched and collect what the app sends back.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote
from wsgiref.util import setup_testing_defaults

import httpx

from .apps import Result

Message = dict[str, Any]


async def _collect(app: Any, scope: dict[str, Any], incoming: Iterable[Message]) -> list[Message]:
    queue = list(incoming)
    sent: list[Message] = []

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def asgi_call(app: Any, scope: dict[str, Any], incoming: Iterable[Message] = ()) -> list[Message]:
    """Run ``app`` on ``scope``, feeding ``incoming`` to ``receive``; the messages it sent."""
    return asyncio.run(_collect(app, scope, incoming))


def http_scope(
    path: str = "/",
    headers: Iterable[tuple[bytes, bytes]] = (),
    *,
    method: str = "GET",
    root_path: str = "",
    query_string: bytes = b"",
) -> dict[str, Any]:
    """An ``http`` scope as uvicorn builds it from the URL path ``path`` (``root_path`` included,
    as ASGI requires): ``path`` percent-decoded, ``raw_path`` as sent."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(path),
        "raw_path": path.encode("latin-1"),
        "root_path": root_path,
        "query_string": query_string,
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


def result(messages: list[Message]) -> Result:
    """The response an ``http`` app sent, as the shared :class:`Result`."""
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return Result(start["status"], httpx.Headers(start.get("headers", [])), _parse(body))


def asgi_get(
    app: Any, path: str, headers: Iterable[tuple[bytes, bytes]] = (), **scope: Any
) -> Result:
    return result(asgi_call(app, http_scope(path, headers, **scope), [_REQUEST]))


def environ(
    path: str = "/", headers: Mapping[str, str] | None = None, **extra: str
) -> dict[str, Any]:
    """A PEP 3333 environ as wsgiref builds it; ``headers`` are ``HTTP_*`` latin-1 values."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": unquote(path, "latin-1"),
        "QUERY_STRING": "",
        "wsgi.input": io.BytesIO(),
    }
    setup_testing_defaults(env)
    for name, value in (headers or {}).items():
        env["HTTP_" + name.upper().replace("-", "_")] = value
    env.update(extra)
    return env


def wsgi_call(app: Any, env: dict[str, Any]) -> Result:
    """Run a WSGI ``app`` on ``env``; the response it gave."""
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started[:] = [status, headers]
        return lambda data: None

    chunks = app(env, start_response)
    try:
        body = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    status, headers = started
    return Result(int(status.split()[0]), httpx.Headers(headers), _parse(body))


def get_path(client: Any, path: str, headers: Mapping[str, str] | None = None) -> Result:
    """GET ``path`` (a URL path, maybe percent-encoded) exactly as spelled, through the app of a
    :class:`~tests.apps.Client`, bypassing the test client's path clean-up."""
    if client.asgi:
        raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        return asgi_get(client.app, path, raw)
    return wsgi_call(client.app, environ(path, headers))


_REQUEST: Message = {"type": "http.request", "body": b"", "more_body": False}


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("latin-1")

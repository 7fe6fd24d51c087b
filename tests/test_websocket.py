"""Websockets and the other ASGI scope types.

A websocket is guarded like a request. A refusal is the same JSON error over HTTP when the
server supports the ``websocket.http.response`` extension (Starlette's TestClient does; so do
uvicorn and hypercorn), and a close with 1008 (policy violation) where it does not. Lifespan
scopes are none of the middleware's business.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from keysentry import ASGIMiddleware, Keysentry

from .apps import starlette_app
from .raw import asgi_call


@pytest.fixture
def ws_client(ks: Keysentry) -> TestClient:
    return TestClient(starlette_app(ks))


def test_valid_key_reaches_the_websocket_with_its_identity(ws_client: TestClient, key: str) -> None:
    with ws_client.websocket_connect("/ws", headers={"Authorization": f"Bearer {key}"}) as ws:
        identity = ws.receive_json()
    assert (identity["name"], identity["owner"], identity["scopes"]) == ("test", "acct_1", ["read"])
    with ws_client.websocket_connect("/ws", headers={"X-API-Key": key}) as ws:
        assert ws.receive_json()["name"] == "test"


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "MISSING_API_KEY"),
        ({"X-API-Key": "hunter2"}, 401, "INVALID_API_KEY"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401, "INVALID_API_KEY"),
    ],
    ids=["no key", "garbage", "basic"],
)
def test_refused_websocket_gets_the_json_error_as_http(
    ws_client: TestClient, headers: dict[str, str], status: int, code: str
) -> None:
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        ws_client.websocket_connect("/ws", headers=headers),
    ):
        pytest.fail("the websocket was accepted")
    response = denied.value
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.headers["content-type"] == "application/json"
    assert response.headers["www-authenticate"].startswith('Bearer realm="api"')


def test_two_different_keys_on_a_websocket_are_400(
    ws_client: TestClient, ks: Keysentry, key: str
) -> None:
    other = ks.issue(name="other").key.reveal()
    headers = {"Authorization": f"Bearer {key}", "X-API-Key": other}
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        ws_client.websocket_connect("/ws", headers=headers),
    ):
        pytest.fail("the websocket was accepted")
    assert denied.value.status_code == 400
    assert denied.value.json()["error"]["code"] == "INVALID_REQUEST"


def _ws_scope(headers: list[tuple[bytes, bytes]], **extra: Any) -> dict[str, Any]:
    return {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/ws",
        "raw_path": b"/ws",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "subprotocols": [],
        **extra,
    }


def test_without_the_extension_a_refused_websocket_is_closed_with_1008(ks: Keysentry) -> None:
    app = starlette_app(ks)
    sent = asgi_call(app, _ws_scope([]), [{"type": "websocket.connect"}])
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "MISSING_API_KEY"}]
    sent = asgi_call(
        app, _ws_scope([(b"x-api-key", b"hunter2")], extensions={}), [{"type": "websocket.connect"}]
    )
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "INVALID_API_KEY"}]


def test_without_the_extension_a_valid_key_is_accepted(ks: Keysentry, key: str) -> None:
    sent = asgi_call(
        starlette_app(ks),
        _ws_scope([(b"authorization", f"Bearer {key}".encode())]),
        [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}],
    )
    assert sent[0]["type"] == "websocket.accept"
    assert b'"name":"test"' in sent[1]["text"].encode()


def test_client_leaving_before_the_handshake_gets_nothing(ks: Keysentry) -> None:
    sent = asgi_call(
        starlette_app(ks), _ws_scope([]), [{"type": "websocket.disconnect", "code": 1001}]
    )
    assert sent == []


def test_lifespan_scope_passes_through_untouched(ks: Keysentry) -> None:
    seen: list[Any] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)
        message = await receive()
        assert message["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.complete"})

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    sent = asgi_call(ASGIMiddleware(inner, ks), scope, [{"type": "lifespan.startup"}])
    assert seen == [scope]
    assert seen[0] is scope
    assert scope == {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    assert sent == [{"type": "lifespan.startup.complete"}]


def test_starlette_app_starts_up_with_the_middleware(ws_client: TestClient) -> None:
    with ws_client:  # runs the lifespan protocol through the middleware
        assert ws_client.get("/health").status_code == 200

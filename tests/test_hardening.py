"""What the middleware guarantees about the requests it passes on and the errors it sends.

Stripped credentials stay out of the app; header-name tricks and server-merged headers cannot
smuggle a second key past the two-credentials check; error responses are complete HTTP
responses whatever the body shape.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from starlette.testclient import TestClient
from werkzeug.test import Client as WerkzeugClient

from keysentry import Denial, Keysentry, MemoryStore

from .apps import Client, werkzeug_app
from .conftest import SECRET
from .raw import asgi_get


def test_strip_credentials_hides_both_headers_from_the_app(
    client: Client, store: MemoryStore
) -> None:
    ks = Keysentry(store, secret=SECRET, strip_credentials=True)
    key = ks.issue(name="stripped").key.reveal()
    c = Client(client.framework, ks)
    headers = {"Authorization": f"Bearer {key}", "X-API-Key": key}
    r = c.get("/headers", headers)
    assert r.status == 200
    assert r.body == {"authorization": None, "x-api-key": None}
    assert c.get("/", {"X-API-Key": key}).body["name"] == "stripped"


def test_credentials_reach_the_app_by_default(client: Client, key: str) -> None:
    r = client.get("/headers", {"Authorization": f"Bearer {key}", "X-API-Key": key})
    assert r.body == {"authorization": f"Bearer {key}", "x-api-key": key}


def test_strip_credentials_with_custom_header_names(client: Client, store: MemoryStore) -> None:
    ks = Keysentry(store, secret=SECRET, api_key_header="X-Token", strip_credentials=True)
    key = ks.issue().key.reveal()
    c = Client(client.framework, ks)
    r = c.get("/headers", {"X-Token": key, "X-API-Key": "not a credential here"})
    assert r.status == 200
    assert r.body == {"authorization": None, "x-api-key": "not a credential here"}


@pytest.mark.parametrize("framework", ["flask", "werkzeug"])
@pytest.mark.parametrize("name", ["HTTP_X_API_KEY", "HTTP_AUTHORIZATION"])
def test_wsgi_comma_merged_header_with_two_keys_is_400(
    ks: Keysentry, key: str, framework: str, name: str
) -> None:
    other = ks.issue(name="other").key.reveal()
    scheme = "Bearer " if name == "HTTP_AUTHORIZATION" else ""
    c = WerkzeugClient(Client(framework, ks).app)

    merged = f"{scheme}{key},{scheme}{other}"
    r = c.get("/", environ_overrides={name: merged})
    assert r.status_code == 400
    assert r.get_json()["error"]["code"] == "INVALID_REQUEST"

    for same in (f"{scheme}{key},{scheme}{key}", f"{scheme}{key}, {scheme}{key}"):
        r = c.get("/", environ_overrides={name: same})
        assert r.status_code == 200
        assert r.get_json()["name"] == "test"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def wsgiref_server(ks: Keysentry) -> Iterator[int]:
    """The werkzeug app behind wsgiref's real HTTP server, on a free port."""
    server: WSGIServer = make_server("127.0.0.1", 0, werkzeug_app(ks), handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _raw_get(port: int, headers: list[tuple[str, str]]) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", "/")
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_real_wsgi_server_merging_dash_and_underscore_names(
    wsgiref_server: int, ks: Keysentry, key: str
) -> None:
    # wsgiref folds X-Api-Key and X_Api_Key into one HTTP_X_API_KEY, joined by a comma.
    other = ks.issue(name="other").key.reveal()
    status, body = _raw_get(wsgiref_server, [("X-Api-Key", key), ("X_Api_Key", other)])
    assert (status, body["error"]["code"]) == (400, "INVALID_REQUEST")

    status, body = _raw_get(wsgiref_server, [("X_Api_Key", other), ("X-Api-Key", key)])
    assert (status, body["error"]["code"]) == (400, "INVALID_REQUEST")

    status, body = _raw_get(wsgiref_server, [("X-Api-Key", key), ("X_Api_Key", key)])
    assert (status, body["name"]) == (200, "test")

    status, body = _raw_get(wsgiref_server, [("Authorization", f"Bearer {key}")])
    assert (status, body["name"]) == (200, "test")


@pytest.mark.parametrize("framework", ["starlette", "fastapi"])
def test_asgi_underscore_header_name_is_not_the_credential(
    ks: Keysentry, key: str, framework: str
) -> None:
    app = Client(framework, ks).app
    r = TestClient(app).get("/", headers={"x_api_key": key})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "MISSING_API_KEY"
    # Nor can it add a second, conflicting credential.
    other = ks.issue(name="other").key.reveal()
    r = TestClient(app).get("/", headers={"X-API-Key": key, "x_api_key": other})
    assert (r.status_code, r.json()["name"]) == (200, "test")
    # As a server hands it over, bytes for bytes.
    assert asgi_get(app, "/", [(b"x_api_key", key.encode())]).code == "MISSING_API_KEY"


def _raw_error(client: Client, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and the exact body bytes of a response."""
    if client.asgi:
        r = TestClient(client.app).get("/", headers=headers)
        return r.status_code, dict(r.headers), r.content
    w = WerkzeugClient(client.app).get("/", headers=headers)
    return w.status_code, {k.lower(): v for k, v in w.headers.items()}, w.get_data()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-API-Key": "hunter2"}, 401),
        ({"Authorization": "Bearer a", "X-API-Key": "b"}, 400),
    ],
    ids=["missing", "invalid", "two"],
)
def test_error_responses_are_complete(client: Client, headers: dict[str, str], status: int) -> None:
    got, response_headers, body = _raw_error(client, headers)
    assert got == status
    assert response_headers["content-type"] == "application/json"
    assert response_headers["cache-control"] == "no-store"
    assert int(response_headers["content-length"]) == len(body)
    parsed = json.loads(body)
    assert parsed["success"] is False
    assert set(parsed["error"]) == {"code", "message", "details"}


def test_custom_error_body_changes_the_shape(client: Client, store: MemoryStore) -> None:
    def problem(denial: Denial) -> dict[str, Any]:
        return {"type": f"urn:error:{denial.code.lower()}", "status": denial.status, "detail": "é"}

    ks = Keysentry(store, secret=SECRET, error_body=problem)
    status, headers, body = _raw_error(Client(client.framework, ks), {"X-API-Key": "hunter2"})
    assert status == 401
    assert json.loads(body) == {"type": "urn:error:invalid_api_key", "status": 401, "detail": "é"}
    assert int(headers["content-length"]) == len(body)
    assert headers["cache-control"] == "no-store"
    assert headers["www-authenticate"] == 'Bearer realm="api", error="invalid_token"'

"""Keys bound to client networks: 403 IP_NOT_ALLOWED from anywhere else (SPEC §5)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient
from werkzeug.test import Client as WerkzeugClient

from keysentry import Keysentry, MemoryStore

from .apps import fastapi_app, flask_app, starlette_app, werkzeug_app
from .conftest import SECRET

ASGI = {"starlette": starlette_app, "fastapi": fastapi_app}
WSGI = {"flask": flask_app, "werkzeug": werkzeug_app}


def _status(framework: str, ks: Keysentry, peer: str, headers: dict[str, str]) -> tuple[int, str]:
    if framework in ASGI:
        client = TestClient(ASGI[framework](ks), client=(peer, 40000))
        r = client.get("/", headers=headers)
        return r.status_code, r.json().get("error", {}).get("code", "")
    wz = WerkzeugClient(WSGI[framework](ks))
    resp = wz.get("/", headers=headers, environ_base={"REMOTE_ADDR": peer})
    body = resp.get_json()
    return resp.status_code, body.get("error", {}).get("code", "")


@pytest.fixture
def bound(store: MemoryStore) -> tuple[Keysentry, str]:
    ks = Keysentry(store, secret=SECRET)
    key = ks.issue(name="office", allowed_networks=["10.0.0.0/8", "2001:db8::/32"]).key.reveal()
    return ks, key


@pytest.mark.parametrize("framework", [*ASGI, *WSGI])
@pytest.mark.parametrize("peer", ["10.1.2.3", "2001:db8::7", "::ffff:10.9.9.9"])
def test_inside_the_allowlist(bound: tuple[Keysentry, str], framework: str, peer: str) -> None:
    ks, key = bound
    assert _status(framework, ks, peer, {"X-API-Key": key})[0] == 200


@pytest.mark.parametrize("framework", [*ASGI, *WSGI])
@pytest.mark.parametrize("peer", ["192.168.1.1", "2001:db9::1", "testclient", ""])
def test_outside_the_allowlist(bound: tuple[Keysentry, str], framework: str, peer: str) -> None:
    ks, key = bound
    assert _status(framework, ks, peer, {"X-API-Key": key}) == (403, "IP_NOT_ALLOWED")


@pytest.mark.parametrize("framework", [*ASGI, *WSGI])
def test_spoofed_forwarding_headers_do_not_pass(
    bound: tuple[Keysentry, str], framework: str
) -> None:
    ks, key = bound
    spoofed = {"X-API-Key": key, "X-Forwarded-For": "10.0.0.1", "Forwarded": "for=10.0.0.1"}
    assert _status(framework, ks, "203.0.113.9", spoofed) == (403, "IP_NOT_ALLOWED")


def test_wrong_key_from_an_allowed_network_is_still_401(bound: tuple[Keysentry, str]) -> None:
    ks, _ = bound
    other = ks.new_key().key.reveal()
    assert _status("starlette", ks, "10.1.1.1", {"X-API-Key": other})[0] == 401

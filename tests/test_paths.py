"""SPEC §5: exempt paths and CORS preflight, matched so that no spelling of a path bypasses auth.

The default fixture exempts ``/health`` and ``/public/*``. Test clients clean paths up before
sending them (httpx resolves ``..``, werkzeug reads ``//health`` as a host), so the tricky
spellings go through :func:`tests.raw.get_path`, which hands the app the path exactly as a
server would: percent-decoded, nothing resolved.
"""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient
from werkzeug.test import Client as WerkzeugClient

from keysentry import Keysentry, MemoryStore

from .apps import Client, fastapi_app, starlette_app, werkzeug_app
from .conftest import SECRET
from .raw import get_path

PREFLIGHT = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}


@pytest.mark.parametrize("path", ["/health", "/public/page", "/public"])
def test_exempt_paths_pass_without_a_key(client: Client, path: str) -> None:
    r = get_path(client, path)
    assert r.status == 200
    assert r.code is None


def test_exempt_paths_pass_through_the_test_clients_too(client: Client) -> None:
    assert client.get("/health").body == {"ok": True}
    assert client.get("/public/page").body == {"ok": True}


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/admin",
        "/healthz-admin",
        "/health-x",
        "/healthz",
        "/HEALTH",
        "/Health",
        "/health/x",
        "/public-admin",
        "/publicpage",
        "/health/../admin",
        "/public/../admin",
        "/public/./page",
        "/public/page/..",
        "/%2e%2e/health",
        "/%2e/health",
        "/public%2f..%2fadmin",
        "/public/%2e%2e/admin",
        "//health",
        "/public//page",
        "/./health",
        "/health/.",
        "/health%00",
        "/health\\",
        "/public\\..\\admin",
    ],
)
def test_other_spellings_need_a_key(client: Client, key: str, path: str) -> None:
    r = get_path(client, path)
    assert (r.status, r.code) == (401, "MISSING_API_KEY")
    # The path itself is fine: with a key the request reaches the app.
    assert get_path(client, path, {"X-API-Key": key}).code is None


def test_exempt_path_still_serves_a_request_with_a_bad_key(client: Client) -> None:
    # Exempt means no check at all: a stale key on a health probe must not fail the probe.
    assert client.get("/health", {"X-API-Key": "stale"}).status == 200


@pytest.mark.parametrize("build", [starlette_app, fastapi_app], ids=["starlette", "fastapi"])
def test_asgi_app_mounted_under_a_root_path(ks: Keysentry, key: str, build: object) -> None:
    inner = build(ks)  # type: ignore[operator]
    outer = Starlette(routes=[Mount("/api", app=inner)])
    fastapi_outer = FastAPI()
    fastapi_outer.mount("/api", inner)
    for app in (outer, fastapi_outer):
        c = TestClient(app)
        assert c.get("/api/health").json() == {"ok": True}
        assert c.get("/api/public/page").status_code == 200
        r = c.get("/api/admin")
        assert (r.status_code, r.json()["error"]["code"]) == (401, "MISSING_API_KEY")
        assert c.get("/api/healthz").status_code == 401
        assert c.get("/api/admin", headers={"X-API-Key": key}).status_code == 200


def test_asgi_root_path_from_the_server(ks: Keysentry, key: str) -> None:
    c = TestClient(starlette_app(ks), root_path="/api")
    assert c.get("/api/health").status_code == 200
    assert c.get("/api/admin").status_code == 401
    assert c.get("/api/admin", headers={"X-API-Key": key}).status_code == 200


def test_wsgi_app_under_a_script_name(ks: Keysentry, key: str) -> None:
    c = WerkzeugClient(werkzeug_app(ks))
    assert c.get("/health", base_url="http://localhost/api/").status_code == 200
    assert c.get("/admin", base_url="http://localhost/api/").status_code == 401
    r = c.get("/admin", base_url="http://localhost/api/", headers={"X-API-Key": key})
    assert r.status_code == 200


def test_cors_preflight_passes_without_a_key_when_allowed(
    client: Client, store: MemoryStore
) -> None:
    ks = Keysentry(store, secret=SECRET, allow_preflight=True)
    r = Client(client.framework, ks).request("OPTIONS", "/admin", PREFLIGHT)
    assert r.status != 401
    assert r.code is None


def test_cors_preflight_needs_a_key_by_default(client: Client) -> None:
    """Off by default: an app's OPTIONS handler must not run unauthenticated unasked."""
    r = client.request("OPTIONS", "/admin", PREFLIGHT)
    assert (r.status, r.code) == (401, "MISSING_API_KEY")


def test_trailing_slash_is_its_own_path(client: Client) -> None:
    """``/x`` exempt does not exempt ``/x/``: apps may route them to different handlers."""
    r = get_path(client, "/health/")
    assert (r.status, r.code) == (401, "MISSING_API_KEY")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": "https://app.example"},
        {"Access-Control-Request-Method": "POST"},
    ],
    ids=["plain", "origin only", "method only"],
)
def test_options_that_is_not_a_preflight_needs_a_key(
    client: Client, headers: dict[str, str]
) -> None:
    r = client.request("OPTIONS", "/admin", headers)
    assert (r.status, r.code) == (401, "MISSING_API_KEY")


def test_preflight_carrying_a_bad_key_is_checked(client: Client) -> None:
    r = client.request("OPTIONS", "/admin", {**PREFLIGHT, "X-API-Key": "hunter2"})
    assert (r.status, r.code) == (401, "INVALID_API_KEY")


def test_exempt_entries_must_be_canonical(store: MemoryStore) -> None:
    for bad in ("health", "/health/../x", "//health", "/./x", "/x\\y"):
        with pytest.raises(ValueError, match="canonical"):
            Keysentry(store, exempt=[bad])


def test_listed_trailing_slash_is_exempt(store: MemoryStore) -> None:
    ks = Keysentry(store, secret=SECRET, exempt=["/health/"])
    assert get_path(Client("starlette", ks), "/health/").status != 401
    assert get_path(Client("starlette", ks), "/health").status == 401

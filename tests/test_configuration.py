"""Configuration that must work, and configuration that must fail early and clearly."""

from __future__ import annotations

from typing import Any

import pytest

from keysentry import ASGIMiddleware, Keysentry, MemoryStore, WSGIMiddleware
from keysentry.ratelimit import MemoryLimiter
from keysentry.ratelimit.redis import RedisLimiter
from keysentry.stores.url import safe_url

from .apps import Client
from .conftest import SECRET


@pytest.mark.parametrize("framework", ["starlette", "flask"])
def test_bearer_only_configuration(framework: str, store: MemoryStore) -> None:
    ks = Keysentry(store, secret=SECRET, api_key_header=None)
    key = ks.issue(name="bearer-only").key.reveal()
    client = Client(framework, ks)
    assert client.get("/", {"Authorization": f"Bearer {key}"}).status == 200
    r = client.get("/", {"X-API-Key": key})
    assert (r.status, r.code) == (401, "MISSING_API_KEY")


class SyncOnlyStore:
    def __init__(self) -> None:
        self._inner = MemoryStore()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("a"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    def get(self, key_id: str) -> Any:
        return self._inner.get(key_id)

    def find_by_digest(self, digest: bytes) -> Any:
        return self._inner.find_by_digest(digest)

    def create(self, record: Any) -> None:
        self._inner.create(record)

    def update(self, key_id: str, changes: Any, expect: Any = None) -> Any:
        return self._inner.update(key_id, changes, expect)

    def list_keys(self, *, owner: Any = None, after: Any = None, limit: int = 100) -> Any:
        return self._inner.list_keys(owner=owner, after=after, limit=limit)

    def spend_credits(self, key_id: str, amount: int = 1) -> Any:
        return self._inner.spend_credits(key_id, amount)

    def record_usage(self, usage: Any) -> None:
        self._inner.record_usage(usage)

    def close(self) -> None:
        pass


def test_a_store_without_the_drivers_face_fails_at_setup() -> None:
    ks = Keysentry(SyncOnlyStore())
    WSGIMiddleware(lambda e, s: [], ks)  # the blocking face is there
    with pytest.raises(TypeError, match="no async face"):
        ASGIMiddleware(lambda s, r, se: None, ks)  # type: ignore[arg-type, return-value]


def test_default_rate_limit_without_a_limiter_is_refused(store: MemoryStore) -> None:
    with pytest.raises(ValueError, match="needs a limiter"):
        Keysentry(store, rate_limit="10/second")
    Keysentry(store, rate_limit="10/second", limiter=MemoryLimiter())


def test_negative_credits_are_refused(store: MemoryStore) -> None:
    ks = Keysentry(store)
    with pytest.raises(ValueError, match="credits"):
        ks.issue(name="metered", credits=-1)
    assert len(store) == 0


def test_urls_shown_to_people_hide_passwords() -> None:
    assert safe_url("redis://:hunter2@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert safe_url("postgresql://app:s3cret@db/keys") == "postgresql://app:***@db/keys"
    assert safe_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert "hunter2" not in repr(RedisLimiter("redis://:hunter2@127.0.0.1:6379/0"))


def test_wsgi_query_string_outside_latin1_is_refused_not_a_500(store: MemoryStore) -> None:
    ks = Keysentry(store, secret=SECRET, query_param="api_key")
    app = WSGIMiddleware(lambda environ, start: [b"app"], ks)
    statuses: list[str] = []
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "QUERY_STRING": "api_key=\u20ac",  # a server breaking PEP 3333
    }
    body = app(environ, lambda status, headers, *exc: statuses.append(status))
    assert statuses[0].startswith("401")
    assert b"INVALID_API_KEY" in b"".join(body)


async def test_asgi_rate_headers_do_not_touch_the_apps_message(store: MemoryStore) -> None:
    """An app may reuse one start message; keysentry's headers must not pile up in it."""
    start = {"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"1")]}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start)
        await send({"type": "http.response.body", "body": b""})

    ks = Keysentry(store, secret=SECRET, limiter=MemoryLimiter())
    key = ks.issue(name="reuse", rate_limit="100/minute").key.reveal()
    mw = ASGIMiddleware(app, ks)
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    for _ in range(3):
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/",
            "headers": [(b"x-api-key", key.encode())],
        }
        await mw(scope, receive, send)
    assert start["headers"] == [(b"x-app", b"1")]
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert all(len(m["headers"]) == 3 for m in starts)

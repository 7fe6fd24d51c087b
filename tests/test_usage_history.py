"""Usage history (requests per key per UTC day, per route template where known) through the
public API and real HTTP requests: ks.usage / ks.account_usage and their async twins, the
window they fill, route templates from Starlette, FastAPI and Flask, retention, and a store
of the user's that keeps no history."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from starlette.testclient import TestClient

from keysentry import (
    ASGIMiddleware,
    DailyUsage,
    KeyNotFound,
    Keysentry,
    MemoryStore,
    UsageHistory,
)
from keysentry.records import KeyRecord
from keysentry.stores.base import KeyChanges, KeyStore, Usage

from .apps import Client
from .conftest import SECRET

#: Noon on a day, so that a window of days is unambiguous.
NOON = datetime(2026, 6, 10, 12, tzinfo=timezone.utc)
TODAY = NOON.date()


class Clock:
    def __init__(self, now: datetime = NOON) -> None:
        self.now = now.timestamp()

    def __call__(self) -> float:
        return self.now

    def days_later(self, days: int) -> None:
        self.now += days * 86400


def guard(store: Any = None, **options: Any) -> Keysentry:
    options.setdefault("usage_interval", 3600)  # flushed by close(): no thread in the way
    return Keysentry(store if store is not None else MemoryStore(), secret=SECRET, **options)


def flush(ks: Keysentry) -> None:
    assert ks.usage_recorder is not None
    ks.usage_recorder.flush()


def days_of(history: UsageHistory) -> list[tuple[date, int, dict[str, int]]]:
    return [(d.day, d.requests, dict(d.routes)) for d in history.days]


# -- routes through each framework -------------------------------------------------------------

ROUTES = {"starlette": ("/", "/{path:path}"), "fastapi": ("/", "/{path:path}")}


@pytest.mark.parametrize("framework", ["starlette", "fastapi", "flask", "werkzeug"])
def test_todays_requests_and_their_route_templates(framework: str) -> None:
    ks = guard(usage_routes=True)
    issued = ks.issue(name="busy")
    idle = ks.issue(name="idle")
    client = Client(framework, ks)
    key = {"X-API-Key": issued.key.reveal()}
    for path in ("/", "/items/1", "/items/2", "/a/b/c"):
        assert client.get(path, key).status == 200
    assert client.get("/", {"X-API-Key": issued.key.reveal() + "x"}).status == 401
    flush(ks)
    history = ks.usage(issued.record.id, days=1)
    (today,) = history.days
    assert today.day == datetime.now(timezone.utc).date()
    assert today.requests == history.total == 4  # the refused request is no usage
    if framework in ROUTES:
        root, anything = ROUTES[framework]
        assert dict(today.routes) == {root: 1, anything: 3}
    else:
        # The bare WSGIMiddleware sees no route: Flask's come with its extension (below).
        assert dict(today.routes) == {}
    assert dict(history.keys) == {issued.record.id: 4}
    assert ks.usage(idle.record.id, days=1).total == 0


def test_route_templates_are_off_by_default() -> None:
    ks = guard()
    issued = ks.issue(name="plain")
    client = Client("starlette", ks)
    for path in ("/", "/x"):
        assert client.get(path, {"X-API-Key": issued.key.reveal()}).status == 200
    flush(ks)
    (today,) = ks.usage(issued.record.id, days=1).days
    assert (today.requests, dict(today.routes)) == (2, {})


def test_templates_under_mounts_routers_and_blueprints() -> None:
    """Starlette mounts (nested, one with a parameter), FastAPI routers with a prefix and
    Flask blueprints (with the extension): the template is the whole route, never the path
    requested."""
    from fastapi import APIRouter, FastAPI
    from flask import Blueprint, Flask
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route
    from werkzeug.test import Client as WerkzeugClient

    from keysentry.flask import KeysentryFlask

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hi")

    ks = guard(usage_routes=True)
    issued = ks.issue(name="routed")
    key = {"X-API-Key": issued.key.reveal()}

    def items() -> list[Route]:
        return [Route("/items/{item_id:int}", hello)]

    starlette = Starlette(
        routes=[
            Route("/", hello),
            Mount("/v1", routes=[Mount("/tenants/{tenant}", routes=items()), *items()]),
        ]
    )
    starlette.add_middleware(ASGIMiddleware, keysentry=ks)
    with TestClient(starlette) as client:
        for path in ("/v1/tenants/acme/items/1", "/v1/tenants/zeta/items/2", "/v1/items/3"):
            assert client.get(path, headers=key).status_code == 200
        assert client.get("/nowhere", headers=key).status_code == 404  # no route: none

    api = FastAPI()
    router = APIRouter(prefix="/v2/users")

    @router.get("/{user_id}/keys")
    async def keys(user_id: str) -> dict[str, str]:
        return {"user": user_id}

    api.include_router(router)
    api.add_middleware(ASGIMiddleware, keysentry=ks)
    with TestClient(api) as client:
        assert client.get("/v2/users/u1/keys", headers=key).status_code == 200

    flask = Flask(__name__)
    blueprint = Blueprint("orders", __name__, url_prefix="/v3/orders")

    @blueprint.get("/<int:order_id>")
    def order(order_id: int) -> Any:
        return {"order": order_id}

    flask.register_blueprint(blueprint)
    KeysentryFlask(ks, flask)
    assert WerkzeugClient(flask).get("/v3/orders/7", headers=key).status_code == 200
    assert WerkzeugClient(flask).get("/nowhere", headers=key).status_code == 404

    flush(ks)
    (today,) = ks.usage(issued.record.id, days=1).days
    assert today.requests == 7  # the two 404s included: they were let through
    assert dict(today.routes) == {
        "/v1/tenants/{tenant}/items/{item_id:int}": 2,
        "/v1/items/{item_id:int}": 1,
        "/v2/users/{user_id}/keys": 1,
        "/v3/orders/<int:order_id>": 1,
    }


def test_a_request_still_running_at_a_flush_has_its_route_counted_in_a_later_one() -> None:
    """Requests are counted when admitted, their routes when answered."""
    ks = guard(usage_routes=True)
    record = ks.issue(name="slow").record
    recorder = ks.usage_recorder
    assert recorder is not None
    recorder.note(record.id)
    recorder.flush()
    recorder.note_route("/slow", record.id)  # answered after the flush
    recorder.flush()
    (today,) = ks.usage(record.id, days=1).days
    assert (today.requests, dict(today.routes)) == (1, {"/slow": 1})
    got = ks.get(record.id)
    assert got.request_count == 1


# -- the window --------------------------------------------------------------------------------


def test_a_window_of_days_oldest_first_with_the_days_without_use() -> None:
    clock = Clock()
    store = MemoryStore()
    ks = guard(store, clock=clock)
    record = ks.issue(name="windowed").record
    for offset, count in ((-9, 1), (-2, 4), (0, 2)):
        when = NOON + timedelta(days=offset)
        store.record_usage({record.id: Usage(count, when)}, {record.id: {"/r": count}})
    history = ks.usage(record.id, days=3)
    assert days_of(history) == [
        (TODAY - timedelta(days=2), 4, {"/r": 4}),
        (TODAY - timedelta(days=1), 0, {}),
        (TODAY, 2, {"/r": 2}),
    ]
    assert history.total == 6
    assert ks.usage(record.id).total == 7  # 30 days by default
    assert len(ks.usage(record.id).days) == 30
    assert [d.requests for d in ks.usage(record.id, days=1).days] == [2]
    clock.days_later(1)  # tomorrow: today's use moves one day back, a new day starts at 0
    assert days_of(ks.usage(record.id, days=2)) == [
        (TODAY, 2, {"/r": 2}),
        (TODAY + timedelta(days=1), 0, {}),
    ]
    # Values: frozen, hashable days, read-only mappings.
    day = history.days[-1]
    assert isinstance(day, DailyUsage)
    with pytest.raises(AttributeError):
        day.requests = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        day.routes["/r"] = 0  # type: ignore[index]
    with pytest.raises(TypeError):
        history.keys["x"] = 1  # type: ignore[index]


def test_the_arguments_are_checked() -> None:
    ks = guard()
    record = ks.issue(name="x").record
    for bad in (0, -1, 3661):
        with pytest.raises(ValueError, match="days must be from 1 to 3660"):
            ks.usage(record.id, days=bad)
    for wrong in ("30", 1.5, True, None):
        with pytest.raises(TypeError, match="days must be a whole number"):
            ks.usage(record.id, days=wrong)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key_id must be a key id"):
        ks.usage(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="owner must be a str"):
        ks.account_usage(None)  # type: ignore[arg-type]
    with pytest.raises(KeyNotFound, match="nosuchkey000"):
        ks.usage("nosuchkey000")
    for retention in (0, -5, 3661, 1.5, "90"):
        with pytest.raises(ValueError, match="usage_retention_days must be a whole number"):
            guard(usage_retention_days=retention)
    with pytest.raises(TypeError, match="usage_routes must be True or False"):
        guard(usage_routes="yes")


def test_days_past_the_retention_are_dropped_as_the_store_writes() -> None:
    clock = Clock()
    ks = guard(usage_retention_days=2, clock=clock)  # the guard's clock dates the batches
    recorder = ks.usage_recorder
    assert recorder is not None
    record = ks.issue(name="kept").record
    for _ in range(5):
        recorder.note(record.id)
        recorder.flush()
        clock.days_later(1)
    clock.days_later(-1)
    assert [d.requests for d in ks.usage(record.id, days=6).days] == [0, 0, 0, 1, 1, 1]
    assert ks.get(record.id).request_count == 5  # the totals are not history: all kept


# -- accounts ----------------------------------------------------------------------------------


def test_account_usage_sums_every_key_of_the_owner_revoked_ones_included() -> None:
    clock = Clock()
    store = MemoryStore()
    ks = guard(store, clock=clock)
    a = ks.issue(name="a", owner="acme").record
    b = ks.issue(name="b", owner="acme").record
    unused = ks.issue(name="unused", owner="acme").record
    other = ks.issue(name="other", owner="globex").record
    yesterday = NOON - timedelta(days=1)
    store.record_usage(
        {a.id: Usage(3, yesterday), b.id: Usage(2, yesterday), other.id: Usage(50, yesterday)},
        {a.id: {"/x": 3}, b.id: {"/x": 1, "/y": 1}},
    )
    store.record_usage({a.id: Usage(1, NOON)})
    ks.revoke(b.id)
    history = ks.account_usage("acme", days=2)
    assert days_of(history) == [(TODAY - timedelta(days=1), 5, {"/x": 4, "/y": 1}), (TODAY, 1, {})]
    assert history.total == 6
    assert dict(history.keys) == {
        k.id: n for k, n in sorted([(a, 4), (b, 2), (unused, 0)], key=lambda p: p[0].id)
    }
    assert list(history.keys) == sorted(history.keys)
    nobody = ks.account_usage("nobody", days=2)
    assert (nobody.total, dict(nobody.keys), len(nobody.days)) == (0, {}, 2)


def test_account_usage_over_more_keys_than_a_page() -> None:
    clock = Clock()
    store = MemoryStore()
    ks = guard(store, clock=clock)
    ids = [ks.issue(name=f"k{i}", owner="big").record.id for i in range(1203)]
    store.record_usage({key_id: Usage(1, NOON) for key_id in ids})
    history = ks.account_usage("big", days=1)
    assert history.total == len(history.keys) == 1203


def test_the_async_twins() -> None:
    clock = Clock()
    store = MemoryStore()
    ks = guard(store, clock=clock)
    record = ks.issue(name="a", owner="acme").record
    store.record_usage({record.id: Usage(3, NOON)}, {record.id: {"/a": 3}})

    async def read() -> tuple[UsageHistory, UsageHistory]:
        with pytest.raises(KeyNotFound):
            await ks.ausage("nosuchkey000")
        return await ks.ausage(record.id, days=2), await ks.aaccount_usage("acme", days=2)

    mine, account = asyncio.run(read())
    assert mine == ks.usage(record.id, days=2)
    assert account == ks.account_usage("acme", days=2)
    assert days_of(mine)[-1] == (TODAY, 3, {"/a": 3})


# -- a store of the user's without history -----------------------------------------------------


class PlainStore:
    """A KeyStore of the user's own, from before history: no usage_history."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.batches: list[dict[str, Usage]] = []

    def get(self, key_id: str) -> KeyRecord | None:
        return self.inner.get(key_id)

    def find_by_digest(self, digest: bytes) -> KeyRecord | None:
        return self.inner.find_by_digest(digest)

    def create(self, record: KeyRecord) -> None:
        self.inner.create(record)

    def update(
        self, key_id: str, changes: KeyChanges, expect: Mapping[str, object] | None = None
    ) -> KeyRecord:
        return self.inner.update(key_id, changes, expect)

    def list_keys(
        self, *, owner: str | None = None, after: str | None = None, limit: int = 100
    ) -> Sequence[KeyRecord]:
        return self.inner.list_keys(owner=owner, after=after, limit=limit)

    def spend_credits(self, key_id: str, amount: int = 1) -> int | None:
        return self.inner.spend_credits(key_id, amount)

    def record_usage(self, usage: Mapping[str, Usage]) -> None:  # the old signature
        self.batches.append(dict(usage))
        self.inner.record_usage(usage)

    def close(self) -> None:
        pass


def test_a_store_without_history_keeps_working_and_says_so() -> None:
    store = PlainStore()
    assert isinstance(store, KeyStore)
    ks = guard(store, usage_routes=True)
    issued = ks.issue(name="old")
    client = Client("flask", ks)
    for _ in range(2):
        assert client.get("/", {"X-API-Key": issued.key.reveal()}).status == 200
    ks.close()
    assert [{k: u.requests for k, u in b.items()} for b in store.batches] == [{issued.record.id: 2}]
    assert ks.get(issued.record.id).request_count == 2
    with pytest.raises(
        TypeError, match="PlainStore keeps no usage history: it has no usage_history"
    ):
        ks.usage(issued.record.id)
    with pytest.raises(TypeError, match="keeps no usage history"):
        ks.account_usage("anyone")

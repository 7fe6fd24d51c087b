"""Accounts, per-request costs and refills through the real middlewares, on every store.

A key's owner is its account: disabling the account refuses all its keys (403
ACCOUNT_DISABLED), an account balance is spent by all its keys (402 naming the account), an
account limit is shared by them; a path's cost is charged to rate limits and credits at once;
a due refill tops a balance up on the request that finds it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from keysentry import Keysentry, MemoryLimiter, MemoryStore
from keysentry.accounts import AccountRecord
from keysentry.errors import InsufficientCredits
from keysentry.invalidation import RedisInvalidator
from keysentry.paths import CostPaths
from keysentry.records import KeyRecord
from keysentry.refills import Refill
from keysentry.stores.redis import RedisStore
from keysentry.stores.sql import SQLStore

from . import test_scopes
from .apps import Client
from .conftest import SECRET
from .services import PG_URL, REDIS_URL, delete_namespace, namespace, redis_or_skip, table_prefix

STORES = ["memory", "sqlite", "postgres", "redis"]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    kind = request.param
    if kind == "memory":
        yield MemoryStore()
    elif kind == "sqlite":
        store = SQLStore(f"sqlite:///{tmp_path}/keys.db")
        yield store
        store.close()
    elif kind == "postgres":
        pg_schema = request.getfixturevalue("pg_schema")
        store = SQLStore(PG_URL, schema=pg_schema, table_prefix=table_prefix())
        yield store
        store.close()
    else:
        redis_or_skip()
        name = namespace()
        store = RedisStore(REDIS_URL, namespace=name)
        yield store
        store.close()
        delete_namespace(REDIS_URL, name)


def _guard(store: Any, **settings: Any) -> Keysentry:
    return Keysentry(store, secret=SECRET, usage_interval=None, **settings)


def _key(r: Any, key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize("framework", ["starlette", "werkzeug"])
def test_a_disabled_account_refuses_every_key_of_it_at_once(store: Any, framework: str) -> None:
    ks = _guard(store)
    one = ks.issue(name="one", owner="acme").key.reveal()
    two = ks.issue(name="two", owner="acme").key.reveal()
    other = ks.issue(name="other", owner="globex").key.reveal()
    client = Client(framework, ks)
    for key in (one, two, other):
        assert client.get("/", {"X-API-Key": key}).status == 200  # cached from here on
    account = ks.disable_account("acme")
    assert account == AccountRecord("acme", disabled=True)
    for key in (one, two):
        r = client.get("/", {"X-API-Key": key})
        assert (r.status, r.code) == (403, "ACCOUNT_DISABLED")
        assert "account" in r.message
    assert client.get("/", {"X-API-Key": other}).status == 200
    ks.enable_account("acme")
    assert client.get("/", {"X-API-Key": one}).status == 200


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
def test_an_account_balance_is_shared_by_its_keys(store: Any, framework: str) -> None:
    ks = _guard(store)
    # The keys' own balances do not count while the account holds one.
    one = ks.issue(name="one", owner="acme", credits=100).key.reveal()
    two = ks.issue(name="two", owner="acme").key.reveal()
    ks.update_account("acme", credits=3)
    client = Client(framework, ks)
    statuses = [client.get("/", {"X-API-Key": key}).status for key in (one, two, one)]
    assert statuses == [200, 200, 200]
    for key in (two, one):
        r = client.get("/", {"X-API-Key": key})
        assert (r.status, r.code) == (402, "INSUFFICIENT_CREDITS")
        assert "acme" in r.message
        assert r.body["error"]["details"] == {"account": "acme"}
    assert ks.account("acme").credits == 0  # type: ignore[union-attr]
    ks.add_account_credits("acme", 2)
    assert client.get("/", {"X-API-Key": two}).status == 200
    # Without a balance of its own, the account's keys spend their own again.
    ks.update_account("acme", credits=None)
    assert client.get("/", {"X-API-Key": one}).status == 200
    assert ks.get(ks.list_keys(owner="acme")[0].id) is not None
    assert {r.name: r.credits for r in ks.list_keys(owner="acme")} == {"one": 99, "two": None}


def test_an_account_limit_is_shared_by_its_keys() -> None:
    store = MemoryStore()
    ks = _guard(store, limiter=MemoryLimiter())
    one = ks.issue(name="one", owner="acme").key.reveal()
    two = ks.issue(name="two", owner="acme", rate_limit="100/minute").key.reveal()
    ks.update_account("acme", rate_limit="3/minute")
    client = Client("starlette", ks)
    first = client.get("/", {"X-API-Key": one})
    assert first.status == 200
    assert first.headers["ratelimit-policy"] == '"per-minute";q=3;w=60'  # the account's
    assert client.get("/", {"X-API-Key": two}).status == 200
    assert client.get("/", {"X-API-Key": one}).status == 200
    for key in (one, two):
        r = client.get("/", {"X-API-Key": key})
        assert (r.status, r.code) == (429, "RATE_LIMITED")
        assert "account" in r.message
        assert r.headers["ratelimit-policy"] == '"per-minute";q=3;w=60'
    other = ks.issue(name="other", owner="globex").key.reveal()
    assert client.get("/", {"X-API-Key": other}).status == 200


@pytest.mark.parametrize("framework", ["starlette", "fastapi", "flask", "werkzeug"])
def test_a_path_cost_is_charged_to_the_rate_limit_and_the_headers_say_so(framework: str) -> None:
    ks = _guard(MemoryStore(), limiter=MemoryLimiter(), costs={"/v1/generate": 5})
    key = ks.issue(name="gen", rate_limit="10/minute").key.reveal()
    client = Client(framework, ks)
    first = client.get("/v1/generate", {"X-API-Key": key})
    assert first.status == 200
    assert first.headers["ratelimit"].startswith('"per-minute";r=5;')  # 10 - 5
    assert client.get("/v1/generate", {"X-API-Key": key}).status == 200
    r = client.get("/v1/generate", {"X-API-Key": key})
    assert (r.status, r.code) == (429, "RATE_LIMITED")
    # A refused request is charged nothing: a cheaper path still finds the state it left.
    r = client.get("/v1/other", {"X-API-Key": key})
    assert r.status == 429
    assert r.headers["ratelimit"].startswith('"per-minute";r=0;')


def test_costs_are_charged_to_credits_and_a_refusal_is_charged_nothing(store: Any) -> None:
    ks = _guard(store, costs={"/v1/generate": 5, "/v1/images/*": 3})
    issued = ks.issue(name="gen", credits=12)
    key = issued.key.reveal()
    client = Client("starlette", ks)
    assert client.get("/v1/generate", {"X-API-Key": key}).status == 200
    assert client.get("/v1/images/big/one", {"X-API-Key": key}).status == 200
    assert ks.get(issued.record.id).credits == 4
    r = client.get("/v1/generate", {"X-API-Key": key})
    assert (r.status, r.code) == (402, "INSUFFICIENT_CREDITS")
    assert r.message == ("The API key has too few credits: this request costs 5, and 4 are left.")
    assert r.body["error"]["details"] == {"cost": 5, "balance": 4}
    assert ks.get(issued.record.id).credits == 4
    for _ in range(4):
        assert client.get("/v1/cheap", {"X-API-Key": key}).status == 200
    assert ks.get(issued.record.id).credits == 0


def test_cost_paths_match_like_exempt_paths_and_odd_spellings_cost_the_most() -> None:
    costs = CostPaths({"/v1/generate": 5, "/v1/images/*": 3, "/v1/images/hd/*": 9})
    assert [costs.cost(p) for p in ("/v1/generate", "/v1/generate/", "/v1/other")] == [5, 1, 1]
    assert [costs.cost(p) for p in ("/v1/images", "/v1/images/a", "/v1/images/hd/b")] == [3, 3, 9]
    assert costs.cost("/v1/imagesx") == 1  # a segment boundary
    # A path in another spelling may reach a costly route: it costs the most.
    for odd in ("/v1/./generate", "/v1//generate", "/v1/x/../generate", "/v1\\generate"):
        assert costs.cost(odd) == 9


@pytest.mark.parametrize("framework", ["starlette", "fastapi", "flask"])
def test_a_scope_refusal_gives_back_the_whole_cost(framework: str) -> None:
    ks = Keysentry(
        MemoryStore(), secret=SECRET, exempt=test_scopes.EXEMPT, costs={"/read": 4},
        usage_interval=None,
    )  # fmt: skip
    ks.update_account("acme", credits=10)
    writer = ks.issue(name="w", owner="acme", scopes=["write"])
    reader = ks.issue(name="r", owner="acme", scopes=["read"])
    client = test_scopes.Client(framework, ks)
    r = client.get("/read", writer.key.reveal())
    assert (r.status, r.code) == (403, "INSUFFICIENT_SCOPE")
    assert ks.account("acme").credits == 10  # type: ignore[union-attr]
    assert client.get("/read", reader.key.reveal()).status == 200
    assert ks.account("acme").credits == 6  # type: ignore[union-attr]


def test_a_due_refill_tops_up_on_the_request_that_finds_it(store: Any) -> None:
    ks = _guard(store)
    issued = ks.issue(name="daily", credits=0)
    key = issued.key.reveal()
    client = Client("werkzeug", ks)
    assert client.get("/", {"X-API-Key": key}).status == 402
    ks.update(issued.record.id, refill="2/day")
    # Set now: it first runs when the next day begins. Pretend that was yesterday.
    store.update(issued.record.id, {"refilled_at": datetime(2020, 1, 1, tzinfo=timezone.utc)})
    assert [client.get("/", {"X-API-Key": key}).status for _ in range(3)] == [200, 200, 402]
    got = ks.get(issued.record.id)
    assert (got.credits, got.refill) == (0, Refill(2, "day"))
    ks.update_account("acme", credits=0, refill="+1/week")
    assert ks.account("acme").refill == Refill(1, "week", add=True)  # type: ignore[union-attr]


class CountingStore(MemoryStore):
    """Counts the store calls the request path makes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def get(self, key_id: str) -> KeyRecord | None:
        self.calls["get"] += 1
        return super().get(key_id)

    def get_account(self, owner: str) -> AccountRecord | None:
        self.calls["get_account"] += 1
        return super().get_account(owner)

    async def aget(self, key_id: str) -> KeyRecord | None:
        return self.get(key_id)

    async def aget_account(self, owner: str) -> AccountRecord | None:
        return self.get_account(owner)


@pytest.mark.parametrize("framework", ["starlette", "werkzeug"])
def test_accounts_cost_no_store_call_on_the_warm_path(framework: str) -> None:
    """A key without an owner never asks for an account; a key with one asks once, with the
    key, on a cache miss; warm requests ask nothing."""
    store = CountingStore()
    ks = _guard(store)
    plain = ks.issue(name="plain").key.reveal()
    owned = ks.issue(name="owned", owner="acme").key.reveal()
    client = Client(framework, ks)
    for _ in range(5):
        assert client.get("/", {"X-API-Key": plain}).status == 200
    assert store.calls == Counter({"get": 1})
    for _ in range(5):
        assert client.get("/", {"X-API-Key": owned}).status == 200
    assert store.calls == Counter({"get": 2, "get_account": 1})


class NoAccounts:
    """A store of the user's own that keeps keys only (both faces, no accounts)."""

    def __init__(self) -> None:
        self.inner = MemoryStore()

    def __getattr__(self, name: str) -> Any:
        if "account" in name:
            raise AttributeError(name)
        return getattr(self.inner, name)


@pytest.mark.parametrize("framework", ["starlette", "werkzeug"])
def test_a_store_without_accounts_keeps_working(framework: str) -> None:
    """Keys with owners work as before; the account calls say what is missing."""
    ks = Keysentry(NoAccounts(), secret=SECRET, usage_interval=None)  # type: ignore[arg-type]
    key = ks.issue(name="k", owner="acme", credits=1).key.reveal()
    client = Client(framework, ks)
    assert client.get("/", {"X-API-Key": key}).status == 200
    assert client.get("/", {"X-API-Key": key}).status == 402
    with pytest.raises(TypeError, match="keeps no accounts"):
        ks.disable_account("acme")


def test_account_arguments_are_checked() -> None:
    ks = _guard(MemoryStore())
    with pytest.raises(ValueError, match="cannot be changed: name"):
        ks.update_account("acme", name="other")
    with pytest.raises(TypeError, match="credits"):
        ks.update_account("acme", credits="3")
    with pytest.raises(ValueError, match="refill"):
        ks.update_account("acme", refill="3/fortnight")
    with pytest.raises(ValueError, match="owner"):
        ks.update_account("", disabled=True)
    with pytest.raises(ValueError, match="amount"):
        ks.add_account_credits("acme", 0)
    assert ks.account("acme") is None  # nothing stored on error
    with pytest.raises(ValueError, match="cost"):
        Keysentry(MemoryStore(), costs={"/v1/generate": 0})
    with pytest.raises(ValueError, match="canonical"):
        Keysentry(MemoryStore(), costs={"v1/generate": 2})


def test_an_account_change_reaches_every_process_at_once() -> None:
    """Two guards (two processes' worth) on one Redis store with the invalidator: an account
    disabled through one refuses its keys on the other well within a second, though both
    had them cached."""
    redis_or_skip()
    name = namespace()
    stores = [RedisStore(REDIS_URL, namespace=name) for _ in range(2)]
    invalidators = [RedisInvalidator(REDIS_URL, channel=f"{name}:inv") for _ in range(2)]
    guards = [
        Keysentry(s, secret=SECRET, usage_interval=None, invalidator=i, cache_ttl=300)
        for s, i in zip(stores, invalidators, strict=True)
    ]
    try:
        assert all(i.wait_listening(5) for i in invalidators)
        key = guards[0].issue(name="k", owner="acme").key.reveal()
        other = Client("starlette", guards[1])
        assert other.get("/", {"X-API-Key": key}).status == 200
        guards[0].disable_account("acme")
        deadline = time.monotonic() + 1.0
        while other.get("/", {"X-API-Key": key}).status != 403:
            assert time.monotonic() < deadline, "the other process still admits the key"
            time.sleep(0.02)
        assert other.get("/", {"X-API-Key": key}).code == "ACCOUNT_DISABLED"
    finally:
        for i in invalidators:
            i.close()
        for s in stores:
            s.close()
        delete_namespace(REDIS_URL, name)


def test_refunds_of_an_account_balance_are_exact_under_concurrency() -> None:
    store = MemoryStore()
    store.update_account("acme", {"credits": 1})
    with pytest.raises(InsufficientCredits):
        store.spend_account_credits("acme", 2)
    assert store.spend_account_credits("acme", -3) == 4


@pytest.mark.parametrize("limiter_kind", ["redis", "leased"])
def test_costs_and_account_limits_on_a_shared_limiter(limiter_kind: str, ns: str) -> None:
    """On Redis, and on the leased limiter whose slices answer in memory, a path's cost is
    charged whole and an account's limit is shared by its keys."""
    from keysentry.ratelimit.leased import LeasedLimiter
    from keysentry.ratelimit.redis import RedisLimiter

    limiter: Any = (
        RedisLimiter(REDIS_URL, namespace=ns)
        if limiter_kind == "redis"
        else LeasedLimiter(REDIS_URL, namespace=ns, lease=16)
    )
    try:
        ks = _guard(MemoryStore(), limiter=limiter, costs={"/v1/generate": 5})
        gen = ks.issue(name="gen", rate_limit="10/minute").key.reveal()
        client = Client("starlette", ks)
        statuses = [client.get("/v1/generate", {"X-API-Key": gen}).status for _ in range(3)]
        assert statuses == [200, 200, 429]
        ks.update_account("acme", rate_limit="2/minute")
        one = ks.issue(name="one", owner="acme").key.reveal()
        two = ks.issue(name="two", owner="acme").key.reveal()
        shared = [client.get("/", {"X-API-Key": k}).status for k in (one, two, one, two)]
        assert shared == [200, 200, 429, 429]
    finally:
        limiter.close()

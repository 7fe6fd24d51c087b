"""The Redis store against real Redis: the store contract on both faces, its key layout, and
Keysentry on top of it through Starlette and Flask, including a server that dies and returns."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

import pytest

from keysentry import KeyChanges, KeyNotFound, Keysentry, StoreUnavailable, from_url
from keysentry.stores.base import Usage
from keysentry.stores.redis import RedisStore
from keysentry.testing import AsyncKeyStoreContract, KeyStoreContract, make_record

from .apps import Client
from .conftest import SECRET
from .services import REDIS_URL, RedisServer

pytestmark = pytest.mark.redis


class TestRedisStore(KeyStoreContract):
    @pytest.fixture
    def store(self, ns: str) -> Iterator[RedisStore]:
        store = RedisStore(REDIS_URL, namespace=ns, timeout=2.0)
        yield store
        store.close()


class TestRedisStoreAsync(AsyncKeyStoreContract):
    @pytest.fixture
    def store(self, ns: str) -> Iterator[RedisStore]:
        store = RedisStore(REDIS_URL, namespace=ns, timeout=2.0)
        yield store
        store.close()


@pytest.fixture
def store(ns: str) -> Iterator[RedisStore]:
    store = RedisStore(REDIS_URL, namespace=ns)
    yield store
    store.close()


def names(ns: str) -> set[str]:
    import redis

    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        return set(client.scan_iter(match=f"{ns}:*"))
    finally:
        client.close()


def test_layout_holds_public_values_only(store: RedisStore, ns: str) -> None:
    ks = Keysentry(store, secret=SECRET)
    issued = ks.issue(name="layout", owner="acct {7}: weird/owner")
    record = issued.record
    assert names(ns) == {
        f"{ns}:key:{{{record.id}}}",
        f"{ns}:digest:{record.digest.hex()}",
        f"{ns}:ids",
        store.index_key("acct {7}: weird/owner"),
    }
    assert store.index_key("acct {7}: weird/owner").startswith(f"{ns}:owner:")
    secret_part = issued.key.reveal()[len("sk_live_") + 12 :]
    assert all(secret_part not in n for n in names(ns))
    assert all("{7}" not in n for n in names(ns))  # owners never bend a hash tag


def test_usage_history_lives_beside_the_record_and_expires_unwritten(
    store: RedisStore, ns: str
) -> None:
    """One hash per key in its record's slot, which expires once unwritten for longer than
    the retention (its days are all past it then) and goes when the key is deleted."""
    import redis

    record = make_record()
    store.create(record)
    when = datetime(2026, 4, 1, tzinfo=timezone.utc)
    store.record_usage({record.id: Usage(3, when)}, {record.id: {"/a b": 3}}, retention_days=6)
    history = f"{ns}:usage:{{{record.id}}}"
    assert names(ns) >= {history, f"{ns}:key:{{{record.id}}}"}
    client = redis.Redis.from_url(REDIS_URL)
    try:
        assert client.ttl(history) == 7 * 86400
        assert client.hgetall(history) == {b"2026-04-01": b"3", b"2026-04-01 /a b": b"3",
                                           b"kept": b"2026-03-26"}  # fmt: skip
        store.delete(record.id)
        assert client.exists(history) == 0
    finally:
        client.close()


N_WRITES = 25


def test_concurrent_updates_of_one_key_lose_nothing(store: RedisStore) -> None:
    """Each thread rewrites its own field of the same record: every last write survives,
    although each update rewrites the whole hash."""
    import threading

    record = make_record()
    store.create(record)
    writers = {
        "name": lambda i: {"name": f"n{i}"},
        "scopes": lambda i: {"scopes": {f"s{i}"}},
        "metadata": lambda i: {"metadata": {"m": i}},
        "credits": lambda i: {"credits": i},
    }

    def work(change: Callable[[int], KeyChanges]) -> None:
        for i in range(N_WRITES):
            store.update(record.id, change(i))

    threads = [threading.Thread(target=work, args=(w,)) for w in writers.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = store.get(record.id)
    assert got is not None
    last = N_WRITES - 1
    assert (got.name, got.scopes, dict(got.metadata), got.credits) == (
        f"n{last}",
        frozenset({f"s{last}"}),
        {"m": last},
        last,
    )


def test_concurrent_async_updates_of_one_key_lose_nothing(store: RedisStore) -> None:
    import asyncio

    record = make_record(owner="o0")
    store.create(record)

    async def scenario() -> None:
        async def owner_moves() -> None:
            for i in range(1, N_WRITES):
                await store.aupdate(record.id, {"owner": f"o{i}"})

        async def renames() -> None:
            for i in range(N_WRITES):
                await store.aupdate(record.id, {"name": f"n{i}"})

        await asyncio.gather(owner_moves(), renames(), renames())
        await store.aclose()

    asyncio.run(scenario())
    got = store.get(record.id)
    assert got is not None
    assert (got.owner, got.name) == (f"o{N_WRITES - 1}", f"n{N_WRITES - 1}")
    assert [r.id for r in store.list_keys(owner=f"o{N_WRITES - 1}")] == [record.id]
    assert all(store.list_keys(owner=f"o{i}") == [] for i in range(N_WRITES - 1))


def test_owner_change_moves_the_key_between_listings(store: RedisStore) -> None:
    record = make_record(owner="a")
    store.create(record)
    store.update(record.id, {"owner": "b"})
    assert store.list_keys(owner="a") == []
    assert [r.id for r in store.list_keys(owner="b")] == [record.id]
    store.update(record.id, {"owner": None})
    assert store.list_keys(owner="b") == []
    assert [r.id for r in store.list_keys()] == [record.id]


def test_a_full_key_never_becomes_a_key_name(store: RedisStore, ns: str) -> None:
    ks = Keysentry(store, secret=SECRET)
    key = ks.issue(name="k").key.reveal()
    before = names(ns)
    assert store.get(key) is None
    with pytest.raises(KeyNotFound) as info:
        store.update(key, {"disabled": True})
    assert key[20:] not in str(info.value)
    with pytest.raises(ValueError, match="cannot be stored"):
        store.create(make_record(id=key))
    assert names(ns) == before


def test_lists_skip_records_missing_behind_the_index(store: RedisStore) -> None:
    import redis

    records = sorted((make_record(owner="o") for _ in range(4)), key=lambda r: r.id)
    for r in records:
        store.create(r)
    client = redis.Redis.from_url(REDIS_URL)
    client.delete(store.record_key(records[1].id))
    client.close()
    assert [r.id for r in store.list_keys(owner="o", limit=3)] == [
        records[0].id,
        records[2].id,
        records[3].id,
    ]


def test_delete_leaves_nothing_behind(store: RedisStore, ns: str) -> None:
    """The record, its digest entry, its place in the id list and in its owner's set: all
    gone in one step, and nothing of another key touched."""
    ks = Keysentry(store, secret=SECRET)
    kept = ks.issue(name="kept", owner="acct_9").record
    before = names(ns)
    gone = ks.issue(name="gone", owner="acct_9").record
    assert store.delete(gone.id) == gone
    assert names(ns) == before
    import redis

    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        assert client.zrange(store.index_key(None), 0, -1) == [kept.id]
        assert client.zrange(store.index_key("acct_9"), 0, -1) == [kept.id]
    finally:
        client.close()
    ks.delete(kept.id)
    assert names(ns) == set()  # the last key took its (empty) indexes with it


def test_a_record_from_before_the_digest_mode_reads_as_unknown(store: RedisStore) -> None:
    import redis

    record = make_record(owner="old")
    store.create(record)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.hdel(store.record_key(record.id), "digest_mode")  # as an older release wrote it
    finally:
        client.close()
    got = store.get(record.id)
    assert got == dataclasses.replace(record, digest_mode=None)
    assert store.update(record.id, {"name": "renamed"}).digest_mode is None


def test_from_url_and_masked_repr(ns: str) -> None:
    store = from_url("redis://:hunter2@127.0.0.1:6379/0", namespace=ns)
    assert isinstance(store, RedisStore)
    assert "hunter2" not in repr(store)
    assert isinstance(from_url("rediss://example.invalid:6380/0"), RedisStore)
    assert isinstance(from_url("unix:///tmp/redis.sock"), RedisStore)


def test_unreachable_server_raises_store_unavailable_fast() -> None:
    from .services import free_port

    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2, failures=2)
    for call in (
        lambda: store.get("nosuchkeyid0"),
        lambda: store.find_by_digest(bytes(32)),
        lambda: store.create(make_record()),
        lambda: store.update("nosuchkeyid0", {"disabled": True}),
        lambda: store.list_keys(),
    ):
        start = time.monotonic()
        with pytest.raises(StoreUnavailable):
            call()
        assert time.monotonic() - start < 0.5
    assert store.breaker.state == "open"


FRAMEWORKS = ["starlette", "flask"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_keysentry_on_redis(store: RedisStore, framework: str) -> None:
    ks = Keysentry(store, secret=SECRET)
    client = Client(framework, ks)
    issued = ks.issue(name="e2e", owner="acct_1", scopes=["read"])
    key = issued.key.reveal()
    r = client.get("/", {"X-API-Key": key})
    assert (r.status, r.body["id"], r.body["owner"]) == (200, issued.record.id, "acct_1")
    altered = key[:-1] + ("1" if key.endswith("0") else "0")
    assert client.get("/", {"X-API-Key": altered}).status == 401
    unknown = Keysentry(store, secret="another-secret-0123456789abcdef")
    assert Client(framework, unknown).get("/", {"X-API-Key": key}).code == "INVALID_API_KEY"
    ks.revoke(issued.record.id)
    assert client.get("/", {"X-API-Key": key}).status == 401
    assert store.get(issued.record.id).revoked  # type: ignore[union-attr]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_redis_restart_answers_503_then_recovers(redis_server: RedisServer, framework: str) -> None:
    store = RedisStore(redis_server.url, timeout=0.2, failures=2, cooldown=0.3)
    ks = Keysentry(store, secret=SECRET)
    client = Client(framework, ks)
    warm = ks.issue(name="warm").key.reveal()
    cold = ks.issue(name="cold")
    assert client.get("/", {"X-API-Key": warm}).status == 200  # now cached

    redis_server.stop()
    for _ in range(6):
        start = time.monotonic()
        r = client.get("/", {"X-API-Key": cold.key.reveal()})
        assert (r.status, r.code) == (503, "AUTH_UNAVAILABLE")
        assert int(r.headers["Retry-After"]) >= 1
        assert time.monotonic() - start < 1.0
        assert client.get("/", {"X-API-Key": warm}).status == 200  # the cache still serves

    redis_server.start()  # same port, empty: the record comes back from a backup
    deadline = time.monotonic() + 5
    while True:
        try:
            store.create(cold.record)
            break
        except StoreUnavailable:
            assert time.monotonic() < deadline, "the store did not recover"
            time.sleep(0.05)
    assert client.get("/", {"X-API-Key": cold.key.reveal()}).status == 200
    store.close()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_stalled_redis_costs_at_most_the_timeout(redis_server: RedisServer, framework: str) -> None:
    store = RedisStore(redis_server.url, timeout=0.2, failures=2, cooldown=30)
    ks = Keysentry(store, secret=SECRET)
    client = Client(framework, ks)
    keys = [ks.issue(name=f"k{i}").key.reveal() for i in range(6)]
    redis_server.freeze()  # accepts connections, answers nothing
    try:
        waits = []
        for key in keys:
            start = time.monotonic()
            assert client.get("/", {"X-API-Key": key}).code == "AUTH_UNAVAILABLE"
            waits.append(time.monotonic() - start)
        assert max(waits) < 1.0
        # Two timeouts open the breaker: later requests are refused without waiting.
        assert sorted(waits)[:4] == pytest.approx([0, 0, 0, 0], abs=0.1)
    finally:
        redis_server.thaw()
    store.close()


def test_every_script_runs_again_after_a_script_flush(redis_server: RedisServer) -> None:
    """A restarted or failed-over server has no scripts: each is sent again, on both faces."""
    import redis

    store = RedisStore(redis_server.url)
    flush = redis.Redis.from_url(redis_server.url).script_flush
    used = Usage(1, datetime(2030, 1, 2, tzinfo=timezone.utc))

    flush()
    record = make_record(credits=3)
    store.create(record)
    flush()
    assert store.update(record.id, {"name": "flushed"}).name == "flushed"
    flush()
    assert store.spend_credits(record.id) == 2
    flush()
    store.record_usage({record.id: used})

    async def async_face() -> None:
        flush()
        twin = make_record(credits=3)
        await store.acreate(twin)
        flush()
        assert (await store.aupdate(twin.id, {"name": "again"})).name == "again"
        flush()
        assert await store.aspend_credits(twin.id) == 2
        flush()
        await store.arecord_usage({twin.id: used})
        assert (await store.aget(twin.id)).last_used_at == used.last_used_at  # type: ignore[union-attr]
        await store.aclose()

    asyncio.run(async_face())
    assert store.get(record.id).last_used_at == used.last_used_at  # type: ignore[union-attr]
    store.close()

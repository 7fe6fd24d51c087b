"""Failed-attempt throttling and single-flight lookups: guessing keys costs the guesser.

A well-formed key with an unknown id or a wrong secret counts against the client address that
sent it; past the guard's ``failure_limit`` that client gets 429 TOO_MANY_FAILED_ATTEMPTS,
and its cache misses are refused before any store query. Concurrent misses for one key share
one store query.
"""

from __future__ import annotations

import asyncio
import threading
import time
import zlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient
from werkzeug.test import Client as WerkzeugClient

from keysentry import KeyRecord, Keysentry, MemoryStore
from keysentry.attempts import bucket
from keysentry.decision import Verdict
from keysentry.errors import StoreUnavailable
from keysentry.ratelimit.memory import MemoryLimiter
from keysentry.ratelimit.redis import RedisLimiter

from .apps import fastapi_app, flask_app, starlette_app, werkzeug_app
from .conftest import SECRET
from .services import REDIS_URL, delete_namespace, namespace, redis_or_skip
from .test_no_store_calls import CountingStore

ASGI = {"starlette": starlette_app, "fastapi": fastapi_app}
WSGI = {"flask": flask_app, "werkzeug": werkzeug_app}


class Peer:
    """Requests from one client address, through one framework's own test client."""

    def __init__(self, framework: str, ks: Keysentry, address: str) -> None:
        self.asgi = framework in ASGI
        if self.asgi:
            self.client: Any = TestClient(ASGI[framework](ks), client=(address, 40000))
        else:
            self.client = WerkzeugClient(WSGI[framework](ks))
        self.address = address

    def get(self, key: str) -> tuple[int, str, dict[str, str]]:
        headers = {"Authorization": f"Bearer {key}"}
        if self.asgi:
            r = self.client.get("/", headers=headers)
            body = r.json()
            return r.status_code, body.get("error", {}).get("code", ""), _lower(r.headers)
        resp = self.client.get("/", headers=headers, environ_base={"REMOTE_ADDR": self.address})
        body = resp.get_json()
        return resp.status_code, body.get("error", {}).get("code", ""), _lower(resp.headers)


def _lower(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def unknown(ks: Keysentry) -> str:
    """A well-formed key (valid checksum) whose id no store has."""
    return ks.new_key(name="never stored").key.reveal()


def wrong_secret(key: str, ks: Keysentry) -> str:
    other = ks.new_key().key.reveal()
    head = key[: len("sk_live_") + 12] + other[len("sk_live_") + 12 : -8]
    return head + f"{zlib.crc32(head.encode()):08x}"


FRAMEWORKS = [*ASGI, *WSGI]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_past_the_limit_a_client_gets_429_before_any_store_query(framework: str) -> None:
    store = CountingStore()
    ks = Keysentry(store, secret=SECRET, failure_limit="3/minute", usage_interval=None)  # type: ignore[arg-type]
    good = ks.issue(name="real").key.reveal()
    attacker = Peer(framework, ks, "203.0.113.7")
    assert attacker.get(good)[0] == 200  # verified, and now cached
    before = store.lookups
    for _ in range(3):
        assert attacker.get(unknown(ks))[:2] == (401, "INVALID_API_KEY")
    assert store.lookups == before + 3
    status, code, headers = attacker.get(unknown(ks))
    assert (status, code) == (429, "TOO_MANY_FAILED_ATTEMPTS")
    assert int(headers["retry-after"]) >= 1
    # Blocked: a new unknown id is refused without asking the store...
    assert attacker.get(unknown(ks))[:2] == (429, "TOO_MANY_FAILED_ATTEMPTS")
    assert store.lookups == before + 4
    # ...and so is a wrong secret for a cached id (no store query either way).
    assert attacker.get(wrong_secret(good, ks))[:2] == (429, "TOO_MANY_FAILED_ATTEMPTS")
    # A key this process has verified still works: it proves possession and costs nothing.
    assert attacker.get(good)[0] == 200
    # Another client is not affected.
    assert Peer(framework, ks, "198.51.100.2").get(unknown(ks))[:2] == (401, "INVALID_API_KEY")


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_it_is_on_by_default_and_malformed_keys_do_not_count(framework: str) -> None:
    ks = Keysentry(MemoryStore(), secret=SECRET, usage_interval=None)
    peer = Peer(framework, ks, "192.0.2.10")
    for _ in range(50):  # garbage and typos cost nothing: not counted
        assert peer.get("sk_live_" + "A" * 53)[:2] == (401, "INVALID_API_KEY")
    codes = [peer.get(unknown(ks))[1] for _ in range(31)]
    assert codes == ["INVALID_API_KEY"] * 30 + ["TOO_MANY_FAILED_ATTEMPTS"]


def test_off_when_the_limit_is_none() -> None:
    ks = Keysentry(MemoryStore(), secret=SECRET, failure_limit=None, usage_interval=None)
    peer = Peer("starlette", ks, "192.0.2.11")
    assert {peer.get(unknown(ks))[1] for _ in range(40)} == {"INVALID_API_KEY"}


def test_the_block_lifts_at_the_rate() -> None:
    now = [1000.0]
    limiter = MemoryLimiter(clock=lambda: now[0])
    ks = Keysentry(
        MemoryStore(), secret=SECRET, failure_limit="2/minute", limiter=limiter, usage_interval=None
    )
    assert ks.attempts is not None
    ks.attempts._clock = lambda: now[0]
    peer = Peer("werkzeug", ks, "192.0.2.12")
    assert [peer.get(unknown(ks))[1] for _ in range(3)] == [
        "INVALID_API_KEY",
        "INVALID_API_KEY",
        "TOO_MANY_FAILED_ATTEMPTS",
    ]
    retry = int(peer.get(unknown(ks))[2]["retry-after"])
    assert 1 <= retry <= 30
    now[0] += retry
    assert peer.get(unknown(ks))[1] == "INVALID_API_KEY"  # one more attempt is owed...
    assert peer.get(unknown(ks))[1] == "TOO_MANY_FAILED_ATTEMPTS"  # ...and no more


def test_ipv6_clients_are_counted_by_their_64() -> None:
    ks = Keysentry(MemoryStore(), secret=SECRET, failure_limit="2/minute", usage_interval=None)
    for i in range(2):
        assert Peer("starlette", ks, f"2001:db8:1:2::{i + 1}").get(unknown(ks))[0] == 401
    # Another address of the same /64 is the same subscriber.
    assert Peer("starlette", ks, "2001:db8:1:2::ff").get(unknown(ks))[0] == 429
    assert Peer("starlette", ks, "2001:db8:1:3::1").get(unknown(ks))[0] == 401


@given(st.integers(0, 2**128 - 1), st.integers(0, 2**64 - 1))
def test_bucket_is_the_ipv6_64(address: int, host: int) -> None:
    import ipaddress

    a = ipaddress.IPv6Address(address)
    same_64 = ipaddress.IPv6Address((address >> 64 << 64) | host)
    if a.ipv4_mapped is None and same_64.ipv4_mapped is None:
        assert bucket(str(a)) == bucket(str(same_64))
        assert bucket(str(a)) == str(ipaddress.IPv6Network((a, 64), strict=False))


@given(st.integers(0, 2**32 - 1))
def test_bucket_of_ipv4_is_the_address_mapped_or_not(address: int) -> None:
    import ipaddress

    v4 = ipaddress.IPv4Address(address)
    assert bucket(str(v4)) == str(v4)
    assert bucket(f"::ffff:{v4}") == str(v4)


@given(st.text(max_size=40))
def test_bucket_never_raises(text: str) -> None:
    result = bucket(text)
    assert result is None or isinstance(result, str)


def test_behind_trusted_proxies_the_forwarded_client_is_counted() -> None:
    ks = Keysentry(
        MemoryStore(),
        secret=SECRET,
        failure_limit="2/minute",
        trusted_proxies=["10.0.0.0/8"],
        usage_interval=None,
    )
    app = starlette_app(ks)
    proxy = TestClient(app, client=("10.0.0.5", 40000))

    def via_proxy(client_address: str) -> int:
        headers = {"Authorization": f"Bearer {unknown(ks)}", "X-Forwarded-For": client_address}
        return proxy.get("/", headers=headers).status_code

    assert [via_proxy("203.0.113.1") for _ in range(3)] == [401, 401, 429]
    assert via_proxy("203.0.113.2") == 401  # the proxy itself is not what is blocked


@pytest.mark.redis
def test_the_count_is_shared_through_a_redis_limiter() -> None:
    """Two guards (two processes' worth) on one Redis limiter: failures made through one
    count in the other."""
    redis_or_skip()
    ns = namespace()
    one = RedisLimiter(REDIS_URL, namespace=ns)
    two = RedisLimiter(REDIS_URL, namespace=ns)
    store = MemoryStore()
    try:
        a = Keysentry(store, secret=SECRET, limiter=one, failure_limit="3/minute")
        b = Keysentry(store, secret=SECRET, limiter=two, failure_limit="3/minute")
        assert [Peer("werkzeug", a, "192.0.2.50").get(unknown(a))[0] for _ in range(3)] == [401] * 3
        assert Peer("starlette", b, "192.0.2.50").get(unknown(b))[:2] == (
            429,
            "TOO_MANY_FAILED_ATTEMPTS",
        )
        a.close()
        b.close()
    finally:
        one.close()
        two.close()
        delete_namespace(REDIS_URL, ns)


# -- single flight -------------------------------------------------------------------------------


class SlowStore(MemoryStore):
    """A memory store whose lookups take a while and are counted."""

    def __init__(self, delay: float = 0.2, fail: bool = False) -> None:
        super().__init__()
        self.delay = delay
        self.fail = fail
        self.queries = 0
        self._count = threading.Lock()

    def get(self, key_id: str) -> KeyRecord | None:
        with self._count:
            self.queries += 1
        time.sleep(self.delay)
        if self.fail:
            raise StoreUnavailable("down")
        return super().get(key_id)

    async def aget(self, key_id: str) -> KeyRecord | None:
        self.queries += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise StoreUnavailable("down")
        return super().get(key_id)


def test_concurrent_threads_share_one_store_query() -> None:
    store = SlowStore()
    ks = Keysentry(store, secret=SECRET, usage_interval=None)
    key = ks.issue(name="popular").key.reveal().encode()
    wrong = wrong_secret(key.decode(), ks).encode()
    ks.cache.clear()
    results: list[object] = []
    lock = threading.Lock()

    def one(token: bytes) -> None:
        result = ks.authenticate(token)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=one, args=(key if i % 2 else wrong,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert store.queries == 1
    # Each waiter decided with its own key: the record is shared, the verdict is not.
    assert sum(isinstance(r, Verdict) for r in results) == 8
    assert sum(getattr(r, "code", None) == "INVALID_API_KEY" for r in results) == 8


async def test_concurrent_tasks_share_one_store_query() -> None:
    store = SlowStore(0.05)
    ks = Keysentry(store, secret=SECRET, usage_interval=None)
    key = (await ks.aissue(name="popular")).key.reveal().encode()
    ks.cache.clear()
    results = await asyncio.gather(*(ks.aauthenticate(key) for _ in range(20)))
    assert store.queries == 1
    assert all(isinstance(r, Verdict) for r in results)


async def test_a_failing_leader_hands_the_outage_to_its_waiters() -> None:
    store = SlowStore(0.05)
    ks = Keysentry(store, secret=SECRET, usage_interval=None)
    key = (await ks.aissue(name="popular")).key.reveal().encode()
    ks.cache.clear()
    store.fail = True
    results = await asyncio.gather(*(ks.aauthenticate(key) for _ in range(5)))
    assert store.queries == 1
    assert {getattr(r, "code", None) for r in results} == {"AUTH_UNAVAILABLE"}


async def test_a_cancelled_leader_leaves_its_waiters_to_ask_themselves() -> None:
    store = SlowStore(0.1)
    ks = Keysentry(store, secret=SECRET, usage_interval=None)
    key = (await ks.aissue(name="popular")).key.reveal().encode()
    ks.cache.clear()
    leader = asyncio.ensure_future(ks.aauthenticate(key))
    await asyncio.sleep(0.01)
    waiter = asyncio.ensure_future(ks.aauthenticate(key))
    await asyncio.sleep(0.01)
    leader.cancel()
    assert isinstance(await waiter, Verdict)
    assert store.queries == 2

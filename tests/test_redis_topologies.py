"""Past one Redis: every Redis part on a real 3-master Redis Cluster and behind a real
Sentinel, by URL or with the user's own clients, and ``?namespace=`` read by all three."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from keysentry import Keysentry, MemoryStore, Rate, StoreUnavailable
from keysentry._redis import MissingClient
from keysentry.invalidation import RedisInvalidator
from keysentry.ratelimit.gcra import Policy
from keysentry.ratelimit.redis import RedisLimiter
from keysentry.stores.redis import RedisStore
from keysentry.stores.url import from_url
from keysentry.testing import make_record

from .apps import Client, starlette_app
from .conftest import SECRET
from .services import (
    REDIS_URL,
    RedisCluster,
    RedisSentinel,
    delete_namespace,
    namespace,
    redis_or_skip,
)


def _wait(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def keys_on_every_node(
    ks: Keysentry, limiter: RedisLimiter, cluster: RedisCluster, rate: str
) -> list[str]:
    """One key per master: issued until each master owns one's limiter state."""
    found: dict[int, str] = {}
    while len(found) < len(cluster.servers):
        issued = ks.issue(name="spread", rate_limit=rate)
        node = cluster.node_of(limiter.state_key(issued.record.id))
        found.setdefault(node, issued.key.reveal())
    return [found[n] for n in sorted(found)]


# -- the limiter on a cluster ------------------------------------------------------------------


def test_the_limiter_is_exact_on_every_master_through_asgi(redis_cluster: RedisCluster) -> None:
    ns = namespace()
    limiter = RedisLimiter(f"{redis_cluster.url}?namespace={ns}", timeout=1.0)
    ks = Keysentry(MemoryStore(), secret=SECRET, limiter=limiter, fail_open=False)
    keys = keys_on_every_node(ks, limiter, redis_cluster, "5/minute")
    with TestClient(starlette_app(ks)) as client:
        for key in keys:
            statuses = [client.get("/", headers={"X-API-Key": key}).status_code for _ in range(6)]
            assert statuses == [200] * 5 + [429]
    assert ks.limiter_failures == 0


def test_the_limiter_is_exact_on_every_master_through_wsgi(redis_cluster: RedisCluster) -> None:
    ns = namespace()
    limiter = RedisLimiter(f"{redis_cluster.url}?namespace={ns}", timeout=1.0)
    ks = Keysentry(MemoryStore(), secret=SECRET, limiter=limiter, fail_open=False)
    client = Client("werkzeug", ks)
    for key in keys_on_every_node(ks, limiter, redis_cluster, "5/minute"):
        statuses = [client.get("/", {"X-API-Key": key}).status for _ in range(6)]
        assert statuses == [200] * 5 + [429]
    limiter.close()


WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from keysentry import Rate
    from keysentry.ratelimit.gcra import Policy
    from keysentry.ratelimit.redis import RedisLimiter

    url, n, ids = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    policies = (Policy.of(Rate(30, 3600.0)),)

    async def main():
        limiter = RedisLimiter(url, timeout=2.0)
        counts = {}
        for key in ids:
            results = await asyncio.gather(*(limiter.ahit(key, policies) for _ in range(n)))
            counts[key] = sum(d.allowed for d in results)
        await limiter.aclose()
        print(json.dumps(counts))

    asyncio.run(main())
    """
)


def test_the_limiter_is_exact_across_processes_on_a_cluster(redis_cluster: RedisCluster) -> None:
    """3 processes x 20 requests at each of three keys, one per master: 30 admitted each."""
    url = f"{redis_cluster.url}?namespace={namespace()}"
    probe = RedisLimiter(url)
    ids: dict[int, str] = {}
    i = 0
    while len(ids) < 3:
        ids.setdefault(redis_cluster.node_of(probe.state_key(f"k{i}")), f"k{i}")
        i += 1
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, "20", *ids.values()],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    counts = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    for key in ids.values():
        assert sum(c[key] for c in counts) == 30


def test_a_key_moved_between_masters_is_followed() -> None:
    """A slot migrated to another master (MOVED) is followed, and the state moves with it."""
    import redis

    cluster = RedisCluster()
    try:
        cluster.start()
        limiter = RedisLimiter(cluster.url)
        policies = (Policy.of(Rate(3, 60.0)),)
        name = limiter.state_key("moving")
        assert [limiter.hit("moving", policies).allowed for _ in range(2)] == [True, True]
        source = cluster.node_of(name)
        target = (source + 1) % 3
        cluster.move_slots(source, target)
        assert cluster.node_of(name) == target
        # The client still maps the slot to the old master: it is told MOVED, and follows.
        assert limiter.hit("moving", policies).allowed
        assert not limiter.hit("moving", policies).allowed
        client = redis.Redis.from_url(cluster.servers[target].url)
        assert client.exists(name) == 1
        client.close()
        limiter.close()
    finally:
        cluster.stop()


@pytest.mark.parametrize("fail_open", [True, False])
def test_a_dead_master_goes_through_the_failure_policy(fail_open: bool) -> None:
    cluster = RedisCluster()
    try:
        cluster.start()
        limiter = RedisLimiter(cluster.url, timeout=0.2, failures=2, cooldown=30)
        ks = Keysentry(MemoryStore(), secret=SECRET, limiter=limiter, fail_open=fail_open)
        keys = keys_on_every_node(ks, limiter, cluster, "3/minute")
        client = Client("werkzeug", ks)
        for key in keys:
            assert client.get("/", {"X-API-Key": key}).status == 200
        cluster.servers[1].stop()
        for _ in range(4):
            start = time.monotonic()
            r = client.get("/", {"X-API-Key": keys[1]})
            assert r.status == (200 if fail_open else 503)
            assert "RateLimit" not in r.headers
            assert time.monotonic() - start < 2.0
        assert ks.limiter_failures == (4 if fail_open else 0)
        assert limiter.breaker.state == "open"  # one breaker for the cluster
        with pytest.raises(StoreUnavailable):
            limiter.hit("any", (Policy.of(Rate(3, 60.0)),))
        limiter.close()
    finally:
        cluster.stop()


# -- the invalidator on a cluster and behind Sentinel ------------------------------------------


def test_an_announcement_published_on_any_master_reaches_the_listener(
    redis_cluster: RedisCluster,
) -> None:
    import redis

    channel = f"{namespace()}:invalidate"
    invalidator = RedisInvalidator(redis_cluster.url, channel=channel)
    heard: list[str] = []
    invalidator.start(on_message=heard.append)
    try:
        assert invalidator.wait_listening(10)
        for i, server in enumerate(redis_cluster.servers):
            client = redis.Redis.from_url(server.url)
            client.publish(channel, f"key{i}".encode())
            client.close()
        invalidator.publish("viaurl")

        async def apublish() -> None:
            await invalidator.apublish("viaasync")
            await invalidator.aclose()

        asyncio.run(apublish())
        _wait(lambda: len(heard) == 5)
        assert sorted(heard) == ["key0", "key1", "key2", "viaasync", "viaurl"]
    finally:
        invalidator.close()


def test_the_invalidator_and_limiter_behind_sentinel(redis_sentinel: RedisSentinel) -> None:
    ns = namespace()
    url = f"{redis_sentinel.url}?namespace={ns}"
    invalidator = RedisInvalidator(url)
    assert invalidator.channel == f"{ns}:invalidate"
    heard: list[str] = []
    invalidator.start(on_message=heard.append)
    limiter = RedisLimiter(url)
    try:
        assert invalidator.wait_listening(10)  # the listener thread lives on a Sentinel URL
        assert invalidator.publish("abc") == 1
        _wait(lambda: heard == ["abc"])
        ks = Keysentry(MemoryStore(), secret=SECRET, limiter=limiter, fail_open=False)
        key = ks.issue(name="sentinel", rate_limit="5/minute").key.reveal()
        with TestClient(starlette_app(ks)) as client:
            statuses = [client.get("/", headers={"X-API-Key": key}).status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429]
        wsgi_key = ks.issue(name="sentinel-wsgi", rate_limit="5/minute").key.reveal()
        wsgi = Client("werkzeug", ks)
        assert [wsgi.get("/", {"X-API-Key": wsgi_key}).status for _ in range(6)] == [200] * 5 + [
            429
        ]
    finally:
        invalidator.close()
        limiter.close()
        delete_namespace(redis_sentinel.master.url, ns)


def test_the_store_behind_sentinel_and_on_a_cluster(
    redis_sentinel: RedisSentinel, redis_cluster: RedisCluster
) -> None:
    # A namespace of no hash tag: on a cluster the store spreads over every master.
    for url in (
        f"{redis_sentinel.url}?namespace={namespace()}",
        f"{redis_cluster.url}?namespace={namespace()}",
    ):
        store = from_url(url)
        assert isinstance(store, RedisStore)
        record = make_record(owner="acct")
        store.create(record)
        assert store.get(record.id) == record
        assert [r.id for r in store.list_keys(owner="acct")] == [record.id]
        assert store.update(record.id, {"name": "renamed", "owner": "other"}).name == "renamed"
        assert [r.id for r in store.list_keys(owner="other")] == [record.id]
        assert store.find_by_digest(record.digest) is not None

        async def check(store: RedisStore = store, record: Any = record) -> None:
            assert (await store.aget(record.id)) is not None
            assert (await store.adelete(record.id)).name == "renamed"  # several keys, one slot
            assert (await store.aget(record.id)) is None
            await store.aclose()

        asyncio.run(check())
        assert store.list_keys(owner="acct") == []
        assert store.find_by_digest(record.digest) is None
        store.close()


# -- ?namespace= and clients of the user's own, for all three parts ----------------------------


@pytest.fixture(params=["redis", "cluster", "sentinel"])
def topology(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any, Any]]:
    """A URL, a blocking client and an asyncio client of one kind of Redis deployment."""
    import redis
    import redis.asyncio
    import redis.asyncio.cluster
    import redis.asyncio.sentinel
    import redis.cluster
    import redis.sentinel

    if request.param == "redis":
        redis_or_skip()
        url = REDIS_URL
        sync: Any = redis.Redis.from_url(url)
        make_async: Any = lambda: redis.asyncio.Redis.from_url(url)  # noqa: E731
    elif request.param == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        url = cluster.url
        host, port = cluster.nodes[0]
        sync = redis.cluster.RedisCluster(host=host, port=port)
        make_async = lambda: redis.asyncio.cluster.RedisCluster(host=host, port=port)  # noqa: E731
    else:
        sentinel: RedisSentinel = request.getfixturevalue("redis_sentinel")
        url = sentinel.url
        sentinels = [("127.0.0.1", sentinel.port)]
        sync = redis.sentinel.Sentinel(sentinels).master_for(sentinel.service)
        make_async = lambda: redis.asyncio.sentinel.Sentinel(sentinels).master_for(  # noqa: E731
            sentinel.service
        )
    yield url, sync, make_async
    sync.close()


def _names(client: Any, ns: str) -> list[str]:
    return sorted(k.decode() for k in client.scan_iter(match=f"{ns}:*"))


def test_namespace_in_the_url_is_read_by_every_part(topology: tuple[str, Any, Any]) -> None:
    url, sync, _ = topology
    ns = namespace()
    with_ns = f"{url}{'&' if '?' in url else '?'}namespace={ns}"
    limiter, store, invalidator = (
        RedisLimiter(with_ns),
        RedisStore(with_ns),
        RedisInvalidator(with_ns),
    )
    try:
        assert (limiter.namespace, store.namespace) == (ns, ns)
        assert invalidator.channel == f"{ns}:invalidate"
        assert RedisLimiter(with_ns, namespace="explicit").namespace == "explicit"
        limiter.hit("id1", (Policy.of(Rate(5, 60.0)),))
        record = make_record()
        store.create(record)
        heard: list[str] = []
        invalidator.start(on_message=heard.append)
        assert invalidator.wait_listening(10)
        assert invalidator.publish("id1") >= 1
        _wait(lambda: heard == ["id1"])
        names = [n for n in _names(sync, ns) if ":rl:" in n or ":key:" in n]
        assert names == sorted([limiter.state_key("id1"), store.record_key(record.id)])
    finally:
        for part in (limiter, store, invalidator):
            part.close()
        for name in _names(sync, ns):
            sync.delete(name)


def test_clients_of_the_users_own_serve_every_part(topology: tuple[str, Any, Any]) -> None:
    _, sync, make_async = topology
    ns = namespace()
    aclient = make_async()
    limiter = RedisLimiter(client=sync, aclient=aclient, namespace=ns)
    invalidator = RedisInvalidator(client=sync, aclient=aclient, namespace=ns)
    store = RedisStore(client=sync, aclient=aclient, namespace=ns, invalidator=invalidator)
    assert "client=" in repr(limiter)
    heard: list[str] = []
    invalidator.start(on_message=heard.append)
    try:
        assert invalidator.wait_listening(10)
        ks = Keysentry(store, secret=SECRET, limiter=limiter, fail_open=False)
        issued = ks.issue(name="own", rate_limit="5/minute")  # announced by the store
        _wait(lambda: heard == [issued.record.id])
        key = issued.key.reveal()
        statuses = [Client("werkzeug", ks).get("/", {"X-API-Key": key}).status for _ in range(3)]
        with TestClient(starlette_app(ks)) as client:
            statuses += [client.get("/", headers={"X-API-Key": key}).status_code for _ in range(3)]
            assert client.portal is not None
            client.portal.call(store.aupdate, issued.record.id, {"name": "renamed"})
        assert statuses == [200] * 5 + [429]
        _wait(lambda: heard == [issued.record.id] * 2)
    finally:
        invalidator.close()
        store.close()
        limiter.close()
    # Given clients are the user's: still open and usable after the parts are closed.
    assert sync.ping()
    for name in _names(sync, ns):
        sync.delete(name)


def test_a_missing_face_is_said_plainly_and_never_taken_for_an_outage() -> None:
    import redis
    import redis.asyncio

    redis_or_skip()
    sync = redis.Redis.from_url(REDIS_URL)
    limiter = RedisLimiter(client=sync, failures=1)
    policies = (Policy.of(Rate(5, 60.0)),)

    async def ahit() -> None:
        await limiter.ahit("x", policies)

    for _ in range(3):
        with pytest.raises(MissingClient, match="aclient="):
            asyncio.run(ahit())
    assert limiter.breaker.state == "closed"
    asyncio_only = RedisInvalidator(aclient=redis.asyncio.Redis.from_url(REDIS_URL))
    with pytest.raises(MissingClient, match="client="):
        asyncio_only.start(on_message=print)
    with pytest.raises(TypeError, match="aclient="):
        RedisLimiter(client=redis.asyncio.Redis.from_url(REDIS_URL))
    with pytest.raises(TypeError, match="client="):
        RedisStore(aclient=sync)
    with pytest.raises(ValueError, match="not both"):
        RedisLimiter(REDIS_URL, client=sync)
    sync.delete(limiter.state_key("x"))
    sync.close()

"""Cross-process invalidation over Redis pub/sub: a change made in one process reaches every
other process's cache within a second, and listeners survive servers that die or stall."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from keysentry import Keysentry, MemoryStore
from keysentry.cache import MISS, TTLCache
from keysentry.decision import Verdict
from keysentry.invalidation import RedisInvalidator, message, parse
from keysentry.records import utcnow
from keysentry.stores.redis import RedisStore

from .apps import Client
from .conftest import SECRET
from .services import REDIS_URL, RedisServer

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parent.parent
DIGEST = bytes(range(32))


@pytest.fixture
def listeners() -> Iterator[list[RedisInvalidator]]:
    """Invalidators to close after the test, whatever happens in it."""
    made: list[RedisInvalidator] = []
    yield made
    for invalidator in made:
        invalidator.close()


def eventually(condition: Callable[[], bool], within: float = 1.0) -> bool:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_messages_carry_public_values_only() -> None:
    assert message("AbC123xyz_-0") == b"AbC123xyz_-0"
    assert parse(message("AbC123xyz_-0", DIGEST)) == ("AbC123xyz_-0", DIGEST)
    with pytest.raises(ValueError, match="not a key id"):
        message("sk_live_" + "x" * 53)  # a whole key is never published
    for junk in (b"", b"a b", b"id " + b"0" * 63, b"\xff", b"a" * 33, b"id\n"):
        assert parse(junk) is None


def test_publish_drops_the_key_from_a_listening_cache(
    ns: str, listeners: list[RedisInvalidator]
) -> None:
    import redis

    invalidator = RedisInvalidator(REDIS_URL, channel=f"{ns}:inv")
    listeners.append(invalidator)
    cache: TTLCache[str] = TTLCache(ttl=600)
    heard: list[str] = []
    invalidator.start(heard.append, cache=cache)
    assert invalidator.wait_listening(5)
    cache.put(b"keyid0000001", "by id")
    cache.put(DIGEST, "by digest")
    cache.put(b"keyid0000002", "untouched")

    raw = redis.Redis.from_url(REDIS_URL)
    raw.publish(f"{ns}:inv", b"not a message at all")  # ignored, and the listener lives on
    raw.close()
    assert invalidator.publish("keyid0000001", DIGEST) == 1
    assert eventually(lambda: heard == ["keyid0000001"])
    assert cache.get(b"keyid0000001") is MISS
    assert cache.get(DIGEST) is MISS
    assert cache.get(b"keyid0000002") == "untouched"
    assert invalidator.received == 1
    with pytest.raises(RuntimeError, match="already listening"):
        invalidator.start(cache=cache)


def test_a_failing_callback_does_not_stop_the_listener(
    ns: str, listeners: list[RedisInvalidator]
) -> None:
    invalidator = RedisInvalidator(REDIS_URL, channel=f"{ns}:inv")
    listeners.append(invalidator)
    heard: list[str] = []

    def flaky(key_id: str) -> None:
        heard.append(key_id)
        if len(heard) == 1:
            raise RuntimeError("callback bug")

    invalidator.start(flaky)
    assert invalidator.wait_listening(5)
    invalidator.publish("first0000000")
    invalidator.publish("second000000")
    assert eventually(lambda: heard == ["first0000000", "second000000"])
    assert invalidator.listening


def test_apublish_from_an_event_loop(ns: str, listeners: list[RedisInvalidator]) -> None:
    import asyncio

    invalidator = RedisInvalidator(REDIS_URL, channel=f"{ns}:inv")
    listeners.append(invalidator)
    heard: list[str] = []
    invalidator.start(heard.append)
    assert invalidator.wait_listening(5)

    async def announce() -> int:
        try:
            return await invalidator.apublish("fromaloop000")
        finally:
            await invalidator.aclose()

    assert asyncio.run(announce()) == 1
    assert eventually(lambda: heard == ["fromaloop000"])


def test_store_announces_changes_to_other_caches(
    ns: str, listeners: list[RedisInvalidator]
) -> None:
    """Two Keysentry instances with their own caches, as two processes would have."""
    channel = f"{ns}:inv"
    announcer = RedisInvalidator(REDIS_URL, channel=channel)
    writer = RedisStore(REDIS_URL, namespace=ns, invalidator=announcer)
    ks_a = Keysentry(writer, secret=SECRET)
    ks_b = Keysentry(RedisStore(REDIS_URL, namespace=ns), secret=SECRET, cache_ttl=600)
    listener = RedisInvalidator(REDIS_URL, channel=channel)
    listeners += [listener, announcer]
    listener.start(cache=ks_b.cache)
    assert listener.wait_listening(5)

    issued = ks_a.issue(name="shared")
    token = issued.key.reveal().encode()
    assert eventually(lambda: listener.received == 1)  # the create is announced too
    assert ks_b.authenticate(token).record.id == issued.record.id  # type: ignore[union-attr]
    writer.update(issued.record.id, {"last_used_at": issued.record.created_at})
    ks_a.revoke(issued.record.id)
    assert eventually(lambda: listener.received == 2)
    assert ks_b.authenticate(token).code == "INVALID_API_KEY"  # type: ignore[union-attr]
    # Recording usage is not announced: it would flush every cache of the keys in use.
    time.sleep(0.1)
    assert listener.received == 2
    # A deletion through the store alone is announced too.
    other = ks_a.issue(name="deleted")
    other_token = other.key.reveal().encode()
    assert eventually(lambda: listener.received == 3)
    assert ks_b.authenticate(other_token).record.id == other.record.id  # type: ignore[union-attr]
    writer.delete(other.record.id)
    assert eventually(lambda: listener.received == 4)
    assert ks_b.authenticate(other_token).code == "INVALID_API_KEY"  # type: ignore[union-attr]
    writer.close()


def test_listener_reconnects_and_resets_after_a_restart(
    redis_server: RedisServer, listeners: list[RedisInvalidator]
) -> None:
    invalidator = RedisInvalidator(
        redis_server.url, timeout=0.2, ping_interval=0.5, backoff=(0.05, 0.2)
    )
    listeners.append(invalidator)
    cache: TTLCache[str] = TTLCache(ttl=600)
    heard: list[str] = []
    resets: list[bool] = []
    invalidator.start(heard.append, cache=cache, on_reset=lambda: resets.append(True))
    assert invalidator.wait_listening(5)
    cache.put(b"cachedbefore", "stale after an outage")

    redis_server.stop()
    assert eventually(lambda: not invalidator.listening, within=2)
    # Announcements are missed from now on: the entry is no longer trusted, but it is kept
    # for when the store cannot answer either.
    assert cache.get(b"cachedbefore") is MISS
    assert cache.get_stale(b"cachedbefore", 60) == "stale after an outage"
    assert invalidator.losses == 1
    cache.put(b"fetchedmeanwhile", "may have missed announcements too")
    redis_server.start()
    assert invalidator.wait_listening(5)
    # Whatever was announced during the outage is lost: the cache was marked stale again.
    assert cache.get(b"fetchedmeanwhile") is MISS
    assert cache.get_stale(b"fetchedmeanwhile", 60) == "may have missed announcements too"
    assert invalidator.resets == 1
    assert resets == [True, True]  # when the loss was noticed, and after resubscribing
    invalidator.publish("afteroutage0")
    assert eventually(lambda: heard == ["afteroutage0"])


def test_listener_replaces_a_silent_connection(
    redis_server: RedisServer, listeners: list[RedisInvalidator]
) -> None:
    invalidator = RedisInvalidator(
        redis_server.url, timeout=0.2, ping_interval=0.3, backoff=(0.05, 0.2)
    )
    listeners.append(invalidator)
    heard: list[str] = []
    invalidator.start(heard.append)
    assert invalidator.wait_listening(5)
    redis_server.freeze()  # the connection stays up; nothing answers
    try:
        assert eventually(lambda: not invalidator.listening, within=3)
    finally:
        redis_server.thaw()
    assert invalidator.wait_listening(5)
    assert invalidator.resets == 1
    invalidator.publish("afterstall00")
    assert eventually(lambda: heard == ["afterstall00"])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_worker_gets_its_own_listener(ns: str, listeners: list[RedisInvalidator]) -> None:
    """As under ``gunicorn --preload``: started in the parent, listening in each child."""
    invalidator = RedisInvalidator(REDIS_URL, channel=f"{ns}:inv")
    listeners.append(invalidator)
    heard: list[str] = []
    invalidator.start(heard.append)
    assert invalidator.wait_listening(5)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            if invalidator.wait_listening(5):
                os.write(write_end, b"listening\n")
                deadline = time.monotonic() + 5
                while not heard and time.monotonic() < deadline:
                    time.sleep(0.01)
                os.write(write_end, ("heard " + ",".join(heard) + "\n").encode())
                code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        assert pipe.readline() == b"listening\n"
        assert invalidator.publish("toboth000000") == 2  # parent and child
        assert pipe.readline() == b"heard toboth000000\n"
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert eventually(lambda: heard == ["toboth000000"])


WORKER = textwrap.dedent(
    """
    import sys
    from keysentry import Keysentry
    from keysentry.invalidation import RedisInvalidator
    from keysentry.stores.redis import RedisStore
    from tests.apps import Client

    url, ns, secret = sys.argv[1:4]
    ks = Keysentry(RedisStore(url, namespace=ns), secret=secret, cache_ttl=600)
    invalidator = RedisInvalidator(url, channel=ns + ":inv")
    invalidator.start(cache=ks.cache)
    assert invalidator.wait_listening(5)
    client = Client("flask", ks)
    print("ready", flush=True)
    for line in sys.stdin:
        r = client.get("/", {"X-API-Key": line.strip()})
        print(r.status, r.code, flush=True)
    invalidator.close()
    """
)


def test_revocation_reaches_another_process_within_a_second(ns: str) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, REDIS_URL, ns, SECRET],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdin is not None
    assert worker.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(worker.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    publisher = RedisInvalidator(REDIS_URL, channel=f"{ns}:inv")
    store = RedisStore(REDIS_URL, namespace=ns, invalidator=publisher)
    silent = RedisStore(REDIS_URL, namespace=ns)  # changes nobody hears about
    try:
        ks = Keysentry(store, secret=SECRET)
        issued = ks.issue(name="cross-process")
        key = issued.key.reveal()
        assert eventually(lambda: lines == ["ready\n"], within=15)

        def ask() -> str:
            seen = len(lines)
            worker.stdin.write(key + "\n")  # type: ignore[union-attr]
            worker.stdin.flush()  # type: ignore[union-attr]
            assert eventually(lambda: len(lines) > seen, within=5)
            return lines[seen].strip()

        assert ask() == "200 None"
        # The worker now answers from its cache (TTL 600 s): an unannounced change is unseen.
        silent.update(issued.record.id, {"disabled": True})
        assert ask() == "200 None"

        ks.revoke(issued.record.id)  # store.update + publish
        revoked_at = time.monotonic()
        while (answer := ask()) == "200 None":
            assert time.monotonic() - revoked_at < 1.0, "the revocation did not arrive in 1 s"
            time.sleep(0.02)
        assert answer == "401 INVALID_API_KEY"
    finally:
        worker.stdin.close()
        worker.wait(timeout=10)
        store.close()
        silent.close()
        publisher.close()
    assert worker.returncode == 0


def test_keysentry_with_an_invalidator_revokes_everywhere_for_any_store(
    ns: str, listeners: list[RedisInvalidator], tmp_path: Path
) -> None:
    """Two guards over one SQLite file, each with its own cache: a revocation in one is
    refused by the other at once, not after its cache TTL (an hour here)."""
    from keysentry.stores.sql import SQLStore

    guards = []
    for _ in range(2):
        invalidator = RedisInvalidator(REDIS_URL, channel=f"{ns}:inv")
        listeners.append(invalidator)
        store = SQLStore(f"sqlite:///{tmp_path / 'keys.db'}")
        guards.append(Keysentry(store, secret=SECRET, cache_ttl=3600, invalidator=invalidator))
    assert all(inv.wait_listening(5) for inv in listeners)
    a, b = guards
    issued = a.issue(name="shared")
    key = issued.key.reveal().encode()
    assert isinstance(b.authenticate(key), Verdict)  # now cached in b for an hour
    a.revoke(issued.record.id)
    assert eventually(lambda: not isinstance(b.authenticate(key), Verdict))
    for g in guards:
        g.store.close()  # type: ignore[union-attr]


def test_every_lifecycle_change_is_announced(
    ns: str, listeners: list[RedisInvalidator], tmp_path: Path
) -> None:
    """Disable, enable, scope and limit changes, rotation, deletion: each reaches the other
    guard's hour-long cache at once, not only revocations."""
    from keysentry.errors import Denial
    from keysentry.stores.sql import SQLStore

    guards = []
    for _ in range(2):
        invalidator = RedisInvalidator(REDIS_URL, channel=f"{ns}:inv")
        listeners.append(invalidator)
        store = SQLStore(f"sqlite:///{tmp_path / 'keys.db'}")
        guards.append(Keysentry(store, secret=SECRET, cache_ttl=3600, invalidator=invalidator))
    assert all(inv.wait_listening(5) for inv in listeners)
    a, b = guards
    issued = a.issue(name="watched", scopes=["read"])
    key = issued.key.reveal().encode()

    def seen() -> Verdict | Denial:
        return b.authenticate(key)

    assert isinstance(seen(), Verdict)
    a.disable(issued.record.id)
    assert eventually(lambda: getattr(seen(), "code", None) == "API_KEY_DISABLED")
    a.enable(issued.record.id)
    assert eventually(lambda: isinstance(seen(), Verdict))
    a.update(issued.record.id, scopes=["read", "write"])
    assert eventually(
        lambda: isinstance(v := seen(), Verdict) and v.identity.scopes == {"read", "write"}
    )
    successor = a.rotate(issued.record.id)  # no grace: the old key is revoked
    assert eventually(lambda: getattr(seen(), "code", None) == "INVALID_API_KEY")
    new_key = successor.key.reveal().encode()
    assert isinstance(b.authenticate(new_key), Verdict)  # cached in b for an hour
    a.delete(successor.record.id)
    assert eventually(lambda: getattr(b.authenticate(new_key), "code", None) == "INVALID_API_KEY")
    for g in guards:
        g.store.close()  # type: ignore[union-attr]


def kill_subscriptions(server: RedisServer) -> None:
    """``CLIENT KILL TYPE pubsub``: every subscriber's connection is closed under it."""
    import redis

    client = redis.Redis.from_url(server.url)
    try:
        assert client.client_kill_filter(_type="pubsub") >= 1
    finally:
        client.close()


@pytest.mark.parametrize("framework", ["starlette", "werkzeug"])
def test_a_cached_key_is_served_stale_when_the_channel_drops_during_a_store_outage(
    framework: str,
    store_redis_server: RedisServer,
    redis_server: RedisServer,
    listeners: list[RedisInvalidator],
) -> None:
    """A key cached within ``cache_ttl + stale_for`` keeps working while the store is down,
    even when the invalidation channel drops and comes back meanwhile (a restart of its
    server, a killed subscription); once the store is back the key is asked of it again, so
    a change nobody could announce while the channel was down shows."""
    invalidator = RedisInvalidator(
        redis_server.url, timeout=0.2, ping_interval=0.5, backoff=(0.05, 0.2)
    )
    listeners.append(invalidator)
    store = RedisStore(store_redis_server.url, namespace="kstest", timeout=0.2)
    ks = Keysentry(store, secret=SECRET, cache_ttl=3600, stale_for=300, invalidator=invalidator)
    client = Client(framework, ks)
    assert invalidator.wait_listening(5)
    issued = ks.issue(name="cached")
    cached = {"X-API-Key": issued.key.reveal()}
    uncached = {"X-API-Key": ks.issue(name="never asked").key.reveal()}
    assert client.get("/", cached).status == 200

    # The channel goes down, and a change is made in the store that nobody can announce.
    redis_server.stop()
    assert eventually(lambda: not invalidator.listening, within=5)
    silent = RedisStore(store_redis_server.url, namespace="kstest")
    silent.update(issued.record.id, {"disabled": True})
    silent.close()
    # Then the store goes down too, and the channel comes back: the listener resubscribes.
    store_redis_server.stop_keeping_data()
    redis_server.start()
    assert eventually(lambda: invalidator.resets == 1, within=10)
    assert client.get("/", cached).status == 200  # the stale copy serves
    refused = client.get("/", uncached)
    assert (refused.status, refused.code) == (503, "AUTH_UNAVAILABLE")

    # Once more, with the subscription killed under the listener.
    kill_subscriptions(redis_server)
    assert eventually(lambda: invalidator.resets == 2, within=10)
    assert invalidator.wait_listening(5)
    assert client.get("/", cached).status == 200
    assert client.get("/", uncached).status == 503

    # The store is back (its circuit breaker tries it after a cooldown): the cached key is
    # revalidated rather than trusted for its hour-long TTL, and the change shows.
    store_redis_server.start()
    assert eventually(lambda: client.get("/", cached).code == "API_KEY_DISABLED", within=10)
    assert client.get("/", uncached).status == 200
    store.close()


def test_a_silent_channel_stops_vouching_for_cached_keys_within_its_bound(
    redis_server: RedisServer, listeners: list[RedisInvalidator]
) -> None:
    """A channel whose server stops answering without closing (frozen here) carries no
    announcements. Within the bound the invalidator documents (``silence_limit``) the cache
    stops trusting what it holds, so a change nobody could announce is refused then, not
    after ``cache_ttl`` (an hour here)."""
    store = MemoryStore()
    invalidator = RedisInvalidator(redis_server.url)  # the documented defaults
    listeners.append(invalidator)
    ks = Keysentry(store, secret=SECRET, cache_ttl=3600, invalidator=invalidator)
    client = Client("werkzeug", ks)
    assert invalidator.wait_listening(5)
    issued = ks.issue(name="doomed")
    headers = {"X-API-Key": issued.key.reveal()}
    assert client.get("/", headers).status == 200  # cached for an hour

    redis_server.freeze()
    frozen_at = time.monotonic()
    store.update(issued.record.id, {"revoked_at": utcnow()})  # directly: nothing announced
    deadline = frozen_at + invalidator.silence_limit + 5.0  # generous slack for a busy box
    while (answer := client.get("/", headers)).status == 200:
        assert time.monotonic() < deadline, "the silent channel was trusted past its bound"
        time.sleep(0.05)
    assert (answer.status, answer.code) == (401, "INVALID_API_KEY")
    assert not invalidator.listening
    assert invalidator.losses == 1

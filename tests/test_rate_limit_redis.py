"""The Redis limiter against real Redis servers: exactness across processes, one round trip
per request, and behaviour when the server dies, stalls and comes back (SPEC §6)."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from keysentry import Keysentry, MemoryStore, Rate, StoreUnavailable
from keysentry.ratelimit.gcra import Policy
from keysentry.ratelimit.redis import RedisLimiter

from .apps import Client, starlette_app
from .conftest import SECRET
from .services import (
    REDIS_URL,
    RedisServer,
)

ROOT = Path(__file__).resolve().parent.parent


WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from keysentry.ratelimit.gcra import Policy
    from keysentry.ratelimit.redis import RedisLimiter
    from keysentry import Rate

    url, ns, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    policies = (Policy.of(Rate(60, 3600.0)),)

    async def main():
        # Generous: 400 connections opened at once on a busy machine; exactness is the point.
        limiter = RedisLimiter(url, namespace=ns, timeout=10.0)
        # Wait for the starting gun so every process fires at once.
        import redis.asyncio
        r = redis.asyncio.Redis.from_url(url)
        await r.blpop([ns + ":go"], timeout=30)
        await r.aclose()
        results = await asyncio.gather(*(limiter.ahit("shared", policies) for _ in range(n)))
        await limiter.aclose()
        print(json.dumps(sum(d.allowed for d in results)))

    asyncio.run(main())
    """
)


def test_exact_across_processes(ns: str) -> None:
    """4 processes x 100 concurrent requests at one key: exactly the burst (60) is admitted."""
    import redis

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, REDIS_URL, ns, "100"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    client = redis.Redis.from_url(REDIS_URL)
    time.sleep(1.0)  # let them connect and block on the starting gun
    client.rpush(f"{ns}:go", *["go"] * 4)
    client.close()
    counts = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(counts) == 60


def test_state_lives_under_one_hash_tag_without_the_key(ns: str) -> None:
    import redis

    limiter = RedisLimiter(REDIS_URL, namespace=ns)
    ks = Keysentry(MemoryStore(), secret=SECRET, limiter=limiter)
    issued = ks.issue(name="tagged", rate_limit="5/second, 100/day")
    key = issued.key.reveal()
    assert Client("flask", ks).get("/", {"X-API-Key": key}).status == 200
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    names = list(client.scan_iter(match=f"{ns}:*"))
    assert names == [f"{ns}:rl:{{{issued.record.id}}}"]
    assert set(client.hkeys(names[0])) == {"per-second", "per-day"}
    assert 0 < client.pttl(names[0]) <= 86_400_000 // 100 + 1000
    secret_part = key[len("sk_live_") + 12 :]
    assert all(secret_part not in n for n in names)
    client.close()
    limiter.close()


class Counting:
    """Wraps a redis-py client's execute_command to count the commands sent."""

    def __init__(self, client: Any) -> None:
        self.commands: list[str] = []
        inner = client.execute_command
        if inspect.iscoroutinefunction(inner):

            async def counted_async(*args: Any, **kwargs: Any) -> Any:
                self.commands.append(str(args[0]))
                return await inner(*args, **kwargs)

            client.execute_command = counted_async
        else:

            def counted(*args: Any, **kwargs: Any) -> Any:
                self.commands.append(str(args[0]))
                return inner(*args, **kwargs)

            client.execute_command = counted


def test_one_redis_command_per_request_wsgi(ns: str) -> None:
    limiter = RedisLimiter(REDIS_URL, namespace=ns)
    ks = Keysentry(MemoryStore(), secret=SECRET, limiter=limiter, rate_limit="1000/minute")
    client = Client("werkzeug", ks)
    key = ks.issue(name="rt").key.reveal()
    assert client.get("/", {"X-API-Key": key}).status == 200  # warms cache and script
    counter = Counting(limiter._sync)
    for _ in range(5):
        assert client.get("/", {"X-API-Key": key}).status == 200
    assert counter.commands == ["EVALSHA"] * 5
    limiter.close()


def test_one_redis_command_per_request_asgi(ns: str) -> None:
    limiter = RedisLimiter(REDIS_URL, namespace=ns)
    ks = Keysentry(MemoryStore(), secret=SECRET, limiter=limiter, rate_limit="1000/minute")
    key = ks.issue(name="rt").key.reveal()
    with TestClient(starlette_app(ks)) as client:  # one event loop for the whole session
        assert client.get("/", headers={"X-API-Key": key}).status_code == 200
        counter = Counting(next(iter(limiter._async.values())))
        for _ in range(5):
            assert client.get("/", headers={"X-API-Key": key}).status_code == 200
    assert counter.commands == ["EVALSHA"] * 5


def test_script_is_reloaded_after_script_flush(redis_server: RedisServer) -> None:
    import redis

    limiter = RedisLimiter(redis_server.url)
    policies = (Policy.of(Rate(2, 60.0)),)
    assert limiter.hit("k", policies).allowed
    redis.Redis.from_url(redis_server.url).script_flush()
    assert limiter.hit("k", policies).allowed
    assert not limiter.hit("k", policies).allowed
    limiter.close()


@pytest.mark.parametrize("framework", ["werkzeug", "starlette"])
def test_dead_redis_fails_open_then_recovers(redis_server: RedisServer, framework: str) -> None:
    limiter = RedisLimiter(redis_server.url, timeout=0.2, failures=2, cooldown=0.5)
    ks = Keysentry(MemoryStore(), secret=SECRET, limiter=limiter, fail_open=True)
    key = ks.issue(name="outage", rate_limit="3/minute").key.reveal()
    client = Client(framework, ks)
    assert [client.get("/", {"X-API-Key": key}).status for _ in range(4)] == [200] * 3 + [429]

    redis_server.stop()
    for _ in range(10):
        start = time.monotonic()
        r = client.get("/", {"X-API-Key": key})
        assert r.status == 200  # fail open
        assert "RateLimit" not in r.headers
        assert time.monotonic() - start < 1.0  # bounded by the 0.2 s timeout, not hanging
    assert ks.limiter_failures == 10

    redis_server.start()  # same port, empty state
    deadline = time.monotonic() + 10
    while "RateLimit" not in client.get("/", {"X-API-Key": key}).headers:
        assert time.monotonic() < deadline, "limiting did not resume"
        time.sleep(0.1)
    # Limiting is back: the rest of the fresh burst, then 429.
    statuses = [client.get("/", {"X-API-Key": key}).status for _ in range(3)]
    assert statuses[-1] == 429
    limiter.close()


def test_dead_redis_fails_closed_with_503(redis_server: RedisServer) -> None:
    limiter = RedisLimiter(redis_server.url, timeout=0.2, failures=2, cooldown=0.5)
    ks = Keysentry(MemoryStore(), secret=SECRET, limiter=limiter, fail_open=False)
    key = ks.issue(name="outage", rate_limit="3/minute").key.reveal()
    client = Client("flask", ks)
    assert client.get("/", {"X-API-Key": key}).status == 200
    redis_server.stop()
    for _ in range(5):
        start = time.monotonic()
        r = client.get("/", {"X-API-Key": key})
        assert (r.status, r.code) == (503, "AUTH_UNAVAILABLE")
        assert int(r.headers["Retry-After"]) >= 1
        assert time.monotonic() - start < 1.0
    redis_server.start()
    deadline = time.monotonic() + 10
    while client.get("/", {"X-API-Key": key}).status == 503:
        assert time.monotonic() < deadline, "did not recover"
        time.sleep(0.1)
    limiter.close()


@pytest.mark.parametrize("framework", ["werkzeug", "starlette"])
def test_stalled_redis_costs_at_most_the_timeout(redis_server: RedisServer, framework: str) -> None:
    limiter = RedisLimiter(redis_server.url, timeout=0.2, failures=2, cooldown=30)
    ks = Keysentry(MemoryStore(), secret=SECRET, limiter=limiter, fail_open=True)
    key = ks.issue(name="stall", rate_limit="100/minute").key.reveal()
    client = Client(framework, ks)
    assert client.get("/", {"X-API-Key": key}).status == 200
    redis_server.freeze()  # accepts nothing, answers nothing: the worst case
    try:
        waits = []
        for _ in range(6):
            start = time.monotonic()
            assert client.get("/", {"X-API-Key": key}).status == 200
            waits.append(time.monotonic() - start)
        assert max(waits) < 1.0
        # After two timeouts the breaker is open: later requests do not wait at all.
        assert sorted(waits)[:4] == pytest.approx([0, 0, 0, 0], abs=0.1)
    finally:
        redis_server.thaw()
    limiter.close()


def test_cancelled_trial_call_does_not_wedge_the_breaker(redis_server: RedisServer) -> None:
    import asyncio
    import contextlib

    limiter = RedisLimiter(redis_server.url, timeout=0.3, failures=1, cooldown=0.2)
    policies = (Policy.of(Rate(100, 60.0)),)

    async def scenario() -> bool:
        assert (await limiter.ahit("k", policies)).allowed
        redis_server.freeze()
        try:
            with contextlib.suppress(StoreUnavailable):
                await limiter.ahit("k", policies)  # times out: the breaker opens
            assert limiter.breaker.state == "open"
            await asyncio.sleep(0.3)
            trial = asyncio.ensure_future(limiter.ahit("k", policies))
            await asyncio.sleep(0.1)
            trial.cancel()  # the trial's caller gives up (client gone, timeout middleware)
            with contextlib.suppress(asyncio.CancelledError):
                await trial
        finally:
            redis_server.thaw()
        await asyncio.sleep(0.5)
        decision = await limiter.ahit("k", policies)
        await limiter.aclose()
        return decision.allowed

    assert asyncio.run(scenario())
    assert limiter.breaker.state == "closed"


LINE_WORKER = textwrap.dedent(
    """
    import json, sys
    from keysentry import Keysentry
    from keysentry.ratelimit.redis import RedisLimiter
    from keysentry.stores.redis import RedisStore
    from tests.apps import Client

    url, ns, secret, key, framework = sys.argv[1:6]
    store = RedisStore(url, namespace=ns)
    limiter = RedisLimiter(url, namespace=ns, timeout=2.0)
    guard = Keysentry(store, secret=secret, limiter=limiter, usage_interval=None)
    client = Client(framework, guard)
    print(json.dumps([client.get("/", {"X-API-Key": key}).status for _ in range(10)]))
    limiter.close()
    store.close()
    """
)


def test_a_rotation_line_shares_one_state_across_processes(ns: str) -> None:
    """The old key in one process (ASGI), its successor in another (WSGI), the records in
    Redis: together they get the line's 10 an hour, not 10 each."""
    from keysentry.stores.redis import RedisStore

    store = RedisStore(REDIS_URL, namespace=ns)
    try:
        ks = Keysentry(store, secret=SECRET, usage_interval=None)
        old = ks.issue(name="line", rate_limit="10/hour", credits=100)
        new = ks.rotate(old.record.id, grace=3600)
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", LINE_WORKER, REDIS_URL, ns, SECRET, key, framework],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            for key, framework in ((old.key.reveal(), "starlette"), (new.key.reveal(), "werkzeug"))
        ]
        statuses: list[int] = []
        for worker in workers:
            out, _ = worker.communicate(timeout=120)
            assert worker.returncode == 0
            statuses += json.loads(out)
        assert sorted(statuses) == [200] * 10 + [429] * 10
        assert ks.credits_of(ks.get(new.record.id)) == 90  # refusals spent nothing
    finally:
        store.close()

"""Credits under concurrency (SPEC §5): many threads in two OS processes spend one key's
balance through the real middlewares; exactly the balance is let through, on Redis and on
PostgreSQL, and the balance ends at zero, never below."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from keysentry import ASGIMiddleware, Keysentry
from keysentry.stores.redis import RedisStore
from keysentry.stores.sql import SQLStore

from .apps import starlette_app
from .conftest import SECRET
from .services import PG_URL, REDIS_URL, delete_namespace, namespace, redis_or_skip
from .services import table_prefix as _prefix

ROOT = Path(__file__).resolve().parent.parent
BALANCE = 50

WORKER = textwrap.dedent(
    """
    import json, sys, threading
    from keysentry import Keysentry
    from keysentry.stores.redis import RedisStore
    from keysentry.stores.sql import SQLStore
    from tests.apps import Client

    kind, where, extra, secret, key = sys.argv[1:6]
    if kind == "redis":
        store = RedisStore(where, namespace=extra)
    else:
        schema, prefix = extra.split("/")
        store = SQLStore(where, schema=schema, table_prefix=prefix)
    guard = Keysentry(store, secret=secret, usage_interval=None)
    client = Client("werkzeug", guard)
    statuses = []
    lock = threading.Lock()

    def work():
        for _ in range(10):
            r = client.get("/", {"X-API-Key": key})
            with lock:
                statuses.append(r.status)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    print(json.dumps(statuses))
    """
)


def _two_processes(kind: str, where: str, extra: str, key: str) -> Counter[int]:
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, kind, where, extra, SECRET, key],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    statuses: Counter[int] = Counter()
    for worker in workers:
        out, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0
        statuses.update(json.loads(out))
    return statuses


@pytest.fixture
def redis_ns() -> Iterator[str]:
    redis_or_skip()
    ns = namespace()
    yield ns
    delete_namespace(REDIS_URL, ns)


@pytest.mark.redis
def test_two_processes_on_redis_spend_exactly_the_balance(redis_ns: str) -> None:
    store = RedisStore(REDIS_URL, namespace=redis_ns)
    try:
        issued = Keysentry(store, secret=SECRET).issue(name="shared", credits=BALANCE)
        statuses = _two_processes("redis", REDIS_URL, redis_ns, issued.key.reveal())
        assert statuses == {200: BALANCE, 402: 120 - BALANCE}
        record = store.get(issued.record.id)
        assert record is not None
        assert record.credits == 0
    finally:
        store.close()


@pytest.mark.postgres
def test_two_processes_on_postgres_spend_exactly_the_balance(pg_schema: str) -> None:
    prefix = _prefix()
    store = SQLStore(PG_URL, schema=pg_schema, table_prefix=prefix)
    try:
        issued = Keysentry(store, secret=SECRET).issue(name="shared", credits=BALANCE)
        statuses = _two_processes("sql", PG_URL, f"{pg_schema}/{prefix}", issued.key.reveal())
        assert statuses == {200: BALANCE, 402: 120 - BALANCE}
        record = store.get(issued.record.id)
        assert record is not None
        assert record.credits == 0
    finally:
        store.close()


def test_concurrent_asgi_requests_spend_exactly_the_balance(tmp_path: Path) -> None:
    """One event loop, many requests in flight at once, on SQLite's async face."""
    store = SQLStore(f"sqlite:///{tmp_path / 'keys.db'}")
    guard = Keysentry(store, secret=SECRET, usage_interval=None)
    issued = guard.issue(name="async", credits=10)
    app = starlette_app(guard)
    assert any(m.cls is ASGIMiddleware for m in app.user_middleware)

    async def scenario() -> Counter[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            responses = await asyncio.gather(
                *(client.get("/", headers={"X-API-Key": issued.key.reveal()}) for _ in range(30))
            )
        await store.aclose()
        return Counter(r.status_code for r in responses)

    try:
        assert asyncio.run(scenario()) == {200: 10, 402: 20}
    finally:
        store.close()


def test_a_store_outage_refuses_keys_with_credits_rather_than_giving_them_away(
    tmp_path: Path,
) -> None:
    store = SQLStore(f"sqlite:///{tmp_path / 'keys.db'}", failures=1, cooldown=60)
    guard = Keysentry(store, secret=SECRET, usage_interval=None)
    paid = guard.issue(name="paid", credits=10).key.reveal()
    free = guard.issue(name="free").key.reveal()
    from .apps import Client

    client = Client("werkzeug", guard)
    assert client.get("/", {"X-API-Key": paid}).status == 200
    assert client.get("/", {"X-API-Key": free}).status == 200
    store.breaker.failure()  # the store is now "down": the breaker answers at once
    assert store.breaker.state == "open"
    r = client.get("/", {"X-API-Key": paid})
    assert (r.status, r.code) == (503, "AUTH_UNAVAILABLE")
    assert "Retry-After" in r.headers
    assert client.get("/", {"X-API-Key": free}).status == 200  # cached, nothing to spend
    store.close()

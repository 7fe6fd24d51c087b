"""Usage off the hot path (SPEC §7): request counts and last_used_at reach the store in batches,
from a thread (WSGI) or the lifespan's task (ASGI), at shutdown too, and survive a store
outage; a process killed outright loses at most one interval."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from keysentry import Keysentry, MemoryStore, StoreUnavailable
from keysentry.stores.base import Usage
from keysentry.stores.sql import SQLStore
from keysentry.usage import UsageRecorder

from .apps import Client, starlette_app
from .conftest import SECRET

ROOT = Path(__file__).resolve().parent.parent


def eventually(condition: Callable[[], bool], within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def sqlite(tmp_path: Path) -> SQLStore:
    return SQLStore(f"sqlite:///{tmp_path / 'keys.db'}")


def _count(store: SQLStore | MemoryStore, key_id: str) -> int:
    record = store.get(key_id)
    return -1 if record is None else record.request_count


@pytest.mark.parametrize("framework", ["flask", "werkzeug"])
def test_wsgi_usage_is_written_by_a_thread_in_batches(sqlite: SQLStore, framework: str) -> None:
    guard = Keysentry(sqlite, secret=SECRET, usage_interval=0.1)
    issued = guard.issue(name="busy")
    other = guard.issue(name="idle")
    client = Client(framework, guard)
    before = datetime.now(timezone.utc)
    for _ in range(7):
        assert client.get("/", {"X-API-Key": issued.key.reveal()}).status == 200
    assert client.get("/", {"X-API-Key": issued.key.reveal() + "x"}).status == 401
    assert eventually(lambda: _count(sqlite, issued.record.id) == 7)
    record = sqlite.get(issued.record.id)
    assert record is not None
    assert record.last_used_at is not None
    assert before <= record.last_used_at <= datetime.now(timezone.utc)
    assert _count(sqlite, other.record.id) == 0  # denied requests are not usage
    guard.close()
    sqlite.close()


def test_asgi_lifespan_runs_the_flusher_and_flushes_at_shutdown(sqlite: SQLStore) -> None:
    guard = Keysentry(sqlite, secret=SECRET, usage_interval=0.1)
    issued = guard.issue(name="asgi")
    key = {"X-API-Key": issued.key.reveal()}
    with TestClient(starlette_app(guard)) as client:
        for _ in range(3):
            assert client.get("/", headers=key).status_code == 200
        assert eventually(lambda: _count(sqlite, issued.record.id) == 3)
        assert guard.usage_recorder is not None
        assert guard.usage_recorder._thread is None  # the lifespan's task flushes, not a thread
    slow = Keysentry(sqlite, secret=SECRET, usage_interval=3600)
    with TestClient(starlette_app(slow)) as client:
        for _ in range(4):
            assert client.get("/", headers=key).status_code == 200
        assert _count(sqlite, issued.record.id) == 3  # an hour's interval: nothing yet
    assert _count(sqlite, issued.record.id) == 7  # written at lifespan.shutdown
    sqlite.close()


def test_close_writes_what_is_pending(store: MemoryStore) -> None:
    guard = Keysentry(store, secret=SECRET, usage_interval=3600)
    issued = guard.issue(name="short-lived")
    client = Client("werkzeug", guard)
    for _ in range(2):
        client.get("/", {"X-API-Key": issued.key.reveal()})
    assert _count(store, issued.record.id) == 0
    guard.close()
    assert _count(store, issued.record.id) == 2


def test_no_usage_recorded_when_turned_off(store: MemoryStore) -> None:
    guard = Keysentry(store, secret=SECRET, usage_interval=None)
    issued = guard.issue(name="quiet")
    Client("werkzeug", guard).get("/", {"X-API-Key": issued.key.reveal()})
    guard.close()
    assert guard.usage_recorder is None
    assert _count(store, issued.record.id) == 0


class FlakyStore(MemoryStore):
    """Refuses usage batches while ``down``."""

    down = False

    def record_usage(self, usage: Mapping[str, Usage], *args: Any, **kwargs: Any) -> None:
        if self.down:
            raise StoreUnavailable("down for the test")
        super().record_usage(usage, *args, **kwargs)


def test_a_batch_the_store_refuses_is_kept_for_the_next_flush() -> None:
    store = FlakyStore()
    clock = [1_000_000.0]
    recorder = UsageRecorder(store, 3600, clock=lambda: clock[0])
    guard = Keysentry(store, secret=SECRET, usage_interval=None)
    record = guard.issue(name="kept").record
    for _ in range(3):
        recorder.note(record.id)
    store.down = True
    with pytest.raises(StoreUnavailable):
        recorder.flush()
    clock[0] += 5
    recorder.note(record.id)
    store.down = False
    assert recorder.flush() == 1
    got = store.get(record.id)
    assert got is not None
    assert got.request_count == 4
    assert got.last_used_at == datetime.fromtimestamp(clock[0], timezone.utc)  # the drain's
    assert recorder.flush() == 0
    recorder.close()


def test_the_interval_must_be_positive(store: MemoryStore) -> None:
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="interval"):
            Keysentry(store, usage_interval=bad)


WORKER = textwrap.dedent(
    """
    import sys, time
    from keysentry import Keysentry
    from keysentry.stores.sql import SQLStore
    from tests.apps import Client

    url, secret, key = sys.argv[1:4]
    guard = Keysentry(SQLStore(url), secret=secret, usage_interval=0.2)
    client = Client("werkzeug", guard)
    for _ in range(50):
        assert client.get("/", {"X-API-Key": key}).status == 200
    print("done", flush=True)
    time.sleep(60)
    """
)


def test_a_killed_process_loses_at_most_one_interval(sqlite: SQLStore) -> None:
    issued = Keysentry(sqlite, secret=SECRET).issue(name="crashing")
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, sqlite.url, SECRET, issued.key.reveal()],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline() == "done\n"
        time.sleep(0.2 * 3)  # a few intervals later the batch is in
        worker.send_signal(signal.SIGKILL)  # no atexit, no shutdown: only what was flushed
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
        if worker.stdout is not None:
            worker.stdout.close()
    assert worker.returncode == -signal.SIGKILL
    assert _count(sqlite, issued.record.id) == 50
    sqlite.close()


def test_a_shutdown_during_a_flush_counts_the_batch_once(sqlite: SQLStore) -> None:
    """lifespan.shutdown while the flusher's write is in progress: written once, not kept
    for a second write too."""
    import asyncio

    guard = Keysentry(sqlite, secret=SECRET, usage_interval=0.05)
    key_id = guard.issue(name="slow").record.id
    writes: list[int] = []
    queries = sqlite._queries  # the one statement both faces run, slowed down
    real = queries.usage

    def slow_write(conn: Any, rows: list[dict[str, Any]], *history: Any) -> None:
        time.sleep(0.3)  # a slow disk, a held write lock
        real(conn, rows, *history)
        writes.append(sum(row["count"] for row in rows))

    queries.usage = slow_write  # type: ignore[method-assign]
    assert guard.usage_recorder is not None
    usage = guard.usage_recorder

    async def scenario() -> None:
        usage.start()  # what lifespan.startup does
        for _ in range(7):
            usage.note(key_id)
        await asyncio.sleep(0.15)  # the flusher's write is now in its worker thread
        await guard.aclose()  # lifespan.shutdown

    asyncio.run(scenario())
    assert writes == [7]
    assert _count(sqlite, key_id) == 7
    sqlite.close()


def test_the_flusher_survives_whatever_the_store_raises(store: MemoryStore) -> None:
    class Hiccup(MemoryStore):
        failures = 2

        def record_usage(self, usage: Mapping[str, Usage], *args: Any, **kwargs: Any) -> None:
            if self.failures:
                self.failures -= 1
                raise RuntimeError("driver hiccup")
            super().record_usage(usage, *args, **kwargs)

    hiccup = Hiccup()
    guard = Keysentry(hiccup, secret=SECRET, usage_interval=0.05)
    issued = guard.issue(name="resilient")
    client = Client("werkzeug", guard)
    for _ in range(5):
        assert client.get("/", {"X-API-Key": issued.key.reveal()}).status == 200
    assert eventually(lambda: _count(hiccup, issued.record.id) == 5)
    assert guard.usage_recorder is not None
    assert guard.usage_recorder.failures == 2
    guard.close()

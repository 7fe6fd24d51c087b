"""SQLStore on SQLite and PostgreSQL: the conformance kit on both faces, both middlewares end to
end, writers racing on one row, and a PostgreSQL whose backends are killed mid-run (SPEC §7).

PostgreSQL tests work in a schema of their own (``kstest_<random>``), dropped at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from keysentry import InsufficientCredits, KeyNotFound, Keysentry, StoreUnavailable
from keysentry.decision import Verdict
from keysentry.ratelimit import MemoryLimiter
from keysentry.stores.base import Usage
from keysentry.stores.sql import SCHEMA_VERSION, SchemaVersionError, SQLStore
from keysentry.stores.url import from_url
from keysentry.testing import AsyncKeyStoreContract, KeyStoreContract, make_record

from .apps import Client, starlette_app
from .conftest import SECRET
from .services import PG_URL, free_port, pg_connect, table_prefix

_pg_connect = pg_connect
_prefix = table_prefix


@pytest.fixture
def pg_store(pg_schema: str) -> Iterator[SQLStore]:
    store = SQLStore(PG_URL, schema=pg_schema, table_prefix=_prefix())
    yield store
    store.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SQLStore]:
    store = SQLStore(f"sqlite:///{tmp_path / 'keys.db'}")
    yield store
    store.close()


# -- the conformance kit -----------------------------------------------------------------------


class TestSQLiteStore(KeyStoreContract):
    @pytest.fixture
    def store(self, sqlite_store: SQLStore) -> SQLStore:
        return sqlite_store


class TestSQLiteStoreAsync(AsyncKeyStoreContract):
    @pytest.fixture
    def store(self, sqlite_store: SQLStore) -> SQLStore:
        return sqlite_store


@pytest.mark.postgres
class TestPostgresStore(KeyStoreContract):
    @pytest.fixture
    def store(self, pg_store: SQLStore) -> SQLStore:
        return pg_store


@pytest.mark.postgres
class TestPostgresStoreAsync(AsyncKeyStoreContract):
    @pytest.fixture
    def store(self, pg_store: SQLStore) -> SQLStore:
        return pg_store


# -- both backends, beyond the kit -------------------------------------------------------------


class Backend:
    """A way to make stores on one database, and to write to it behind the store's back."""

    def __init__(self, name: str, url: str, schema: str | None, path: Path | None) -> None:
        self.name = name
        self.url = url
        self.schema = schema
        self.path = path
        self.prefix = _prefix()

    def store(self, **options: Any) -> SQLStore:
        options.setdefault("table_prefix", self.prefix)
        if self.schema is not None:
            options.setdefault("schema", self.schema)
        return SQLStore(self.url, **options)

    def table(self, name: str) -> str:
        qualified = f'"{self.prefix}{name}"'
        return qualified if self.schema is None else f'"{self.schema}".{qualified}'

    @contextlib.contextmanager
    def outside_transaction(self) -> Iterator[Callable[[str, tuple[Any, ...]], None]]:
        """A transaction on a connection of its own, committed when the block ends."""
        if self.name == "sqlite":
            assert self.path is not None
            lite = sqlite3.connect(self.path, isolation_level=None)
            lite.execute("BEGIN IMMEDIATE")
            try:
                yield lambda sql, args: lite.execute(sql.replace("%s", "?"), args) and None
                lite.execute("COMMIT")
            finally:
                lite.close()
        else:
            with _pg_connect(autocommit=False) as conn:
                yield lambda sql, args: conn.execute(sql, args) and None
                conn.commit()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        path = tmp_path / "keys.db"
        return Backend("sqlite", f"sqlite:///{path}", None, path)
    schema = request.getfixturevalue("pg_schema")
    return Backend("postgres", PG_URL, schema, None)


def test_an_update_waits_for_a_concurrent_writer_and_keeps_its_change(backend: Backend) -> None:
    """The read of update's read-modify-write happens under the write lock: a transaction
    that changed the row first is waited for, and its change survives."""
    store = backend.store()
    try:
        record = make_record(owner="before")
        store.create(record)
        results: list[Any] = []
        with backend.outside_transaction() as execute:
            execute(
                f"UPDATE {backend.table('keys')} SET name = %s WHERE id = %s",  # noqa: S608
                ("outside", record.id),
            )
            worker = threading.Thread(
                target=lambda: results.append(store.update(record.id, {"owner": "after"}))
            )
            worker.start()
            time.sleep(0.3)
            assert worker.is_alive(), "update did not wait for the row's write lock"
        worker.join(5)
        assert not worker.is_alive()
        (updated,) = results
        assert (updated.name, updated.owner) == ("outside", "after")
        assert store.get(record.id) == updated
    finally:
        store.close()


def test_a_writer_holding_the_row_too_long_means_store_unavailable_not_a_hang(
    backend: Backend,
) -> None:
    """``timeout`` bounds each statement (PostgreSQL) and the wait for the write lock
    (SQLite)."""
    store = backend.store(timeout=0.3)
    try:
        record = make_record()
        store.create(record)
        with backend.outside_transaction() as execute:
            execute(f"UPDATE {backend.table('keys')} SET name = %s WHERE id = %s", ("x", record.id))  # noqa: S608
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                store.update(record.id, {"disabled": True})
            assert time.monotonic() - started < 2.0
        assert store.update(record.id, {"disabled": True}).name == "x"
    finally:
        store.close()


def test_the_two_faces_and_two_stores_see_each_others_writes(backend: Backend) -> None:
    one, other = backend.store(), backend.store()
    try:
        written_sync = make_record(owner="faces")
        one.create(written_sync)

        async def main() -> Any:
            assert await one.aget(written_sync.id) == written_sync
            assert await other.aget(written_sync.id) == written_sync
            written_async = make_record(owner="faces")
            await one.acreate(written_async)
            await other.aupdate(written_sync.id, {"name": "changed by the other store"})
            await one.aclose()
            await other.aclose()
            return written_async

        written_async = asyncio.run(main())
        assert other.get(written_async.id) == written_async
        got = one.get(written_sync.id)
        assert got is not None
        assert got.name == "changed by the other store"
        assert [r.id for r in other.list_keys(owner="faces")] == sorted(
            [written_sync.id, written_async.id]
        )
        if backend.path is not None:
            with contextlib.closing(sqlite3.connect(backend.path)) as lite:
                assert lite.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        one.close()
        other.close()


def test_the_schema_version_is_recorded_and_a_newer_one_refused(backend: Backend) -> None:
    store = backend.store()
    try:
        store.create(make_record())
        version_table = backend.table("schema")
        if backend.name == "sqlite":
            assert backend.path is not None
            with contextlib.closing(sqlite3.connect(backend.path)) as lite:
                rows = lite.execute(f"SELECT component, version FROM {version_table}").fetchall()  # noqa: S608
        else:
            with _pg_connect() as conn:
                rows = conn.execute(f"SELECT component, version FROM {version_table}").fetchall()  # noqa: S608
        assert rows == [("keys", SCHEMA_VERSION)]
        with backend.outside_transaction() as execute:
            execute(f"UPDATE {version_table} SET version = %s", (SCHEMA_VERSION + 1,))  # noqa: S608
    finally:
        store.close()
    newer = backend.store()
    try:
        with pytest.raises(SchemaVersionError, match="upgrade keysentry"):
            newer.get("nosuchkeyid0")
        with pytest.raises(StoreUnavailable):  # and so a 503, never a 500, for requests
            asyncio.run(newer.aget("nosuchkeyid0"))
    finally:
        newer.close()


def test_a_version_1_table_is_migrated_in_place_and_keeps_its_keys(backend: Backend) -> None:
    record = make_record(owner="old", credits=4)
    store = backend.store()
    try:
        store.create(record)
    finally:
        store.close()
    # What release 0.1 wrote: no request_count, rotated_to, credits_from, line or digest_mode;
    # version 1. Its records read back with an unknown digest mode.
    record = dataclasses.replace(record, digest_mode=None)
    with backend.outside_transaction() as execute:
        for column in ("refill_amount", "refill_interval", "refill_add", "refilled_at"):
            execute(f"ALTER TABLE {backend.table('keys')} DROP COLUMN {column}", ())
        execute(f"ALTER TABLE {backend.table('keys')} DROP COLUMN digest_mode", ())
        execute(f"ALTER TABLE {backend.table('keys')} DROP COLUMN line", ())
        execute(f"ALTER TABLE {backend.table('keys')} DROP COLUMN request_count", ())
        execute(f"ALTER TABLE {backend.table('keys')} DROP COLUMN rotated_to", ())
        execute(f"ALTER TABLE {backend.table('keys')} DROP COLUMN credits_from", ())
        execute(f"UPDATE {backend.table('schema')} SET version = %s", (1,))  # noqa: S608
    migrated = backend.store()
    try:
        assert migrated.get(record.id) == record
        assert migrated.spend_credits(record.id) == 3
        when = record.created_at
        migrated.record_usage({record.id: Usage(2, when)})
        got = migrated.get(record.id)
        assert got is not None
        assert (got.request_count, got.last_used_at, got.credits) == (2, when, 3)
        migrated.update(record.id, {"rotated_to": "successor000"})
    finally:
        migrated.close()
    again = backend.store()  # a second start finds the current version and changes nothing
    try:
        got = again.get(record.id)
        assert got is not None
        assert got.rotated_to == "successor000"
    finally:
        again.close()


def test_a_version_2_table_is_migrated_in_place_and_its_lines_still_share(
    backend: Backend,
) -> None:
    """Version 3 added ``line``. A version-2 table keeps every row; its successors, which
    name only ``credits_from``, still share their line's rate-limit state, and a rotation
    after the migration names the line's first key."""
    first = make_record(owner="v2", credits=5)
    second = make_record(owner="v2", credits_from=first.id)
    first = dataclasses.replace(first, rotated_to=second.id)
    plain = make_record(owner="v2", request_count=3)
    store = backend.store()
    try:
        for record in (first, second, plain):
            store.create(record)
    finally:
        store.close()
    # What version 2 held: no line, no digest_mode.
    first, second, plain = (
        dataclasses.replace(r, digest_mode=None) for r in (first, second, plain)
    )
    with backend.outside_transaction() as execute:
        for column in ("refill_amount", "refill_interval", "refill_add", "refilled_at"):
            execute(f"ALTER TABLE {backend.table('keys')} DROP COLUMN {column}", ())
        execute(f"ALTER TABLE {backend.table('keys')} DROP COLUMN digest_mode", ())
        execute(f"ALTER TABLE {backend.table('keys')} DROP COLUMN line", ())
        execute(f"UPDATE {backend.table('schema')} SET version = %s", (2,))  # noqa: S608
    migrated = backend.store()
    try:
        assert [migrated.get(r.id) for r in (first, second, plain)] == [first, second, plain]
        got = migrated.get(second.id)
        assert got is not None
        assert (got.line, got.line_id) == (None, first.id)
        ks = Keysentry(migrated, secret=SECRET, usage_interval=None)
        third = ks.rotate(second.id, grace=60)
        assert (third.record.line, third.record.credits_from) == (first.id, first.id)
        assert migrated.get(third.record.id) == third.record
        assert migrated.spend_credits(first.id) == 4
    finally:
        migrated.close()
    version_table = backend.table("schema")
    if backend.path is not None:
        with contextlib.closing(sqlite3.connect(backend.path)) as lite:
            rows = lite.execute(f"SELECT component, version FROM {version_table}").fetchall()  # noqa: S608
    else:
        with _pg_connect() as conn:
            rows = conn.execute(f"SELECT component, version FROM {version_table}").fetchall()  # noqa: S608
    assert rows == [("keys", SCHEMA_VERSION)] == [("keys", 6)]
    again = backend.store()  # a second start finds version 6 and changes nothing
    try:
        assert again.get(third.record.id) == third.record
        assert again.get(plain.id) == plain
    finally:
        again.close()


def test_a_version_3_table_gains_the_digest_mode_and_its_keys_still_verify(
    backend: Backend,
) -> None:
    """Version 4 added ``digest_mode``. A version-3 table keeps every row, whose mode reads
    as unknown and whose keys verify as before; keys created after the migration say how
    they were digested."""
    store = backend.store()
    ks = Keysentry(store, secret=SECRET, usage_interval=None)
    try:
        old = ks.issue(name="before", owner="v3")
    finally:
        store.close()
    with backend.outside_transaction() as execute:
        for column in ("refill_amount", "refill_interval", "refill_add", "refilled_at"):
            execute(f"ALTER TABLE {backend.table('keys')} DROP COLUMN {column}", ())
        execute(f"ALTER TABLE {backend.table('keys')} DROP COLUMN digest_mode", ())
        execute(f"UPDATE {backend.table('schema')} SET version = %s", (3,))  # noqa: S608
    migrated = backend.store()
    try:
        ks = Keysentry(migrated, secret=SECRET, usage_interval=None)
        got = migrated.get(old.record.id)
        assert got == dataclasses.replace(old.record, digest_mode=None)
        verdict = ks.authenticate(old.key.reveal().encode())
        assert isinstance(verdict, Verdict)
        assert verdict.record.id == old.record.id
        new = ks.issue(name="after", owner="v3")
        assert migrated.get(new.record.id) == new.record
        assert new.record.digest_mode == "hmac-sha256"
        unkeyed = Keysentry(migrated, usage_interval=None).issue(name="plain")
        assert migrated.get(unkeyed.record.id).digest_mode == "sha256"  # type: ignore[union-attr]
    finally:
        migrated.close()


def test_a_version_5_store_gains_the_usage_table_and_keeps_its_keys(backend: Backend) -> None:
    """Version 6 added the usage history table. A version-5 store (no such table) keeps its
    keys and counts, starts its history on first use, and is then at version 6."""
    store = backend.store()
    record = make_record(owner="v5", request_count=7)
    try:
        store.create(record)
    finally:
        store.close()
    with backend.outside_transaction() as execute:
        execute(f"DROP TABLE {backend.table('usage')}", ())
        execute(f"UPDATE {backend.table('schema')} SET version = %s", (5,))  # noqa: S608
    migrated = backend.store()
    try:
        assert migrated.get(record.id) == record
        day = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
        migrated.record_usage({record.id: Usage(2, day)}, {record.id: {"/v1/me": 2}})
        used = migrated.usage_history([record.id], day.date())[record.id]
        assert [(u.day, u.requests, dict(u.routes)) for u in used] == [
            (day.date(), 2, {"/v1/me": 2})
        ]
        assert migrated.get(record.id).request_count == 9  # type: ignore[union-attr]
    finally:
        migrated.close()
    again = backend.store()  # a second start finds version 6 and changes nothing
    try:
        assert again.usage_history([record.id], day.date())[record.id][0].requests == 2
    finally:
        again.close()


def test_usage_history_of_more_keys_than_one_statement_takes(backend: Backend) -> None:
    """A flush of, and a read about, more ids than one ``IN (...)`` list holds."""
    store = backend.store()
    try:
        records = [make_record() for _ in range(520)]  # _IN_CHUNK is 500
        for record in records:
            store.create(record)
        day = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
        usage = {r.id: Usage(i % 7 + 1, day) for i, r in enumerate(records)}
        store.record_usage({**usage, "nosuchkeyid0": Usage(1, day)}, {records[0].id: {"/": 1}})
        read = store.usage_history([r.id for r in records], day.date())
        assert {key_id: [d.requests for d in days] for key_id, days in read.items()} == {
            key_id: [used.requests] for key_id, used in usage.items()
        }
    finally:
        store.close()


@pytest.mark.parametrize("framework", ["starlette", "flask"])
def test_end_to_end(backend: Backend, framework: str) -> None:
    """Keysentry(SQLStore) guards a Starlette app (async face) and a Flask app (sync face)."""
    store = backend.store()
    try:
        ks = Keysentry(store, secret=SECRET, exempt=["/health"])
        issued = ks.issue(name="e2e", owner="acct_sql", scopes=["read"], metadata={"plan": "pro"})
        key = issued.key.reveal()
        client = Client(framework, ks)
        r = client.get("/", {"Authorization": f"Bearer {key}"})
        assert r.status == 200, r.body
        assert r.body == {
            "id": issued.record.id,
            "name": "e2e",
            "owner": "acct_sql",
            "scopes": ["read"],
            "metadata": {"plan": "pro"},
        }
        assert client.get("/health").status == 200
        other = ks.new_key(name="never stored").key.reveal()
        assert client.get("/", {"X-API-Key": other}).code == "INVALID_API_KEY"
        ks.revoke(issued.record.id)
        assert client.get("/", {"X-API-Key": key}).status == 401
        assert store.get(issued.record.id).revoked  # type: ignore[union-attr]
    finally:
        store.close()


# -- configuration -----------------------------------------------------------------------------


def test_from_url_picks_the_sql_store(tmp_path: Path) -> None:
    store = from_url(f"sqlite:///{tmp_path / 'k.db'}")
    assert isinstance(store, SQLStore)
    store.close()
    for url in (
        "postgresql://app:s3cret@db.example/keys",
        "postgres://app:s3cret@db.example/keys",
        "postgresql+psycopg://app:s3cret@db.example/keys",
        "postgres+psycopg://app:s3cret@db.example/keys",
    ):
        store = from_url(url, schema="keys")
        assert isinstance(store, SQLStore)
        assert "s3cret" not in repr(store)
        assert "app:***@db.example" in repr(store)
    with pytest.raises(ValueError, match="memory://"):
        from_url("sqlite://")
    with pytest.raises(ValueError, match="memory://"):
        from_url("sqlite:///:memory:")
    with pytest.raises(ValueError, match="psycopg"):
        from_url("postgresql+asyncpg://db/keys")
    with pytest.raises(ValueError, match="unsupported store URL scheme 'mysql'"):
        from_url("mysql://db/keys")
    with pytest.raises(ValueError, match="schema= is for PostgreSQL"):
        SQLStore(f"sqlite:///{tmp_path / 'k.db'}", schema="x")


def test_importing_keysentry_does_not_import_sqlalchemy() -> None:
    code = (
        "import sys, keysentry, keysentry.stores.sql\n"
        "assert 'sqlalchemy' not in sys.modules, 'sqlalchemy imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_an_unreachable_database_is_store_unavailable_and_trips_the_breaker(
    tmp_path: Path,
) -> None:
    store = SQLStore(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}", failures=2)
    try:
        with pytest.raises(StoreUnavailable, match="OperationalError"):
            store.get("nosuchkeyid0")

        async def acreate() -> None:
            with pytest.raises(StoreUnavailable):
                await store.acreate(make_record())

        asyncio.run(acreate())
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="circuit is open"):
            store.get("nosuchkeyid0")
        assert time.monotonic() - started < 0.1
    finally:
        store.close()

    store = SQLStore(f"postgresql://postgres@127.0.0.1:{free_port()}/test", timeout=1.0)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.get("nosuchkeyid0")
        with pytest.raises(StoreUnavailable):
            asyncio.run(store.aget("nosuchkeyid0"))
        assert time.monotonic() - started < 5
    finally:
        store.close()


# -- PostgreSQL under fire ---------------------------------------------------------------------


WRITER = textwrap.dedent(
    """
    import sys
    from keysentry.stores.sql import SQLStore

    url, schema, prefix, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    ids = sys.argv[5:]
    store = SQLStore(url, schema=schema, table_prefix=prefix, timeout=10.0)
    for i in range(n):
        for key_id in ids:
            store.update(key_id, {"owner": f"p{i:04d}"})
    store.close()
    """
)


@pytest.mark.postgres
def test_racing_writers_in_two_threads_and_a_process_lose_nothing(pg_schema: str) -> None:
    """Three writers each own one field of the same rows. A lost update (a stale row written
    back) would show as another writer's field going backwards, or missing at the end."""
    prefix = _prefix()
    store = SQLStore(PG_URL, schema=pg_schema, table_prefix=prefix, timeout=10.0)
    try:
        records = [make_record(name="a0000", owner="p0000", metadata={"b": 0}) for _ in range(3)]
        for r in records:
            store.create(r)
        ids = [r.id for r in records]
        n = 60
        process = subprocess.Popen(
            [sys.executable, "-c", WRITER, PG_URL, pg_schema, prefix, str(n), *ids]
        )
        confirmed = {"a": 0, "b": 0}
        errors: list[str] = []

        def value(record: Any, writer: str) -> int:
            return int(record.name[1:]) if writer == "a" else int(record.metadata["b"])

        def write(writer: str) -> None:
            other = "b" if writer == "a" else "a"
            try:
                for i in range(1, n + 1):
                    for key_id in ids:
                        seen = confirmed[other]
                        changes: Any = (
                            {"name": f"a{i:04d}"} if writer == "a" else {"metadata": {"b": i}}
                        )
                        updated = store.update(key_id, changes)
                        if value(updated, writer) != i or value(updated, other) < seen:
                            errors.append(f"{writer}{i}: {updated.name} {updated.metadata}")
                    confirmed[writer] = i
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(repr(exc))

        threads = [threading.Thread(target=write, args=(w,)) for w in "ab"]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert process.wait(30) == 0
        assert errors == []
        for r in records:
            got = store.get(r.id)
            assert got is not None
            assert (got.name, got.metadata["b"], got.owner) == ("a0060", 60, f"p{n - 1:04d}")
    finally:
        store.close()


@pytest.mark.postgres
def test_terminated_backends_mean_503_at_worst_and_the_store_recovers(pg_schema: str) -> None:
    """Every backend of the store is killed again and again while requests run through both
    middlewares; every request is answered (200, or 503 for a key not in the cache) without
    hanging, and once the killing stops requests succeed again with no restart."""
    app_name = f"kstest-{uuid.uuid4().hex[:10]}"
    store = SQLStore(
        PG_URL,
        schema=pg_schema,
        table_prefix=_prefix(),
        timeout=1.0,
        application_name=app_name,
        cooldown=0.5,
    )
    ks = Keysentry(store, secret=SECRET)
    issued = [ks.issue(name=f"k{i}") for i in range(4)]
    flask = Client("flask", ks)
    statuses: list[int] = []
    slowest = 0.0
    killed = 0
    stop = threading.Event()

    def killer() -> None:
        nonlocal killed
        with _pg_connect() as conn:
            while not stop.is_set():
                rows = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s",
                    (app_name,),
                ).fetchall()
                killed += sum(1 for (ok,) in rows if ok)
                time.sleep(0.02)

    def request(client: Any, asgi: bool) -> int:
        nonlocal slowest
        item = issued[len(statuses) % len(issued)]
        ks.invalidate(item.record)  # a cache miss every time: each request asks the store
        started = time.monotonic()
        headers = {"Authorization": f"Bearer {item.key.reveal()}"}
        status = (
            client.get("/", headers=headers).status_code
            if asgi
            else client.get("/", headers).status
        )
        slowest = max(slowest, time.monotonic() - started)
        statuses.append(status)
        return int(status)

    try:
        with TestClient(starlette_app(ks)) as starlette:  # one event loop, as in a server
            assert request(starlette, True) == 200
            assert request(flask, False) == 200
            thread = threading.Thread(target=killer)
            thread.start()
            try:
                deadline = time.monotonic() + 1.5
                while time.monotonic() < deadline:
                    request(starlette, True)
                    request(flask, False)
            finally:
                stop.set()
                thread.join(10)
            assert killed > 0
            assert set(statuses) <= {200, 503}, statuses
            assert slowest < 5.0
            # Recovery: within a breaker cooldown or two, then for good.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (
                request(starlette, True) != 200 or request(flask, False) != 200
            ):
                time.sleep(0.1)
            assert [request(starlette, True) for _ in range(5)] == [200] * 5
            assert [request(flask, False) for _ in range(5)] == [200] * 5
        print(json.dumps({"killed": killed, "requests": len(statuses), "503": statuses.count(503)}))
    finally:
        store.close()


def test_credits_on_a_sqlite_without_returning(sqlite_store: SQLStore) -> None:
    """SQLite before 3.35 (still shipped with some Python 3.10 builds) has no RETURNING."""
    record = make_record(credits=2)
    sqlite_store.create(record)
    writer = sqlite_store._faces().write
    writer.dialect.update_returning = False
    assert sqlite_store.spend_credits(record.id) == 1
    assert sqlite_store.spend_credits(record.id) == 0
    with pytest.raises(InsufficientCredits):
        sqlite_store.spend_credits(record.id)
    assert sqlite_store.spend_credits(record.id, -1) == 1
    unlimited = make_record()
    sqlite_store.create(unlimited)
    assert sqlite_store.spend_credits(unlimited.id) is None
    with pytest.raises(KeyNotFound):
        sqlite_store.spend_credits("nosuchkeyid0")


@pytest.mark.parametrize("framework", ["starlette", "flask"])
def test_a_rotation_line_shares_one_rate_limit(backend: Backend, framework: str) -> None:
    """A -> B -> C rotated on this store, each in its grace period: 5/minute for the three
    together, through the async face (Starlette) and the blocking one (Flask)."""
    store = backend.store()
    try:
        ks = Keysentry(store, secret=SECRET, limiter=MemoryLimiter(), usage_interval=None)
        a = ks.issue(name="line", rate_limit="5/minute")
        b = ks.rotate(a.record.id, grace=3600)
        c = ks.rotate(b.record.id, grace=3600)
        assert [ks.get(k.record.id).line for k in (a, b, c)] == [None, a.record.id, a.record.id]
        client = Client(framework, ks)
        order = (a, b, c, b, a, c, b, a)
        statuses = [client.get("/", {"X-API-Key": k.key.reveal()}).status for k in order]
        assert statuses == [200] * 5 + [429] * 3
    finally:
        store.close()


# -- pools: settings, no pool, engines of one's own, dropped connections -----------------------


def _app_name() -> str:
    return f"kstest-{uuid.uuid4().hex[:10]}"


def _backends(app_name: str, terminate: bool = False) -> int:
    """How many connections named ``app_name`` the server has (or terminated)."""
    with _pg_connect() as conn:
        what = "count(pg_terminate_backend(pid))" if terminate else "count(*)"
        row = conn.execute(
            f"SELECT {what} FROM pg_stat_activity WHERE application_name = %s",  # noqa: S608
            (app_name,),
        ).fetchone()
    return int(row[0])


@pytest.mark.postgres
def test_pool_settings_in_the_url_take_effect(pg_schema: str) -> None:
    app_name = _app_name()
    url = (
        f"{PG_URL}?pool_size=1&max_overflow=1&pool_timeout=0.5&pool_recycle=60"
        f"&application_name={app_name}"
    )
    store = SQLStore(url, schema=pg_schema, table_prefix=_prefix())
    try:
        record = make_record()
        store.create(record)
        pool: Any = store._faces().write.pool
        assert (pool.size(), pool._max_overflow, pool._timeout, pool._recycle) == (1, 1, 0.5, 60)
        errors: list[BaseException] = []

        def lookups() -> None:
            try:
                for _ in range(30):
                    assert store.get(record.id) == record
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=lookups) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        assert _backends(app_name) == 1  # the overflow connection was closed when returned

        async def main() -> None:
            assert await store.aget(record.id) == record
            engine: Any = (await store._afaces()).write
            assert (engine.pool.size(), engine.pool._max_overflow) == (1, 1)
            await store.aclose()

        asyncio.run(main())
    finally:
        store.close()
    assert _backends(app_name) == 0


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("pool_size=0", "pool_size in the URL must be a whole number >= 1 .*poolclass=null"),
        ("pool_size=two", "pool_size in the URL must be a whole number"),
        ("max_overflow=-1", "max_overflow in the URL must be a whole number >= 0"),
        ("pool_timeout=0", "pool_timeout in the URL must be a positive number of seconds"),
        ("pool_recycle=inf", "pool_recycle in the URL must be a positive number of seconds"),
        ("poolclass=static", "poolclass in the URL must be NullPool or 'null'"),
        ("poolclass=null&pool_size=2", "pool_size means nothing without a pool"),
        ("pool_size=1&pool_size=2", "pool_size is given more than once"),
    ],
)
def test_pool_settings_in_the_url_are_checked(tmp_path: Path, query: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SQLStore(f"sqlite:///{tmp_path / 'k.db'}?{query}")


def test_pool_settings_as_arguments(tmp_path: Path) -> None:
    from sqlalchemy.pool import NullPool

    url = f"sqlite:///{tmp_path / 'k.db'}"
    with pytest.raises(ValueError, match="both in the database URL and as an argument"):
        SQLStore(f"{url}?pool_size=1", pool_size=2)
    with pytest.raises(ValueError, match="max_overflow argument must be a whole number"):
        SQLStore(url, max_overflow=1.5)
    with pytest.raises(ValueError, match="must be NullPool"):
        SQLStore(url, poolclass=object)
    store = SQLStore(url, pool_size=1, max_overflow=0, pool_recycle=5)
    try:
        assert store.pool_settings == {
            "pool_size": 1, "max_overflow": 0, "pool_timeout": 2.0, "pool_recycle": 5.0,
        }  # fmt: skip
        record = make_record(credits=3)
        store.create(record)
        assert store.spend_credits(record.id) == 2
    finally:
        store.close()
    store = SQLStore(url, poolclass=NullPool)
    try:
        assert store.get(record.id) is not None
        assert isinstance(store._faces().write.pool, NullPool)
    finally:
        store.close()


@pytest.fixture
def pg_null_store(pg_schema: str) -> Iterator[SQLStore]:
    store = SQLStore(f"{PG_URL}?poolclass=null", schema=pg_schema, table_prefix=_prefix())
    yield store
    store.close()


@pytest.mark.postgres
class TestPostgresStoreWithoutPool(KeyStoreContract):
    """``?poolclass=null``: a connection per call, as behind PgBouncer."""

    @pytest.fixture
    def store(self, pg_null_store: SQLStore) -> SQLStore:
        return pg_null_store


@pytest.mark.postgres
class TestPostgresStoreWithoutPoolAsync(AsyncKeyStoreContract):
    @pytest.fixture
    def store(self, pg_null_store: SQLStore) -> SQLStore:
        return pg_null_store


@pytest.mark.postgres
def test_without_a_pool_no_connection_stays_open(pg_schema: str) -> None:
    app_name = _app_name()
    store = SQLStore(
        f"{PG_URL}?poolclass=null&application_name={app_name}",
        schema=pg_schema,
        table_prefix=_prefix(),
    )
    try:
        ks = Keysentry(store, secret=SECRET, usage_interval=None)
        issued = ks.issue(name="nopool", credits=5)
        for framework in ("flask", "starlette"):
            client = Client(framework, ks)
            assert client.get("/", {"X-API-Key": issued.key.reveal()}).status == 200
        assert _backends(app_name) == 0
    finally:
        store.close()


@pytest.mark.postgres
def test_engines_of_ones_own(pg_schema: str) -> None:
    from sqlalchemy import create_engine

    app_name = _app_name()
    url = PG_URL.replace("postgresql://", "postgresql+psycopg://")
    engine = create_engine(
        url, hide_parameters=True, pool_size=1, connect_args={"application_name": app_name}
    )
    store = SQLStore(engine=engine, schema=pg_schema, table_prefix=_prefix())
    try:
        record = make_record()
        store.create(record)
        assert asyncio.run(store.aget(record.id)) == record  # its own engine, from the URL
        store.close()
        assert _backends(app_name) == 1  # the user's engine is the user's to close
        assert store.get(record.id) == record
    finally:
        store.close()
        engine.dispose()
    with pytest.raises(ValueError, match="hide_parameters=True"):
        SQLStore(engine=create_engine(url))
    with pytest.raises(ValueError, match="a URL or an engine, not both"):
        SQLStore(url, engine=engine)
    with pytest.raises(ValueError, match="engine= is for PostgreSQL"):
        SQLStore(engine=create_engine("sqlite:///x.db", hide_parameters=True))


@pytest.mark.postgres
def test_a_dropped_connection_costs_no_failed_call(pg_schema: str) -> None:
    """No ping before use: a call whose pooled connection was terminated is retried once on
    a fresh one, a read and a credit spend alike, each spend counted once."""
    app_name = _app_name()
    store = SQLStore(
        PG_URL, schema=pg_schema, table_prefix=_prefix(), application_name=app_name, failures=1
    )
    try:
        record = make_record(credits=100)
        store.create(record)
        for i in range(5):
            assert _backends(app_name, terminate=True) >= 1
            assert store.get(record.id) is not None
            assert _backends(app_name, terminate=True) >= 1
            assert store.spend_credits(record.id) == 99 - i

        async def main() -> None:
            assert await store.aget(record.id) is not None
            for i in range(5):
                assert _backends(app_name, terminate=True) >= 1
                assert await store.afind_by_digest(record.digest) is not None
                assert _backends(app_name, terminate=True) >= 1
                assert await store.aspend_credits(record.id) == 94 - i
            await store.aclose()

        asyncio.run(main())
        assert store.breaker.state == "closed"
        got = store.get(record.id)
        assert got is not None
        assert got.credits == 90
    finally:
        store.close()


@pytest.mark.postgres
def test_a_spend_whose_connection_dies_mid_statement_counts_once(pg_schema: str) -> None:
    """The spend's UPDATE waits for a row lock held elsewhere when its backend is
    terminated: PostgreSQL committed nothing, so the retry on a fresh connection is the only
    spend."""
    app_name = _app_name()
    backend = Backend("postgres", PG_URL, pg_schema, None)
    store = backend.store(application_name=app_name, timeout=5.0)
    try:
        record = make_record(credits=10)
        store.create(record)
        results: list[Any] = []
        with backend.outside_transaction() as execute:
            execute(f"SELECT 1 FROM {backend.table('keys')} WHERE id = %s FOR UPDATE", (record.id,))  # noqa: S608
            worker = threading.Thread(target=lambda: results.append(store.spend_credits(record.id)))
            worker.start()
            time.sleep(0.3)
            assert worker.is_alive(), "the spend did not wait for the row lock"
            assert _backends(app_name, terminate=True) == 1
            time.sleep(0.2)
        worker.join(10)
        assert results == [9]
        got = store.get(record.id)
        assert got is not None
        assert got.credits == 9
    finally:
        store.close()


# -- SQLite under concurrent writers -----------------------------------------------------------


SQLITE_WRITER = textwrap.dedent(
    """
    import json, random, sys, time
    from datetime import datetime, timezone
    from keysentry.errors import StoreUnavailable
    from keysentry.stores.base import Usage
    from keysentry.stores.sql import SQLStore

    url, role, seconds, ids = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:]
    store = SQLStore(url)
    spent = reads = 0
    failures = []
    slowest = 0.0
    usage = {}
    flushed = time.monotonic()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        key_id = random.choice(ids)
        started = time.monotonic()
        try:
            if role == "reader":
                store.get(key_id)
                reads += 1
            else:
                store.spend_credits(key_id)
                spent += 1
                count = usage[key_id][0] if key_id in usage else 0
                usage[key_id] = Usage(count + 1, datetime.now(timezone.utc))
                if time.monotonic() - flushed > 0.05:
                    store.record_usage(usage)
                    usage, flushed = {}, time.monotonic()
        except StoreUnavailable as exc:
            failures.append(str(exc))
        slowest = max(slowest, time.monotonic() - started)
    if usage:
        store.record_usage(usage)
    store.close()
    print(json.dumps({"spent": spent, "reads": reads, "failures": failures, "slowest": slowest}))
    """
)


def test_sqlite_writer_processes_never_see_a_locked_database(tmp_path: Path) -> None:
    """Four processes spend credits and flush usage on the same keys while a fifth reads: no
    StoreUnavailable ("database is locked"), and every spend and use counted exactly."""
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    store = SQLStore(url)
    try:
        records = [make_record(credits=1_000_000) for _ in range(3)]
        for record in records:
            store.create(record)
        ids = [r.id for r in records]
        roles = ["writer"] * 4 + ["reader"]
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", SQLITE_WRITER, url, role, "3", *ids],
                stdout=subprocess.PIPE,
            )
            for role in roles
        ]
        results = [json.loads(p.communicate(timeout=60)[0]) for p in processes]
        assert all(p.returncode == 0 for p in processes)
        assert [r["failures"] for r in results] == [[]] * 5
        spent = sum(r["spent"] for r in results)
        assert spent > 0
        assert results[-1]["reads"] > 0
        got = [store.get(key_id) for key_id in ids]
        assert sum(1_000_000 - (g.credits or 0) for g in got if g is not None) == spent
        assert sum(g.request_count for g in got if g is not None) == spent
        print(json.dumps({"spent": spent, "slowest": max(r["slowest"] for r in results)}))
    finally:
        store.close()


def test_sqlite_async_reads_neither_wait_for_a_writer_nor_fail_on_a_busy_file(
    tmp_path: Path,
) -> None:
    """The async face reads SQLite on the event loop: a writer holding the write lock does not
    hold it up (WAL), and a file locked outright (an exclusive lock) sends the read to a worker
    thread, where it waits for the lock as before instead of failing."""
    path = tmp_path / "keys.db"
    store = SQLStore(f"sqlite:///{path}", timeout=5.0)
    try:
        record = make_record()
        store.create(record)

        async def read() -> Any:
            return await store.aget(record.id), await store.aget("nosuchkeyid0")

        lite = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            lite.execute("BEGIN IMMEDIATE")
            lite.execute("UPDATE keysentry_keys SET name = 'x'")
            started = time.monotonic()
            assert asyncio.run(read()) == (record, None)
            assert time.monotonic() - started < 0.5
            lite.execute("ROLLBACK")
            store.close()  # an exclusive lock waits for every other connection to close
            lite.execute("PRAGMA locking_mode = EXCLUSIVE")
            lite.execute("BEGIN EXCLUSIVE")
            lite.execute("UPDATE keysentry_keys SET name = 'y'")
            lite.execute("COMMIT")  # the exclusive lock stays until the connection closes
            threading.Timer(0.3, lite.close).start()
            started = time.monotonic()
            got, missing = asyncio.run(read())
            assert time.monotonic() - started >= 0.25
            assert (got.name, missing) == ("y", None)
        finally:
            lite.close()
    finally:
        store.close()


@pytest.mark.postgres
def test_a_write_that_loses_its_connection_at_commit_is_not_retried(pg_schema: str) -> None:
    """Past COMMIT the store cannot know whether the spend was applied, so it answers
    StoreUnavailable rather than spend again (here the backend dies just before COMMIT, so
    nothing was applied: the balance is as before)."""
    from sqlalchemy import event

    store = SQLStore(PG_URL, schema=pg_schema, table_prefix=_prefix())
    try:
        record = make_record(credits=10)
        store.create(record)
        engine = store._faces().write

        killed: list[int] = []

        def kill_before_commit(conn: Any) -> None:
            if killed:  # once: a retry would then succeed, and spend a second time
                return
            pid = conn.connection.driver_connection.info.backend_pid
            killed.append(pid)
            with _pg_connect() as other:
                other.execute("SELECT pg_terminate_backend(%s)", (pid,))
            time.sleep(0.05)

        event.listen(engine, "commit", kill_before_commit)
        try:
            with pytest.raises(StoreUnavailable):
                store.spend_credits(record.id)
        finally:
            event.remove(engine, "commit", kill_before_commit)
        assert len(killed) == 1
        got = store.get(record.id)
        assert got is not None
        assert got.credits == 10
        assert store.spend_credits(record.id) == 9
    finally:
        store.close()

"""The SQL store: SQLite as the embedded default, PostgreSQL for production (SQLAlchemy Core).

``SQLStore("sqlite:///keys.db")`` or ``SQLStore("postgresql://user:pass@host/db")``. One store
offers both faces: a blocking engine for WSGI, the CLI and scripts (``sqlite3``, ``psycopg``)
and, for ASGI, an asyncio engine on PostgreSQL (``psycopg``'s async connection) or, on SQLite,
the blocking engine: writes on worker threads, reads on the event loop itself (a WAL read waits
for no writer; one that would wait goes to a thread); each is made on first use from the URL.
SQLAlchemy is imported when a store is made, never by ``import keysentry``.

Tables (created on first use, if missing):

* ``<prefix>keys``: one row per key, one column per :data:`keysentry.stores.codec.FIELDS`,
  in the codec's encoding: lists and mappings as JSON text, timestamps as UTC ISO 8601 text on
  SQLite and ``timestamptz`` on PostgreSQL. Primary key ``id`` (``COLLATE "C"`` on
  PostgreSQL, so listing is in code-point order everywhere); a unique index on ``digest``; an
  index on ``(owner, id)`` for listing one owner's keys.
* ``<prefix>usage``: usage history, one row per key, UTC day and route template (``""`` for
  the day's total), with its request count, incremented by upserts (``INSERT ... ON CONFLICT
  DO UPDATE``) in the usage flush's transaction; rows older than the retention are deleted by
  the flush that first sees a new cut-off day (once a day per process). A deleted key's rows
  go with it.
* ``<prefix>schema``: the version of that layout (:data:`SCHEMA_VERSION`), so a later release
  can migrate; a store refuses tables written by a newer release (:class:`SchemaVersionError`).

``update`` reads the row under a write lock (``SELECT ... FOR UPDATE`` on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite), applies the changes and writes it back in one transaction, so
concurrent updates from threads and processes lose nothing; ``delete`` reads and removes the
row the same way.

Every failure to reach the database (refused or dropped connections, timeouts, a locked SQLite
file, an exhausted pool) raises :class:`~keysentry.errors.StoreUnavailable`, which the
middleware answers with 503 (or with a cached record). Timeouts are short: ``timeout``
bounds connecting, each PostgreSQL statement (``statement_timeout``), waiting for a pooled
connection and waiting for SQLite's write lock. Pooled connections are not pinged before use
(a round trip per call): a call that finds its connection dead (a restarted server, a
terminated backend) is retried once on a fresh one, a read always, a write when it failed
before its COMMIT was sent (PostgreSQL applied none of it then, so a credit spend counts
once). A circuit breaker stops calls for ``cooldown`` seconds after ``failures`` consecutive
failures, so a dead server costs one timeout per cooldown instead of one per request.

Connections: each engine pools ``pool_size`` (2) connections and opens up to ``max_overflow``
(3) more under load; on PostgreSQL the blocking face has one engine and the async face one per
event loop. The settings come from arguments or from the URL (``?pool_size=1&max_overflow=0``,
taken out before the driver sees it); ``poolclass=NullPool`` / ``?poolclass=null`` opens a
connection per call (behind PgBouncer). ``engine=`` / ``async_engine=`` use engines of yours.

SQLite's write lock is taken by ``BEGIN IMMEDIATE``, retried with short random pauses instead
of SQLite's busy handler (whose pauses grow to 100 ms and starve a waiter under steady
contention); a usage flush waits for it up to :data:`FLUSH_WAIT` seconds, a request's write
``timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from functools import cache, partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from .._urls import safe_url, scrub
from ..accounts import (
    AccountChanges,
    AccountRecord,
    changed_account,
    decode_account,
    encode_account,
)
from ..breaker import CircuitBreaker, Guarded
from ..errors import DuplicateKey, InsufficientCredits, KeyNotFound, StoreUnavailable
from ..history import DEFAULT_RETENTION_DAYS, DailyUsage, utc_day
from ..keys import shown_id
from ..records import KeyRecord, utcnow
from ..refills import Refill, period_starts
from .base import KeyChanges, RouteCounts, Usage, apply_changes, check_expected
from .codec import FIELDS, decode, encode

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine, Table
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["SCHEMA_VERSION", "SQLStore", "SchemaVersionError"]

#: Version of the table layout this release writes and reads. 2 added ``request_count``,
#: ``rotated_to`` and ``credits_from``, 3 added ``line``, 4 ``digest_mode``, 5 a key's refill
#: and the accounts table, 6 the ``usage`` table; an older table is migrated in place (ADD
#: COLUMN) on first use. Rows keep their values; a migrated row's ``line`` is NULL (see
#: :attr:`~keysentry.records.KeyRecord.line_id` for how such a successor finds its line), and
#: so is its ``digest_mode`` (unknown: it verifies as before).
SCHEMA_VERSION = 6
#: Columns each version added, which a migration adds to an older table. 5 added a key's
#: refill (its three parts, which a spend reads in SQL).
_ADDED = {
    2: ("request_count", "rotated_to", "credits_from"),
    3: ("line",),
    4: ("digest_mode",),
    5: ("refill_amount", "refill_interval", "refill_add", "refilled_at"),
}
#: Tables each version added. Setup creates missing tables before it reads the version
#: (``create_all``), so migrating to such a version needs no step of its own: an older store
#: starts with the table empty (version 6: no usage history before it).
_TABLES_ADDED = {5: ("accounts",), 6: ("usage",)}

T = TypeVar("T")
E = TypeVar("E")

_SYNC_DRIVER = {"sqlite": "sqlite+pysqlite", "postgresql": "postgresql+psycopg"}
_ASYNC_DRIVER = {"postgresql": "postgresql+psycopg"}  # SQLite's async face: threads
_DRIVERS = {
    "sqlite": {"pysqlite", "aiosqlite"},
    "postgresql": {"psycopg", "psycopg_async"},
}
_TIMESTAMPS = frozenset({"created_at", "expires_at", "last_used_at", "revoked_at", "refilled_at"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")


class _Faces(Generic[E]):
    """One engine seen three ways: reads (autocommit on PostgreSQL), writes made for a
    request, and usage flushes (which on SQLite may wait longer for the write lock)."""

    __slots__ = ("flush", "read", "write")

    def __init__(self, read: E, write: E, flush: E) -> None:
        self.read, self.write, self.flush = read, write, flush


class SchemaVersionError(StoreUnavailable):
    """The tables were written by a newer keysentry (or are not keysentry's): upgrade first.

    A :class:`StoreUnavailable`, so requests get 503 rather than 500 while an old process
    meets a migrated database.
    """


@cache
def _types() -> tuple[Any, Any]:
    """Column types that differ by dialect: the id (collation) and timestamps."""
    from sqlalchemy import String
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.types import TypeDecorator, TypeEngine

    class Timestamp(TypeDecorator[str]):
        """The codec's UTC ISO text; ``timestamptz`` on PostgreSQL, text elsewhere."""

        impl = String
        cache_ok = True

        def load_dialect_impl(self, dialect: Any) -> TypeEngine[Any]:
            impl: TypeEngine[Any] = (
                postgresql.TIMESTAMP(timezone=True) if dialect.name == "postgresql" else String()
            )
            return cast("TypeEngine[Any]", dialect.type_descriptor(impl))

        def process_bind_param(self, value: str | None, dialect: Any) -> Any:
            if value is None or dialect.name != "postgresql":
                return value
            return datetime.fromisoformat(value)

        def process_result_value(self, value: Any, dialect: Any) -> str | None:
            if isinstance(value, datetime):
                stamp: datetime = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
                return stamp.astimezone(timezone.utc).isoformat()
            return None if value is None else str(value)  # the codec's text (SQLite)

    key_id = String().with_variant(postgresql.VARCHAR(collation="C"), "postgresql")
    return key_id, Timestamp


def _refill_columns(timestamp: Any) -> list[Any]:
    """A refill as a spend reads it in SQL: amount, interval, add-or-set; and when it ran."""
    from sqlalchemy import BigInteger, Boolean, Column, String

    return [
        Column("refill_amount", BigInteger(), nullable=True),
        Column("refill_interval", String(), nullable=True),
        Column("refill_add", Boolean(create_constraint=False), nullable=True),
        Column("refilled_at", timestamp(), nullable=True),
    ]


def _tables(prefix: str, schema: str | None) -> tuple[Any, Table, Table, Table, Table]:
    from sqlalchemy import (
        BigInteger,
        Boolean,
        Column,
        Date,
        Index,
        Integer,
        MetaData,
        String,
        Table,
    )
    from sqlalchemy import Text as TextType

    key_id, timestamp = _types()
    metadata = MetaData(schema=schema)
    text: dict[str, Any] = {
        "digest": String(),
        "prefix": String(),
        "name": TextType(),
        "owner": String(),
        "scopes": TextType(),
        "rate_limit": TextType(),
        "allowed_networks": TextType(),
        "metadata": TextType(),
    }
    text["rotated_to"] = text["credits_from"] = text["line"] = text["digest_mode"] = String()
    nullable = {
        "owner", "expires_at", "last_used_at", "revoked_at", "rate_limit", "credits",
        "rotated_to", "credits_from", "line", "digest_mode",
    }  # fmt: skip
    columns = []
    for name in FIELDS:
        if name in ("refill", "refilled_at"):
            continue  # _refill_columns
        if name == "id":
            columns.append(Column("id", key_id, primary_key=True))
        elif name in _TIMESTAMPS:
            columns.append(Column(name, timestamp(), nullable=name in nullable))
        elif name == "disabled":
            columns.append(Column(name, Boolean(create_constraint=False), nullable=False))
        elif name == "credits":
            columns.append(Column(name, BigInteger(), nullable=True))
        elif name == "request_count":
            columns.append(Column(name, BigInteger(), nullable=False, server_default="0"))
        else:
            columns.append(Column(name, text[name], nullable=name in nullable))
    keys = Table(f"{prefix}keys", metadata, *columns, *_refill_columns(timestamp))
    Index(f"{prefix}keys_digest", keys.c.digest, unique=True)
    Index(f"{prefix}keys_owner_id", keys.c.owner, keys.c.id)
    version = Table(
        f"{prefix}schema",
        metadata,
        Column("component", String(), primary_key=True),
        Column("version", Integer(), nullable=False),
    )
    accounts = Table(
        f"{prefix}accounts",
        metadata,
        Column("owner", key_id, primary_key=True),
        Column("disabled", Boolean(create_constraint=False), nullable=False),
        Column("credits", BigInteger(), nullable=True),
        Column("rate_limit", TextType(), nullable=True),
        *_refill_columns(timestamp),
    )
    usage = Table(
        f"{prefix}usage",
        metadata,
        Column("key_id", key_id, primary_key=True),
        Column("day", Date(), primary_key=True),
        Column("route", TextType(), primary_key=True),  # "" for the day's total
        Column("requests", BigInteger(), nullable=False),
    )
    Index(f"{prefix}usage_day", usage.c.day)  # the daily pruning
    return metadata, keys, version, accounts, usage


def _refill_text(row: Mapping[str, Any]) -> str | None:
    amount = row.get("refill_amount")
    if amount is None:
        return None
    return f"{'+' if row.get('refill_add') else ''}{amount}/{row.get('refill_interval')}"


def _split_refill(row: dict[str, Any]) -> dict[str, Any]:
    """The codec's ``refill`` text as the three columns a spend reads."""
    text = row.pop("refill", None)
    refill = None if text is None else Refill.parse(text)
    row["refill_amount"] = None if refill is None else refill.amount
    row["refill_interval"] = None if refill is None else refill.interval
    row["refill_add"] = None if refill is None else refill.add
    return row


def _decode(row: Any) -> KeyRecord:
    # A RowMapping: its keys are the column names (FIELDS, the refill in three parts).
    return decode({**row, "refill": _refill_text(row)})


def _row(record: KeyRecord) -> dict[str, Any]:
    row: dict[str, Any] = encode(record)
    row["disabled"] = bool(row["disabled"])
    return _split_refill(row)


def _account_row(account: AccountRecord) -> dict[str, Any]:
    row: dict[str, Any] = encode_account(account)
    row["disabled"] = bool(row["disabled"])
    return _split_refill(row)


def _decode_account(row: Any) -> AccountRecord:
    return decode_account({**row, "refill": _refill_text(row)})


def _spend_statements(table: Any, id_column: Any) -> tuple[Any, Any, Any]:
    """A spend as one conditional UPDATE, with the refill that is due applied first, in the
    same statement: ``balance`` is the refilled balance when a refill is due (its period began
    after ``refilled_at``), else the stored one; the row changes only if it covers
    ``amount``. ``day``, ``week``, ``month`` are the starts of the current periods."""
    from sqlalchemy import and_, bindparam, case, or_, select, update

    c = table.c
    amount = bindparam("amount", type_=c.credits.type)
    now = bindparam("now", type_=c.refilled_at.type)
    start = case(
        (c.refill_interval == "day", bindparam("day", type_=c.refilled_at.type)),
        (c.refill_interval == "week", bindparam("week", type_=c.refilled_at.type)),
        else_=bindparam("month", type_=c.refilled_at.type),
    )
    due = and_(c.refill_amount.is_not(None), or_(c.refilled_at.is_(None), c.refilled_at < start))
    refilled = case(
        (c.refill_add.is_(True), case((c.credits.is_(None), 0), else_=c.credits) + c.refill_amount),
        else_=c.refill_amount,
    )
    balance = case((due, refilled), else_=c.credits)
    where = (id_column == bindparam("key_id"), balance >= amount)
    values = {"credits": balance - amount, "refilled_at": case((due, now), else_=c.refilled_at)}
    spend = update(table).where(*where).values(values).returning(c.credits)
    plain = update(table).where(*where).values(values)
    read = select(c.credits, balance.label("balance")).where(id_column == bindparam("key_id"))
    return spend, plain, read


def _spend_params(key_id: str, amount: int) -> dict[str, Any]:
    now = utcnow()
    day, week, month = period_starts(now)
    return {
        "key_id": key_id,
        "amount": amount,
        "now": now.isoformat(),
        "day": day.isoformat(),
        "week": week.isoformat(),
        "month": month.isoformat(),
    }


class _Queries:
    """The store's statements, each a function of a blocking Connection.

    The async face runs the same functions through ``AsyncConnection.run_sync``, so there is
    one implementation of every query.
    """

    def __init__(self, prefix: str, schema: str | None, postgres: bool) -> None:
        from sqlalchemy import bindparam, case, delete, insert, select, update

        self.metadata, self.keys, self.version, self.accounts, self.history = _tables(
            prefix, schema
        )
        keys = self.keys
        accounts = self.accounts
        self.postgres = postgres
        #: The oldest day of history kept as of the last pruning (prunings: once a day).
        self.kept_from: date | None = None
        self._add_day = _upsert_day(self.history, postgres)
        # An advisory lock serialises table creation between processes on PostgreSQL
        # (concurrent CREATE TABLE IF NOT EXISTS can collide in the catalog).
        name = f"{schema or ''}.{prefix}".encode()
        self.lock_id = int.from_bytes(hashlib.sha256(name).digest()[:8], "big", signed=True)
        self._by_id = select(keys).where(keys.c.id == bindparam("id"))
        self._by_digest = select(keys).where(keys.c.digest == bindparam("digest"))
        self._locked = self._by_id.with_for_update()  # SQLite: BEGIN IMMEDIATE instead
        self._insert = insert(keys)
        self._update = update(keys).where(keys.c.id == bindparam("key_id"))
        self._delete = delete(keys).where(keys.c.id == bindparam("key_id"))
        self._spend, self._spend_plain, self._balance = _spend_statements(keys, keys.c.id)
        self._account_spend = _spend_statements(accounts, accounts.c.owner)
        self._account = select(accounts).where(accounts.c.owner == bindparam("owner"))
        self._account_locked = self._account.with_for_update()
        self._account_insert = insert(accounts)
        self._account_update = update(accounts).where(accounts.c.owner == bindparam("owner_"))
        last = bindparam("last", type_=keys.c.last_used_at.type)
        self._usage = (
            update(keys)
            .where(keys.c.id == bindparam("key_id"))
            .values(
                request_count=keys.c.request_count + bindparam("count"),
                last_used_at=case(
                    (keys.c.last_used_at.is_(None), last),
                    (keys.c.last_used_at < last, last),
                    else_=keys.c.last_used_at,
                ),
            )
        )

    def setup(self, conn: Connection) -> None:
        from sqlalchemy import func, insert, select

        if self.postgres:
            conn.execute(select(func.pg_advisory_xact_lock(self.lock_id)))
        self.metadata.create_all(conn, checkfirst=True)
        table = self.version
        found = conn.execute(
            select(table.c.version).where(table.c.component == "keys")
        ).scalar_one_or_none()
        if found is None:
            conn.execute(insert(table).values(component="keys", version=SCHEMA_VERSION))
        elif found < SCHEMA_VERSION and found >= 1:
            self.migrate(conn, found)
        elif found != SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the key tables have schema version {found}, this keysentry knows "
                f"{SCHEMA_VERSION}: "
                + (
                    "upgrade keysentry"
                    if found > SCHEMA_VERSION
                    else "they were not written by a released keysentry"
                )
            )

    def migrate(self, conn: Connection, found: int) -> None:
        """Bring a table written by an older release up to :data:`SCHEMA_VERSION`, in the
        setup transaction (and under the advisory lock on PostgreSQL)."""
        from sqlalchemy import update
        from sqlalchemy.schema import CreateColumn

        keys = self.keys
        table = conn.dialect.identifier_preparer.format_table(keys)
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for name in _ADDED.get(version, ()):
                column = CreateColumn(keys.c[name]).compile(dialect=conn.dialect)
                conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column}")
        version_table = self.version
        conn.execute(
            update(version_table)
            .where(version_table.c.component == "keys")
            .values(version=SCHEMA_VERSION)
        )

    def spend(self, conn: Connection, key_id: str, amount: int) -> int | None:
        left = self._spent(conn, (self._spend, self._spend_plain, self._balance), key_id, amount)
        if left is _NO_ROW:
            raise KeyNotFound(f"no key with id {shown_id(key_id)!r}")
        return left  # type: ignore[return-value]

    @staticmethod
    def _spent(conn: Connection, statements: Any, key_id: str, amount: int) -> int | object | None:
        spend, plain, read = statements
        params = _spend_params(key_id, amount)
        if conn.dialect.update_returning:
            left = conn.execute(spend, params).scalar()
        elif conn.execute(plain, params).rowcount:
            # SQLite before 3.35 has no RETURNING; the write transaction holds the database
            # lock (BEGIN IMMEDIATE), so the balance read next is the one just written.
            left = conn.execute(read, params).one().credits
        else:
            left = None
        if left is not None:
            return int(left)
        row = conn.execute(read, params).first()
        if row is None:
            return _NO_ROW
        if row.balance is None:
            return None
        raise InsufficientCredits(int(row.balance))

    def get_account(self, conn: Connection, owner: str) -> AccountRecord | None:
        row = conn.execute(self._account, {"owner": owner}).mappings().first()
        return None if row is None else _decode_account(row)

    def update_account(
        self, conn: Connection, owner: str, changes: AccountChanges
    ) -> AccountRecord:
        row = conn.execute(self._account_locked, {"owner": owner}).mappings().first()
        current = None if row is None else _decode_account(row)
        account = changed_account(owner, current, changes)
        values = _account_row(account)
        if current is None:
            conn.execute(self._account_insert, values)
        else:
            del values["owner"]
            conn.execute(self._account_update.values(values), {"owner_": owner})
        return account

    def spend_account(self, conn: Connection, owner: str, amount: int) -> int | None:
        left = self._spent(conn, self._account_spend, owner, amount)
        return None if left is _NO_ROW else left  # type: ignore[return-value]

    def usage(
        self,
        conn: Connection,
        rows: list[dict[str, Any]],
        days: list[dict[str, Any]],
        kept_from: date,
    ) -> None:
        conn.execute(self._usage, rows)
        if days:
            self._add_days(conn, days)
        if self.kept_from is None or kept_from > self.kept_from:
            history = self.history
            conn.execute(history.delete().where(history.c.day < kept_from))
            self.kept_from = kept_from

    def _add_days(self, conn: Connection, days: list[dict[str, Any]]) -> None:
        """Add to the day counters of the keys that exist (upserts, in key order)."""
        from sqlalchemy import bindparam, select

        keys = self.keys
        ids = sorted({row["key_id"] for row in days})
        found = select(keys.c.id).where(keys.c.id.in_(bindparam("ids", expanding=True)))
        known: set[str] = set()
        for i in range(0, len(ids), _IN_CHUNK):  # bound parameters per statement
            known.update(conn.execute(found, {"ids": ids[i : i + _IN_CHUNK]}).scalars())
        rows = [row for row in days if row["key_id"] in known]
        if not rows:
            return
        conn.execute(self._add_day, rows)

    def history_of(
        self, conn: Connection, key_ids: list[str], since: date
    ) -> dict[str, list[DailyUsage]]:
        from sqlalchemy import bindparam, select

        history = self.history
        query = select(history).where(
            history.c.key_id.in_(bindparam("ids", expanding=True)), history.c.day >= since
        )
        days: dict[str, dict[date, tuple[list[int], dict[str, int]]]] = {}
        rows = (
            row
            for i in range(0, len(key_ids), _IN_CHUNK)
            for row in conn.execute(query, {"ids": key_ids[i : i + _IN_CHUNK]})
        )
        for row in rows:
            totals, routes = days.setdefault(row.key_id, {}).setdefault(row.day, ([0], {}))
            if row.route:
                routes[row.route] = int(row.requests)
            else:
                totals[0] = int(row.requests)
        return {
            key_id: [DailyUsage(day, totals[0], routes) for day, (totals, routes) in used.items()]
            for key_id, used in days.items()
        }

    def get(self, conn: Connection, key_id: str) -> KeyRecord | None:
        row = conn.execute(self._by_id, {"id": key_id}).mappings().first()
        return None if row is None else _decode(row)

    def find(self, conn: Connection, digest: str) -> KeyRecord | None:
        row = conn.execute(self._by_digest, {"digest": digest}).mappings().first()
        return None if row is None else _decode(row)

    def create(self, conn: Connection, row: dict[str, Any]) -> None:
        conn.execute(self._insert, row)

    def update(
        self,
        conn: Connection,
        key_id: str,
        changes: KeyChanges,
        expect: Mapping[str, object] | None,
    ) -> KeyRecord:
        row = conn.execute(self._locked, {"id": key_id}).mappings().first()
        if row is None:
            raise KeyNotFound(f"no key with id {shown_id(key_id)!r}")
        current = _decode(row)
        check_expected(current, expect)
        values = _row(apply_changes(current, changes))
        del values["id"]
        conn.execute(self._update.values(values), {"key_id": key_id})
        # What get() will return: the record as stored, not as the caller phrased it.
        return _decode({**values, "id": key_id})

    def delete(
        self, conn: Connection, key_id: str, expect: Mapping[str, object] | None
    ) -> KeyRecord:
        # Under the same write lock as update(): the condition holds when the row goes.
        row = conn.execute(self._locked, {"id": key_id}).mappings().first()
        if row is None:
            raise KeyNotFound(f"no key with id {shown_id(key_id)!r}")
        current = _decode(row)
        check_expected(current, expect)
        conn.execute(self._delete, {"key_id": key_id})
        history = self.history
        conn.execute(history.delete().where(history.c.key_id == key_id))
        return current

    def list(
        self, conn: Connection, owner: str | None, after: str | None, limit: int
    ) -> list[KeyRecord]:
        from sqlalchemy import select

        keys = self.keys
        query = select(keys).order_by(keys.c.id).limit(max(limit, 0))
        if owner is not None:
            query = query.where(keys.c.owner == owner)
        if after is not None:
            query = query.where(keys.c.id > after)
        return [_decode(row) for row in conn.execute(query).mappings()]


#: Ids per ``IN (...)`` list: SQLite builds before 3.32 take at most 999 bound parameters.
_IN_CHUNK = 500


def _upsert_day(history: Table, postgres: bool) -> Any:
    """``INSERT ... ON CONFLICT (key_id, day, route) DO UPDATE`` adding the new requests to the
    row's: the same statement on PostgreSQL and SQLite (3.24+), each dialect's own builder."""
    from sqlalchemy.dialects import postgresql, sqlite

    upsert = (postgresql.insert if postgres else sqlite.insert)(history)
    return upsert.on_conflict_do_update(
        index_elements=[history.c.key_id, history.c.day, history.c.route],
        set_={"requests": history.c.requests + upsert.excluded.requests},
    )


_NO_ROW = object()


def _amount(amount: int) -> int:
    if amount == 0:
        raise ValueError("an amount of credits cannot be zero")
    return amount


def _usage_rows(usage: Mapping[str, Usage]) -> list[dict[str, Any]]:
    # Sorted by id: concurrent flushers lock rows in one order and cannot deadlock.
    return [
        {"key_id": key_id, "count": count, "last": last.astimezone(timezone.utc).isoformat()}
        for key_id, (count, last) in sorted(usage.items())
    ]


def _usage_args(
    usage: Mapping[str, Usage], routes: RouteCounts | None, retention_days: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], date]:
    return _usage_rows(usage), _day_rows(usage, routes), _kept_from(usage, retention_days)


def _day_rows(usage: Mapping[str, Usage], routes: RouteCounts | None) -> list[dict[str, Any]]:
    """The usage table's increments: per key, its day's total (route "") and its routes'
    counts, sorted as the table's key (flushers lock rows in one order)."""
    rows = []
    for key_id, (count, last) in usage.items():
        day = utc_day(last)
        if count:
            rows.append({"key_id": key_id, "day": day, "route": "", "requests": count})
        for route, n in (routes or {}).get(key_id, {}).items():
            if route and n:
                rows.append({"key_id": key_id, "day": day, "route": route, "requests": n})
    return sorted(rows, key=lambda row: (row["key_id"], row["day"], row["route"]))


def _kept_from(usage: Mapping[str, Usage], retention_days: int) -> date:
    """The oldest day a write keeps: ``retention_days`` before the newest day written."""
    newest = max(utc_day(last) for _, last in usage.values())
    return newest - timedelta(days=retention_days)


#: The longest a jittered retry of SQLite's ``BEGIN IMMEDIATE`` sleeps (seconds).
_SQLITE_POLL = 0.004
#: How long a usage flush (off the request path) may wait for SQLite's write lock at least.
FLUSH_WAIT = 15.0
#: Pool settings a URL may carry: stripped from it before the driver sees the rest.
POOL_PARAMETERS = ("pool_size", "max_overflow", "pool_timeout", "pool_recycle", "poolclass")
#: Connections each engine keeps once used, and may open beyond that under load. A request
#: holds one for a single statement (a few hundred microseconds), and the cache answers most
#: requests without the store, so a worker rarely needs more than one or two at a time; the
#: overflow absorbs bursts of cache misses and the usage flush, and is closed after. See the
#: README (Stores) for sizing many workers against PostgreSQL's ``max_connections``.
POOL_DEFAULTS = {"pool_size": 2, "max_overflow": 3}


def _sqlite_busy(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return bool(code & 0xFF == 5)  # SQLITE_BUSY and its extended codes
    return "database is locked" in str(exc) or "database is busy" in str(exc)


def _begin_immediate(raw: Any, wait: float, busy_ms: int) -> None:
    """``BEGIN IMMEDIATE`` retried with jitter for up to ``wait`` seconds.

    SQLite's own busy handler sleeps longer and longer (up to 100 ms a try), so under steady
    contention from other processes a waiter keeps missing the moments the lock is free and
    times out while others, arriving later, get through (measured: 4 writer processes, waits
    up to 2 s, a request in ~20k failed). Short random sleeps (0-4 ms) give every waiter its
    chance; the busy handler is off for this statement only and back for the rest (in WAL
    mode a read can meet a short exclusive lock too, when a connection closes the file last).
    """
    import random
    import time

    deadline = time.monotonic() + wait
    pause = 0.0005
    raw.execute("PRAGMA busy_timeout = 0")
    try:
        while True:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except Exception as exc:
                if not _sqlite_busy(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(random.uniform(0, pause))  # noqa: S311 - jitter, not a secret
            pause = min(pause * 2, _SQLITE_POLL)
    finally:
        raw.execute(f"PRAGMA busy_timeout = {busy_ms}")


def _sqlite_events(engine: Engine, busy_ms: int) -> None:
    """Take transaction control from the driver: ``BEGIN`` for reads, ``BEGIN IMMEDIATE``
    (the write lock up front, so two updates cannot both read the old row) for writes, the
    latter retried with jitter for as long as the write may wait (execution option
    ``keysentry_write``: seconds)."""
    from sqlalchemy import event

    def connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode")
            mode = cursor.fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                # Readers never wait for the writer. Not everywhere possible (some network
                # file systems): the store works in the default journal mode too.
                cursor.execute("PRAGMA journal_mode=WAL")
        except Exception:  # noqa: S110 - WAL is an optimisation
            pass
        finally:
            cursor.close()

    def begin(conn: Connection) -> None:
        wait = conn.get_execution_options().get("keysentry_write")
        if wait:
            _begin_immediate(conn.connection.driver_connection, float(wait), busy_ms)
        else:
            conn.exec_driver_sql("BEGIN")

    event.listen(engine, "connect", connect)
    event.listen(engine, "begin", begin)


def _pool_settings(url: URL, given: dict[str, Any]) -> tuple[URL, dict[str, Any]]:
    """The pool settings of the URL's query (taken out of it) and of the arguments (``given``:
    those not None), checked; a setting given both ways is an error."""
    from_url: dict[str, Any] = {}
    for name in POOL_PARAMETERS:
        if name not in url.query:
            continue
        value = url.query[name]
        if not isinstance(value, str):
            raise ValueError(f"{name} is given more than once in the database URL")
        if name in given:
            raise ValueError(f"{name} is given both in the database URL and as an argument")
        from_url[name] = value
    url = url.difference_update_query(POOL_PARAMETERS)
    settings: dict[str, Any] = {}
    for name, value in [*given.items(), *from_url.items()]:
        where = "in the URL" if name in from_url else "argument"
        settings[name] = _pool_value(name, value, where)
    if settings.get("poolclass") == "null":
        extra = sorted(set(settings) - {"poolclass"})
        if extra:
            raise ValueError(
                f"{', '.join(extra)} {'mean' if len(extra) > 1 else 'means'} nothing "
                "without a pool (poolclass=null): "
                "each call opens a connection and closes it"
            )
    return url, settings


def _pool_value(name: str, value: Any, where: str) -> Any:
    text = isinstance(value, str)
    if name == "poolclass":
        if text and value.lower() in ("null", "queue"):
            return value.lower()
        from sqlalchemy.pool import NullPool

        if value is NullPool:
            return "null"
        raise ValueError(
            f"poolclass {where} must be NullPool or 'null' (no pool: for PgBouncer) or "
            f"'queue' (the default), not {value!r}; for a pool of your own pass engine="
        )
    try:
        if name in ("pool_size", "max_overflow"):
            number: float = int(value) if text else value
            if isinstance(number, bool) or not isinstance(number, int):
                raise TypeError
        else:
            number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    least = {"pool_size": 1, "max_overflow": 0}.get(name)
    if least is not None and not (isinstance(number, int) and number >= least):
        hint = " (for no pool at all: poolclass=null)" if name == "pool_size" else ""
        raise ValueError(f"{name} {where} must be a whole number >= {least}{hint}, not {value!r}")
    if least is None and not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} {where} must be a positive number of seconds, not {value!r}")
    return number


class SQLStore:
    """A key store in a SQL database, with both faces.

    :param url: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, or
        ``postgresql://user:password@host:5432/dbname`` (also ``postgres://`` and
        ``postgresql+psycopg://``). Query parameters go to the driver, except the pool
        settings below (``?pool_size=3&max_overflow=2&pool_timeout=1&pool_recycle=1800``, or
        ``?poolclass=null``), which the store takes out and checks.
    :param engine: on PostgreSQL, a SQLAlchemy ``Engine`` of your own for the blocking face,
        instead of ``url`` (its pool, timeouts and ``application_name`` are yours; it must
        keep ``hide_parameters=True``). Without ``async_engine``, the async face makes its
        own engines from its URL with the settings here.
    :param async_engine: likewise an ``AsyncEngine`` for the async face, used on whatever
        event loop calls it. Neither is closed by :meth:`close`.
    :param schema: PostgreSQL schema holding the tables (it must exist); None uses the
        connection's ``search_path``.
    :param table_prefix: prefix of the table and index names.
    :param timeout: seconds for connecting, for each statement (PostgreSQL), for a pooled
        connection and for SQLite's write lock (a usage flush waits at least
        :data:`FLUSH_WAIT` for it).
    :param application_name: PostgreSQL ``application_name`` of the store's connections.
    :param failures: consecutive failures that open the circuit breaker.
    :param cooldown: seconds the breaker stays open before one trial call.
    :param pool_size: connections each engine keeps open once used (default 2).
    :param max_overflow: connections each engine may open beyond ``pool_size`` under load,
        closed again when returned (default 3).
    :param pool_timeout: seconds to wait for a pooled connection (default ``timeout``).
    :param pool_recycle: seconds after which a pooled connection is replaced (default never).
    :param poolclass: ``NullPool`` (or ``"null"``): no pool, a connection per call, for a
        PgBouncer in front of PostgreSQL; the pool settings above are then refused.
    :param engine_options: more keyword arguments for both ``create_engine`` calls
        (``connect_args`` are added to the store's own). ``hide_parameters`` stays on: bound
        values are digests, which errors and echo logs would otherwise print.

    Each engine (the blocking one, and one per event loop for the async face on
    PostgreSQL) holds up to ``pool_size + max_overflow`` connections. A lookup whose pooled
    connection turns out dead (a restarted server, a terminated backend) is retried once on a
    fresh one; so is a write, unless it failed at its commit (whose outcome is then unknown).

    Share one store per process. :meth:`close` and :meth:`aclose` release the connections.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        engine: Engine | None = None,
        async_engine: AsyncEngine | None = None,
        schema: str | None = None,
        table_prefix: str = "keysentry_",
        timeout: float = 2.0,
        application_name: str = "keysentry",
        failures: int = 3,
        cooldown: float = 2.0,
        pool_size: int | None = None,
        max_overflow: int | None = None,
        pool_timeout: float | None = None,
        pool_recycle: float | None = None,
        poolclass: Any = None,
        **engine_options: Any,
    ) -> None:
        try:
            from sqlalchemy.engine import make_url
            from sqlalchemy.exc import ArgumentError
        except ImportError:
            raise ImportError(
                "SQLStore needs SQLAlchemy: pip install 'keysentry[sql]' (SQLite) "
                "or 'keysentry[postgres]' (PostgreSQL)"
            ) from None
        if not math.isfinite(timeout) or timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        if not _IDENTIFIER.fullmatch(table_prefix):
            raise ValueError(f"table_prefix {table_prefix!r} must be letters, digits and '_'")
        if schema is not None and not _IDENTIFIER.fullmatch(schema):
            raise ValueError(f"schema {schema!r} must be letters, digits and '_'")
        given = engine if engine is not None else async_engine
        if given is not None:
            if url is not None:
                raise ValueError("give SQLStore a URL or an engine, not both")
            url = self._check_engine(engine, async_engine)
        elif url is None:
            raise TypeError("SQLStore needs a database URL (or engine=)")
        self.url = url
        self.schema = schema
        self.table_prefix = table_prefix
        self.timeout = timeout
        # SQLAlchemy no longer reads the short scheme that Heroku and others hand out.
        short = url.startswith(("postgres://", "postgres+"))
        text = "postgresql" + url[len("postgres") :] if short else url
        try:
            parsed = make_url(text)
        except (ArgumentError, ValueError) as exc:
            # SQLAlchemy's message may quote the URL, or a piece of the password it took for a
            # port ("invalid literal for int()"): only what is left without the secrets.
            reason = scrub(str(exc), url)
            raise ValueError(f"not a database URL: {safe_url(url)!r} ({reason})") from None
        backend = parsed.get_backend_name()
        drivers = _DRIVERS.get(backend, set())
        if given is not None:
            drivers = {parsed.get_driver_name()}  # an engine of the user's: any PG driver
        if backend not in _DRIVERS or (
            "+" in parsed.drivername and parsed.get_driver_name() not in drivers
        ):
            raise ValueError(
                f"SQLStore speaks SQLite (sqlite:///path) and PostgreSQL through psycopg "
                f"(postgresql://...), not {parsed.drivername!r}"
            )
        self.dialect = backend
        if backend == "sqlite":
            if given is not None:
                raise ValueError(
                    "engine= is for PostgreSQL; a SQLite store takes its file's URL "
                    "(it sets up its connections' locking itself)"
                )
            if parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory":
                raise ValueError(
                    "an in-memory SQLite database belongs to one connection, and the store's "
                    "two faces use several: name a file (sqlite:///keys.db), or use "
                    "memory:// for a store that lives in this process"
                )
            if schema is not None:
                raise ValueError("schema= is for PostgreSQL; a SQLite store is one file")
        else:
            try:
                import psycopg
            except ImportError:
                raise ImportError(
                    "SQLStore on PostgreSQL needs psycopg: pip install 'keysentry[postgres]'"
                ) from None
        self._queries = _Queries(table_prefix, schema, postgres=backend == "postgresql")
        pool = {
            name: value
            for name, value in [
                ("pool_size", pool_size),
                ("max_overflow", max_overflow),
                ("pool_timeout", pool_timeout),
                ("pool_recycle", pool_recycle),
                ("poolclass", poolclass),
            ]
            if value is not None
        }
        if engine is not None and async_engine is not None and (pool or engine_options):
            raise ValueError("pool and engine settings belong to the engines given")
        parsed, pool = _pool_settings(parsed, pool)
        if pool.pop("poolclass", None) != "null":
            pool = {**POOL_DEFAULTS, "pool_timeout": timeout, **pool}
        else:
            pool = {"poolclass": "null"}
        #: The pool settings of the engines the store makes, defaults included.
        self.pool_settings: dict[str, Any] = pool
        self._options = self._engine_options(
            parsed, timeout, application_name, self.pool_settings, engine_options
        )
        from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError

        self._integrity_error: type[Exception] = IntegrityError
        self._dbapi_error: type[DBAPIError] = DBAPIError
        errors: list[type[BaseException]] = [SQLAlchemyError, OSError, asyncio.TimeoutError]
        #: Driver errors whose text quotes the values of a row: PostgreSQL's DETAIL says
        #: ``Key (digest)=(<hex>) already exists`` or ``Failing row contains (...)``, a data
        #: error quotes the value it could not take. None of that text may reach an error
        #: of ours, nor its chain (so no logged traceback shows it).
        quoting: list[type[BaseException]] = [IntegrityError, DataError]
        if backend == "postgresql":
            errors.append(psycopg.Error)
            quoting += (psycopg.IntegrityError, psycopg.DataError)
        else:
            import sqlite3

            errors.append(sqlite3.Error)
            quoting += (sqlite3.IntegrityError, sqlite3.DataError)
        self._errors = tuple(errors)
        self._quoting = tuple(quoting)
        self.breaker = CircuitBreaker(failures, cooldown)
        self._lock = threading.Lock()
        self._sync: Engine | None = None
        self._sync_faces: _Faces[Engine] | None = None
        self._own_sync = engine is None
        if engine is not None:
            self._sync = engine
            self._sync_faces = self._split(engine)
        # An asyncio engine's pool belongs to the loop it ran on: one engine per loop, and the
        # engines of finished loops closed (from the next loop) when a new loop shows up.
        self._async: dict[asyncio.AbstractEventLoop, tuple[AsyncEngine, _Faces[AsyncEngine]]] = {}
        self._given_async: _Faces[AsyncEngine] | None = (
            None if async_engine is None else self._split(async_engine)
        )
        self._ready = False
        #: SQLite's async face runs the blocking engine on worker threads: a local file query
        #: is a few hundred microseconds of work, and aiosqlite's thread-and-queue hop under
        #: SQLAlchemy's greenlet bridge cost 5-6 times that (benchmarks/stores.py).
        self._threaded = backend == "sqlite"
        #: ... except reads of a store whose tables are ready: they run on the event loop, on a
        #: connection of that loop's own that never waits (see :meth:`_read_inline`).
        self._inline: dict[asyncio.AbstractEventLoop, Engine] = {}

    @staticmethod
    def _check_engine(engine: Engine | None, async_engine: AsyncEngine | None) -> str:
        """The URL of the engines a user gave (the blocking one's if both), after checking
        that they speak PostgreSQL and hide bound values from their errors."""
        for given in (engine, async_engine):
            if given is None:
                continue
            sync = cast("Engine", getattr(given, "sync_engine", given))
            if not sync.hide_parameters:
                raise ValueError(
                    "make the engine with hide_parameters=True: its errors and echo logs "
                    "would print key digests"
                )
            if sync.dialect.name != "postgresql":
                raise ValueError(
                    "engine= is for PostgreSQL; a SQLite store takes its file's URL "
                    "(it sets up its connections' locking itself)"
                )
        source = engine if engine is not None else async_engine
        assert source is not None
        return source.url.render_as_string(hide_password=False)

    @staticmethod
    def _engine_options(
        url: URL,
        timeout: float,
        application_name: str,
        pool: Mapping[str, Any],
        extra: Mapping[str, Any],
    ) -> tuple[URL, dict[str, Any]]:
        connect_args: dict[str, Any] = {}
        if url.get_backend_name() == "sqlite":
            connect_args["timeout"] = timeout  # how long to wait for SQLite's write lock
        else:
            ms = max(1, round(timeout * 1000))
            options = (
                f"-c statement_timeout={ms} "
                f"-c idle_in_transaction_session_timeout={max(10_000, 5 * ms)}"
            )
            given = url.query.get("options")
            if isinstance(given, str) and given:
                options = f"{given} {options}"
            url = url.difference_update_query(["options"])
            connect_args["options"] = options
            # libpq counts whole seconds (and at least 2).
            connect_args["connect_timeout"] = max(2, math.ceil(timeout))
            if "application_name" not in url.query:
                connect_args["application_name"] = application_name
        # No pool_pre_ping: it cost a round trip per call (a lookup's p50 407 -> 309 us
        # without it). A call that meets a dead pooled connection is retried instead.
        engine: dict[str, Any] = {
            # Errors must not carry key digests or names into logs.
            "hide_parameters": True,
            "connect_args": connect_args,
        }
        if pool.get("poolclass") == "null":
            from sqlalchemy.pool import NullPool

            engine["poolclass"] = NullPool  # for both faces: SQLAlchemy adapts it to asyncio
        else:
            engine.update(pool)
        extra = dict(extra)
        if not extra.pop("hide_parameters", True):
            # SQLAlchemy would print the bound values (digests) in its errors and echo logs.
            raise ValueError("hide_parameters=False would print key digests in errors and logs")
        connect_args.update(extra.pop("connect_args", {}))
        engine.update(extra)
        return url, engine

    def __repr__(self) -> str:
        schema = "" if self.schema is None else f", schema={self.schema!r}"
        return f"SQLStore({safe_url(self.url)!r}{schema}, circuit={self.breaker.state!r})"

    # -- engines ---------------------------------------------------------------------------------

    def _faces(self) -> _Faces[Engine]:
        """The blocking engine's faces, made on first use."""
        faces = self._sync_faces
        if faces is not None:
            return faces
        from sqlalchemy import create_engine

        with self._lock:
            if self._sync_faces is None:
                url, options = self._options
                engine = create_engine(url.set(drivername=_SYNC_DRIVER[self.dialect]), **options)
                if self.dialect == "sqlite":
                    _sqlite_events(engine, max(1, round(self.timeout * 1000)))
                self._sync = engine
                self._sync_faces = self._split(engine)
            return self._sync_faces

    def _split(self, engine: E) -> _Faces[E]:
        # Reads on PostgreSQL run in autocommit: one round trip, no BEGIN/ROLLBACK around it.
        # Writes on SQLite ask for the write lock when they begin, and wait for it that long.
        options = cast("Any", engine).execution_options
        if self.dialect == "postgresql":
            return _Faces(options(isolation_level="AUTOCOMMIT"), engine, engine)
        return _Faces(
            engine,
            options(keysentry_write=self.timeout),
            options(keysentry_write=max(self.timeout, FLUSH_WAIT)),
        )

    async def _afaces(self) -> _Faces[AsyncEngine]:
        if self._given_async is not None:
            return self._given_async
        loop = asyncio.get_running_loop()
        made = self._async.get(loop)
        if made is not None:
            return made[1]
        try:
            from sqlalchemy.ext.asyncio import create_async_engine
        except ImportError:  # pragma: no cover - greenlet comes with the extras
            raise ImportError("SQLStore's async face needs 'sqlalchemy[asyncio]'") from None
        url, options = self._options
        with self._lock:
            made = self._async.get(loop)
            stale = []
            if made is None:
                stale = [self._async.pop(done)[0] for done in list(self._async) if done.is_closed()]
                engine = create_async_engine(
                    url.set(drivername=_ASYNC_DRIVER[self.dialect]), **options
                )
                made = self._async[loop] = (engine, self._split(engine))
        for engine in stale:
            await self._adispose(engine)
        return made[1]

    @staticmethod
    async def _adispose(engine: AsyncEngine) -> None:
        # Connections of a dead server or of a finished loop may fail to close politely.
        with contextlib.suppress(Exception):
            await engine.dispose()

    def _ensure_tables(self, writer: Engine) -> None:
        if not self._ready:
            with writer.begin() as conn:
                self._queries.setup(conn)
            self._ready = True

    async def _aensure_tables(self, writer: AsyncEngine) -> None:
        if not self._ready:
            async with writer.begin() as conn:
                await conn.run_sync(self._queries.setup)
            self._ready = True

    # -- error handling --------------------------------------------------------------------------

    def _guard(self, what: str, duplicate: str | None = None) -> Guarded:
        """One call under the breaker; driver errors become :class:`StoreUnavailable`, or
        :class:`DuplicateKey` when ``duplicate`` (the id of a record being created) is taken.
        A store that meets tables of a newer release fails every call: that counts too."""
        return Guarded(
            self.breaker,
            "SQLStore",
            what,
            self._errors,
            translate=partial(self._translate, what=what, duplicate=duplicate),
            failing=(SchemaVersionError,),
        )

    def _translate(
        self, exc: BaseException, *, what: str, duplicate: str | None
    ) -> tuple[StoreUnavailable | DuplicateKey, BaseException | None]:
        """The contract error for a driver error (DuplicateKey or StoreUnavailable), and the
        cause to chain it to: None when the driver's text may quote a row's values (a digest),
        and the driver's error must then not ride along at all, not even as the context."""
        cause = getattr(exc, "orig", None) or exc
        name = type(cause).__name__
        if duplicate is not None and isinstance(exc, self._integrity_error):
            taken = self._taken(cause)
            if taken == "id":
                return DuplicateKey(f"a key with id {duplicate!r} exists"), None
            if taken == "digest":
                return DuplicateKey(f"a key with the digest of {duplicate!r} exists"), None
            return DuplicateKey(f"a key with id {duplicate!r} or the same digest exists"), None
        failed = f"SQLStore {what} failed: {name}"
        if isinstance(exc, self._quoting) or isinstance(cause, self._quoting):
            constraint = getattr(getattr(cause, "diag", None), "constraint_name", None)
            where = f" (constraint {constraint})" if isinstance(constraint, str) else ""
            return StoreUnavailable(failed + where), None
        detail = str(cause).strip().splitlines()[0][:200] if str(cause).strip() else ""
        detail = scrub(detail, self.url)  # a driver may quote what it was given to connect
        return StoreUnavailable(failed + (f": {detail}" if detail else "")), exc

    def _taken(self, cause: BaseException) -> str | None:
        """Which unique constraint a duplicate broke, "id" or "digest", by its name only
        (PostgreSQL's diagnostics; SQLite's message names ``table.column``)."""
        table = f"{self.table_prefix}keys"
        constraint = getattr(getattr(cause, "diag", None), "constraint_name", None)
        if constraint == f"{table}_pkey":
            return "id"
        if constraint == f"{table}_digest":
            return "digest"
        text = str(cause) if self.dialect == "sqlite" else ""
        if text.endswith(f"{table}.id"):
            return "id"
        if text.endswith(f"{table}.digest"):
            return "digest"
        return None

    def _retry(self, exc: BaseException) -> bool:
        """Whether a call whose connection died under it (a restarted server, a terminated
        backend) is worth one more try: the pool has dropped the dead connections by now.

        The callers retry reads, and writes that failed before their commit: PostgreSQL
        commits nothing of a transaction whose connection died before COMMIT, so a credit
        spend (or a usage increment) retried then counts once. A write that failed at its
        commit is not retried: it may have been applied.
        """
        return isinstance(exc, self._dbapi_error) and exc.connection_invalidated

    def _read(self, what: str, query: Callable[..., T], *args: Any) -> T:
        with self._guard(what):
            faces = self._faces()
            try:
                return self._read_once(faces, query, args)
            except self._errors as exc:
                if not self._retry(exc):
                    raise
            return self._read_once(faces, query, args)

    def _read_once(self, faces: _Faces[Engine], query: Callable[..., T], args: Any) -> T:
        self._ensure_tables(faces.write)
        with faces.read.connect() as conn:
            return query(conn, *args)

    def _write(
        self,
        what: str,
        query: Callable[..., T],
        *args: Any,
        duplicate: str | None = None,
        flush: bool = False,
    ) -> T:
        with self._guard(what, duplicate):
            faces = self._faces()
            committed: list[bool] = []
            try:
                return self._write_once(faces, flush, committed, query, args)
            except self._errors as exc:
                if committed or not self._retry(exc):
                    raise
            return self._write_once(faces, flush, committed, query, args)

    def _write_once(
        self,
        faces: _Faces[Engine],
        flush: bool,
        committed: list[bool],
        query: Callable[..., T],
        args: Any,
    ) -> T:
        """One write transaction; ``committed`` gets an entry once COMMIT is under way."""
        self._ensure_tables(faces.write)
        with (faces.flush if flush else faces.write).begin() as conn:
            result = query(conn, *args)
            committed.append(True)
        return result

    def _read_inline(self, what: str, query: Callable[..., T], args: Any) -> tuple[T] | None:
        """A SQLite read right on the event loop (its result in a 1-tuple), or None (not run)
        when it would wait.

        The hop to a worker thread and back cost more than the read (at a million keys, aget
        p50 148 / p99 800 us against get's 81 / 123; on the loop 83 / 116). In WAL mode a
        read takes no lock a writer holds; it runs on the loop's own connection (no pool to
        wait for: a loop runs one call at a time on it, with no await in between) with
        SQLite's busy handler off, and in the rare case that it would wait (a checkpoint, a
        recovery) it goes to a worker thread as before.
        Connections of loops that have closed are closed when a new loop shows up.
        """
        loop = asyncio.get_running_loop()
        engine = self._inline.get(loop)
        if engine is None:
            from sqlalchemy import create_engine
            from sqlalchemy.pool import StaticPool

            with self._lock:
                stale = [self._inline.pop(done) for done in list(self._inline) if done.is_closed()]
                engine = self._inline.get(loop)
                if engine is None:
                    url, options = self._options
                    options = {
                        **options,
                        "poolclass": StaticPool,
                        "connect_args": {
                            **options["connect_args"],
                            "timeout": 0,
                            "check_same_thread": False,  # close() may run on another thread
                        },
                    }
                    for name in POOL_PARAMETERS:
                        options.pop(name, None)
                    engine = create_engine(url.set(drivername=_SYNC_DRIVER["sqlite"]), **options)
                    _sqlite_events(engine, 0)
                    self._inline[loop] = engine
            for done in stale:
                done.dispose()
        with self._guard(what):
            try:
                with engine.connect() as conn:
                    return (query(conn, *args),)
            except self._errors as exc:
                if not _sqlite_busy(getattr(exc, "orig", None) or exc):
                    raise
        return None

    async def _aread(self, what: str, query: Callable[..., T], *args: Any) -> T:
        if self._threaded:
            if self._ready:
                found = self._read_inline(what, query, args)
                if found is not None:
                    return found[0]
            return await asyncio.to_thread(self._read, what, query, *args)
        with self._guard(what):
            faces = await self._afaces()
            try:
                return await self._aread_once(faces, query, args)
            except self._errors as exc:
                if not self._retry(exc):
                    raise
            return await self._aread_once(faces, query, args)

    async def _aread_once(
        self, faces: _Faces[AsyncEngine], query: Callable[..., T], args: Any
    ) -> T:
        await self._aensure_tables(faces.write)
        async with faces.read.connect() as conn:
            return await conn.run_sync(query, *args)

    async def _awrite(
        self,
        what: str,
        query: Callable[..., T],
        *args: Any,
        duplicate: str | None = None,
        flush: bool = False,
    ) -> T:
        if self._threaded:
            return await asyncio.to_thread(
                partial(self._write, what, query, *args, duplicate=duplicate, flush=flush)
            )
        with self._guard(what, duplicate):
            faces = await self._afaces()
            committed: list[bool] = []
            try:
                return await self._awrite_once(faces, flush, committed, query, args)
            except self._errors as exc:
                if committed or not self._retry(exc):
                    raise
            return await self._awrite_once(faces, flush, committed, query, args)

    async def _awrite_once(
        self,
        faces: _Faces[AsyncEngine],
        flush: bool,
        committed: list[bool],
        query: Callable[..., T],
        args: Any,
    ) -> T:
        await self._aensure_tables(faces.write)
        async with (faces.flush if flush else faces.write).begin() as conn:
            result = await conn.run_sync(query, *args)
            committed.append(True)
        return result

    # -- the blocking face -----------------------------------------------------------------------

    def get(self, key_id: str) -> KeyRecord | None:
        return self._read("get", self._queries.get, key_id)

    def find_by_digest(self, digest: bytes) -> KeyRecord | None:
        return self._read("find_by_digest", self._queries.find, digest.hex())

    def create(self, record: KeyRecord) -> None:
        self._write("create", self._queries.create, _row(record), duplicate=record.id)

    def update(
        self, key_id: str, changes: KeyChanges, expect: Mapping[str, object] | None = None
    ) -> KeyRecord:
        return self._write("update", self._queries.update, key_id, changes, expect)

    def delete(self, key_id: str, expect: Mapping[str, object] | None = None) -> KeyRecord:
        return self._write("delete", self._queries.delete, key_id, expect)

    def list_keys(
        self, *, owner: str | None = None, after: str | None = None, limit: int = 100
    ) -> Sequence[KeyRecord]:
        return self._read("list_keys", self._queries.list, owner, after, limit)

    def spend_credits(self, key_id: str, amount: int = 1) -> int | None:
        return self._write("spend_credits", self._queries.spend, key_id, _amount(amount))

    def get_account(self, owner: str) -> AccountRecord | None:
        return self._read("get_account", self._queries.get_account, owner)

    def update_account(self, owner: str, changes: AccountChanges) -> AccountRecord:
        return self._write("update_account", self._queries.update_account, owner, changes)

    def spend_account_credits(self, owner: str, amount: int = 1) -> int | None:
        return self._write("spend_account_credits", self._queries.spend_account, owner,
                           _amount(amount))  # fmt: skip

    def record_usage(
        self,
        usage: Mapping[str, Usage],
        routes: RouteCounts | None = None,
        *,
        retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
        if usage:
            self._write(
                "record_usage",
                self._queries.usage,
                *_usage_args(usage, routes, retention_days),
                flush=True,
            )

    def usage_history(
        self, key_ids: Sequence[str], since: date
    ) -> Mapping[str, Sequence[DailyUsage]]:
        if not key_ids:
            return {}
        return self._read("usage_history", self._queries.history_of, list(key_ids), since)

    def close(self) -> None:
        """Close the blocking engine's connections, and the async engines' when no event loop
        runs in this thread (from inside a loop, use :meth:`aclose`). Engines given to the
        store are left to their owner."""
        with self._lock:
            engine = None
            if self._own_sync:
                engine, self._sync, self._sync_faces = self._sync, None, None
            inline = list(self._inline.values())
            self._inline.clear()
            leftovers: list[AsyncEngine] = []
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                leftovers = [faces[0] for faces in self._async.values()]
                self._async.clear()
        if engine is not None:
            engine.dispose()
        for reader in inline:
            reader.dispose()
        if leftovers:

            async def dispose() -> None:
                for engine in leftovers:
                    await self._adispose(engine)

            asyncio.run(dispose())

    # -- the async face --------------------------------------------------------------------------

    async def aget(self, key_id: str) -> KeyRecord | None:
        return await self._aread("get", self._queries.get, key_id)

    async def afind_by_digest(self, digest: bytes) -> KeyRecord | None:
        return await self._aread("find_by_digest", self._queries.find, digest.hex())

    async def acreate(self, record: KeyRecord) -> None:
        await self._awrite("create", self._queries.create, _row(record), duplicate=record.id)

    async def aupdate(
        self, key_id: str, changes: KeyChanges, expect: Mapping[str, object] | None = None
    ) -> KeyRecord:
        return await self._awrite("update", self._queries.update, key_id, changes, expect)

    async def adelete(self, key_id: str, expect: Mapping[str, object] | None = None) -> KeyRecord:
        return await self._awrite("delete", self._queries.delete, key_id, expect)

    async def alist_keys(
        self, *, owner: str | None = None, after: str | None = None, limit: int = 100
    ) -> Sequence[KeyRecord]:
        return await self._aread("list_keys", self._queries.list, owner, after, limit)

    async def aspend_credits(self, key_id: str, amount: int = 1) -> int | None:
        return await self._awrite("spend_credits", self._queries.spend, key_id, _amount(amount))

    async def aget_account(self, owner: str) -> AccountRecord | None:
        return await self._aread("get_account", self._queries.get_account, owner)

    async def aupdate_account(self, owner: str, changes: AccountChanges) -> AccountRecord:
        return await self._awrite("update_account", self._queries.update_account, owner, changes)

    async def aspend_account_credits(self, owner: str, amount: int = 1) -> int | None:
        return await self._awrite("spend_account_credits", self._queries.spend_account, owner,
                                  _amount(amount))  # fmt: skip

    async def arecord_usage(
        self,
        usage: Mapping[str, Usage],
        routes: RouteCounts | None = None,
        *,
        retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
        if usage:
            await self._awrite(
                "record_usage",
                self._queries.usage,
                *_usage_args(usage, routes, retention_days),
                flush=True,
            )

    async def ausage_history(
        self, key_ids: Sequence[str], since: date
    ) -> Mapping[str, Sequence[DailyUsage]]:
        if not key_ids:
            return {}
        return await self._aread("usage_history", self._queries.history_of, list(key_ids), since)

    async def aclose(self) -> None:
        """Close the connections of this loop's engine (and of engines of finished loops);
        on SQLite, the blocking engine's, which the async face shares."""
        if self._threaded:
            await asyncio.to_thread(self.close)
            return
        loop = asyncio.get_running_loop()
        with self._lock:
            done = [
                self._async.pop(other)[0]
                for other in list(self._async)
                if other is loop or other.is_closed()
            ]
        for engine in done:
            await self._adispose(engine)

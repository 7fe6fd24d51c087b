"""``DjangoStore``: keysentry's ``KeyStore`` and ``AccountStore`` over the Django ORM, in the
project's database.

Both faces: the blocking one for WSGI, the management command, the admin and the usage
flusher's thread; the async one for ASGI, whose reads (the cache misses of the request path)
use Django's async ORM and whose writes run the blocking twin through ``sync_to_async``, as
Django asks of anything that needs a transaction.

Every write touches the row first, inside its transaction, and reads it afterwards: on
PostgreSQL ``SELECT ... FOR UPDATE`` (or the write itself) locks the row until the commit; on
SQLite the first write takes the database's write lock, waiting out other writers (a read
first would be refused, not made to wait, when it came to write). So ``update`` on a condition
(``expect=``), ``delete``, ``spend_credits`` (with the refill that is due, decided by
:func:`~keysentry.refills.apply_refill` on the locked row: concurrent spends see one refill,
and a refused spend writes nothing) and their account twins are atomic on both, and a record
returned is the one written. An account's first change inserts its row (``ON CONFLICT DO
NOTHING``: two first changes at once both land) before locking it.

Ids are ordered by code point (``COLLATE "C"`` on PostgreSQL, SQLite's own binary order), as
every keysentry store orders them. Database errors become :class:`StoreUnavailable` naming
the database alias, never a row's values.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connections, transaction
from django.db.models import Case, F, QuerySet, Value, When
from django.db.models.functions import Collate

from ..accounts import (
    AccountChanges,
    AccountRecord,
    changed_account,
    decode_account,
    encode_account,
)
from ..errors import DuplicateKey, KeyNotFound, StoreUnavailable
from ..keys import shown_id
from ..records import KeyRecord
from ..stores import codec
from ..stores.base import Balance, KeyChanges, Usage, apply_changes, charged, check_expected
from .models import Account, APIKey

__all__ = ["DjangoStore"]

_JSON = frozenset({"scopes", "rate_limit", "allowed_networks", "metadata"})
_TIMES = frozenset({"created_at", "expires_at", "last_used_at", "revoked_at", "refilled_at"})


def db_time(value: datetime | None) -> datetime | None:
    """A UTC time as the database takes it: aware with ``USE_TZ``, naive UTC without."""
    if value is None:
        return None
    value = value.astimezone(timezone.utc)
    return value if settings.USE_TZ else value.replace(tzinfo=None)


def columns(record: KeyRecord, names: Sequence[str] = codec.FIELDS) -> dict[str, Any]:
    """The model's column values of ``record`` (those in ``names``)."""
    encoded = codec.encode(record)
    values: dict[str, Any] = {}
    for name in names:
        value: Any = encoded[name]
        if name in _JSON:
            value = None if value is None else json.loads(str(value))
        elif name in _TIMES:
            value = db_time(getattr(record, name))
        elif name == "disabled":
            value = record.disabled
        values[name] = value
    return values


def record_of(row: Mapping[str, Any]) -> KeyRecord:
    """The record a row of :class:`APIKey` holds (``row``: its column values)."""
    values = dict(row)
    for name in _JSON:
        value = values.get(name)
        values[name] = None if value is None else json.dumps(value)
    return codec.decode(values)


def account_columns(account: AccountRecord) -> dict[str, Any]:
    """The :class:`Account` column values of ``account`` (its owner aside)."""
    rates = encode_account(account)["rate_limit"]
    return {
        "disabled": account.disabled,
        "credits": account.credits,
        "rate_limit": str(rates).split(",") if rates else None,
        "refill": None if account.refill is None else str(account.refill),
        "refilled_at": db_time(account.refilled_at),
    }


def account_of(row: Mapping[str, Any]) -> AccountRecord:
    """The account a row of :class:`Account` holds (``row``: its column values)."""
    rates = row.get("rate_limit")
    return decode_account(
        {**row, "disabled": int(bool(row["disabled"])), "rate_limit": ",".join(rates or ())}
    )


class DjangoStore:
    """Keys in the ``APIKey`` table of the database ``using`` (an alias of ``DATABASES``)."""

    def __init__(self, using: str = "default") -> None:
        self.using = using

    def __repr__(self) -> str:
        return f"DjangoStore(using={self.using!r})"

    # -- helpers ---------------------------------------------------------------------------------

    def _rows(self) -> QuerySet[APIKey]:
        rows: QuerySet[APIKey] = APIKey.objects.using(self.using)
        return rows

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Database errors as the store contract's: :class:`DuplicateKey` for a unique
        column, :class:`StoreUnavailable` for the rest (the alias and the error's first line:
        never a row's values)."""
        try:
            yield
        except IntegrityError:
            raise DuplicateKey("a key with that id or digest exists") from None
        except DatabaseError as exc:
            # A connection the server dropped is not reused: the next call opens another
            # (request threads get this from Django; the usage flusher's thread does not).
            connection = connections[self.using]
            if not connection.in_atomic_block:
                connection.close_if_unusable_or_obsolete()
            raise StoreUnavailable(
                f"the database {self.using!r} failed ({type(exc).__name__}): {_first_line(exc)}"
            ) from None

    def _accounts(self) -> QuerySet[Account]:
        rows: QuerySet[Account] = Account.objects.using(self.using)
        return rows

    def _locked(self, rows: QuerySet[Any]) -> list[dict[str, Any]]:
        """The values of ``rows`` (of a model with ``disabled``), locked until the
        transaction ends."""
        if connections[self.using].features.has_select_for_update:
            return list(rows.select_for_update().values())
        # SQLite: a write takes the lock (waiting for other writers), then the read.
        return list(rows.values()) if rows.update(disabled=F("disabled")) else []

    def _lock(self, key_id: str) -> KeyRecord:
        """The current record, locked until the transaction ends; :class:`KeyNotFound`."""
        found = self._locked(self._rows().filter(pk=key_id))
        if not found:
            raise KeyNotFound(f"no key with id {shown_id(key_id)!r}")
        return record_of(found[0])

    def _spend(self, rows: QuerySet[Any], current: Balance, amount: int) -> int | None:
        """Spend from ``current``, the locked row of ``rows``: the balance left, or None."""
        spent = charged(current, amount)
        if spent is None or spent.credits is None:
            return None
        rows.update(credits=spent.credits, refilled_at=db_time(spent.refilled_at))
        return spent.credits

    def _ordered(self, rows: QuerySet[APIKey]) -> QuerySet[APIKey]:
        ordered: QuerySet[APIKey]
        if connections[self.using].vendor == "postgresql":
            ordered = rows.annotate(code_point_id=Collate("id", "C")).order_by("code_point_id")
        else:
            ordered = rows.order_by("id")
        return ordered

    # -- the blocking face -----------------------------------------------------------------------

    def get(self, key_id: str) -> KeyRecord | None:
        with self.errors():
            found = list(self._rows().filter(pk=key_id).values())
        return record_of(found[0]) if found else None

    def find_by_digest(self, digest: bytes) -> KeyRecord | None:
        with self.errors():
            found = list(self._rows().filter(digest=digest.hex()).values())
        return record_of(found[0]) if found else None

    def create(self, record: KeyRecord) -> None:
        with self.errors(), transaction.atomic(using=self.using):
            self._rows().create(**columns(record))

    def update(
        self, key_id: str, changes: KeyChanges, expect: Mapping[str, object] | None = None
    ) -> KeyRecord:
        with self.errors(), transaction.atomic(using=self.using):
            current = self._lock(key_id)
            check_expected(current, expect)
            record = apply_changes(current, changes)
            if changes:
                self._rows().filter(pk=key_id).update(**columns(record, list(changes)))
            return record

    def delete(self, key_id: str, expect: Mapping[str, object] | None = None) -> KeyRecord:
        with self.errors(), transaction.atomic(using=self.using):
            current = self._lock(key_id)
            check_expected(current, expect)
            self._rows().filter(pk=key_id).delete()
            return current

    def list_keys(
        self, *, owner: str | None = None, after: str | None = None, limit: int = 100
    ) -> Sequence[KeyRecord]:
        with self.errors():
            return [record_of(row) for row in self._page(owner, after, limit)]

    def _page(self, owner: str | None, after: str | None, limit: int) -> QuerySet[APIKey, Any]:
        rows = self._rows()
        if owner is not None:
            rows = rows.filter(owner=owner)
        rows = self._ordered(rows)
        if after is not None:
            if connections[self.using].vendor == "postgresql":
                rows = rows.filter(code_point_id__gt=Collate(Value(after), "C"))
            else:
                rows = rows.filter(id__gt=after)
        page: QuerySet[APIKey, Any] = rows.values(*codec.FIELDS)[: max(limit, 0)]
        return page

    def spend_credits(self, key_id: str, amount: int = 1) -> int | None:
        if amount == 0:
            raise ValueError("an amount of credits cannot be zero")
        with self.errors(), transaction.atomic(using=self.using):
            return self._spend(self._rows().filter(pk=key_id), self._lock(key_id), amount)

    # -- accounts --------------------------------------------------------------------------------

    def get_account(self, owner: str) -> AccountRecord | None:
        with self.errors():
            found = list(self._accounts().filter(pk=owner).values())
        return account_of(found[0]) if found else None

    def update_account(self, owner: str, changes: AccountChanges) -> AccountRecord:
        with self.errors(), transaction.atomic(using=self.using):
            rows = self._accounts().filter(pk=owner)
            found = self._locked(rows)
            if not found:
                # A first change: the row made (or, made meanwhile, waited for), then locked.
                self._accounts().bulk_create([Account(owner=owner)], ignore_conflicts=True)
                found = self._locked(rows)
            account = changed_account(owner, account_of(found[0]), changes)
            rows.update(**account_columns(account))
            return account

    def spend_account_credits(self, owner: str, amount: int = 1) -> int | None:
        if amount == 0:
            raise ValueError("an amount of credits cannot be zero")
        with self.errors(), transaction.atomic(using=self.using):
            rows = self._accounts().filter(pk=owner)
            found = self._locked(rows)
            return self._spend(rows, account_of(found[0]), amount) if found else None

    def record_usage(self, usage: Mapping[str, Usage]) -> None:
        if not usage:
            return
        with self.errors(), transaction.atomic(using=self.using):
            for key_id, (count, last) in usage.items():
                at = db_time(last)
                self._rows().filter(pk=key_id).update(
                    request_count=F("request_count") + count,
                    last_used_at=Case(
                        When(last_used_at__gt=at, then=F("last_used_at")), default=Value(at)
                    ),
                )

    def close(self) -> None:
        """Nothing to release: Django owns the connections (``CONN_MAX_AGE``)."""

    # -- the async face --------------------------------------------------------------------------

    async def aget(self, key_id: str) -> KeyRecord | None:
        with self.errors():
            row = await self._rows().filter(pk=key_id).values().afirst()
        return None if row is None else record_of(row)

    async def afind_by_digest(self, digest: bytes) -> KeyRecord | None:
        with self.errors():
            row = await self._rows().filter(digest=digest.hex()).values().afirst()
        return None if row is None else record_of(row)

    async def acreate(self, record: KeyRecord) -> None:
        await sync_to_async(self.create)(record)

    async def aupdate(
        self, key_id: str, changes: KeyChanges, expect: Mapping[str, object] | None = None
    ) -> KeyRecord:
        return await sync_to_async(self.update)(key_id, changes, expect)

    async def adelete(self, key_id: str, expect: Mapping[str, object] | None = None) -> KeyRecord:
        return await sync_to_async(self.delete)(key_id, expect)

    async def alist_keys(
        self, *, owner: str | None = None, after: str | None = None, limit: int = 100
    ) -> Sequence[KeyRecord]:
        with self.errors():
            return [record_of(row) async for row in self._page(owner, after, limit)]

    async def aspend_credits(self, key_id: str, amount: int = 1) -> int | None:
        return await sync_to_async(self.spend_credits)(key_id, amount)

    async def aget_account(self, owner: str) -> AccountRecord | None:
        with self.errors():
            row = await self._accounts().filter(pk=owner).values().afirst()
        return None if row is None else account_of(row)

    async def aupdate_account(self, owner: str, changes: AccountChanges) -> AccountRecord:
        return await sync_to_async(self.update_account)(owner, changes)

    async def aspend_account_credits(self, owner: str, amount: int = 1) -> int | None:
        return await sync_to_async(self.spend_account_credits)(owner, amount)

    async def arecord_usage(self, usage: Mapping[str, Usage]) -> None:
        await sync_to_async(self.record_usage)(usage)

    async def aclose(self) -> None:
        pass


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__

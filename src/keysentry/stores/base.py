"""The store contract, sync and async.

A store keeps :class:`~keysentry.records.KeyRecord` values by id, finds imported keys by digest,
and applies changes atomically. The WSGI driver uses the sync face, the ASGI driver the async
face; a backend offers the faces it can do without blocking an event loop (the memory store
offers both). Backends raise :class:`~keysentry.errors.StoreUnavailable` for any failure to
reach their server, :class:`~keysentry.errors.KeyNotFound` and
:class:`~keysentry.errors.DuplicateKey` for the two contract errors, and nothing else.

``delete`` (:class:`DeletingKeyStore`, optional for a store of your own) removes a record with
everything that finds it (its digest, its place in listings), optionally on a condition like
``update``.

Two operations are not read-modify-write from the outside, because they must be atomic under
concurrency on the server's side: :meth:`KeyStore.spend_credits` (a conditional decrement) and
:meth:`KeyStore.record_usage` (increments from the batched usage flusher).

Usage history (:class:`UsageHistoryStore`, optional like ``delete``; every store keysentry
ships keeps it): ``record_usage`` also adds each key's requests to a counter for the UTC day of
its ``last_used_at`` (and per route template, when the caller knows them), in the same atomic
step where the store can, and drops days older than the retention it is given as it writes;
``usage_history`` reads them back.

``keysentry.testing`` holds the conformance suite that proves a backend honours this contract.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import NamedTuple, Protocol, TypedDict, TypeVar, runtime_checkable

from ..accounts import AccountChanges, AccountRecord, Refill
from ..errors import Conflict, InsufficientCredits, StoreUnavailable
from ..history import DEFAULT_RETENTION_DAYS, DailyUsage
from ..records import KeyRecord, Network, Rate, utcnow
from ..refills import apply_refill

__all__ = [
    "AccountStore",
    "AsyncAccountStore",
    "AsyncDeletingKeyStore",
    "AsyncKeyStore",
    "AsyncUsageHistoryStore",
    "DeletingKeyStore",
    "KeyChanges",
    "KeyStore",
    "RouteCounts",
    "Usage",
    "UsageHistoryStore",
    "UsageNotRecorded",
    "apply_changes",
    "check_expected",
]


class Usage(NamedTuple):
    """One key's use over a batch interval: requests made, and when the last one was."""

    requests: int
    last_used_at: datetime


#: Requests per route template, per key id, over a batch interval.
RouteCounts = Mapping[str, Mapping[str, int]]


class UsageNotRecorded(StoreUnavailable):
    """:meth:`KeyStore.record_usage` wrote part of a batch only (a store spread over several
    servers, one of them down): ``unwritten`` is the rest, which the caller may send again
    without counting twice what was written."""

    def __init__(self, message: str, unwritten: Mapping[str, Usage]) -> None:
        super().__init__(message)
        self.unwritten = dict(unwritten)


class KeyChanges(TypedDict, total=False):
    """The fields of a record that may change after creation."""

    name: str
    owner: str | None
    scopes: Iterable[str]
    expires_at: datetime | None
    last_used_at: datetime | None
    disabled: bool
    revoked_at: datetime | None
    rate_limit: str | Rate | Iterable[str | Rate] | None
    allowed_networks: Iterable[str | Network]
    credits: int | None
    metadata: dict[str, object]
    rotated_to: str | None
    credits_from: str | None
    refill: Refill | None
    refilled_at: datetime | None


_MUTABLE = frozenset(KeyChanges.__annotations__)


def apply_changes(record: KeyRecord, changes: KeyChanges) -> KeyRecord:
    """The record with ``changes`` applied; refuses fields that are fixed at creation."""
    unknown = set(changes) - _MUTABLE
    if unknown:
        raise ValueError(f"these key fields cannot be changed: {', '.join(sorted(unknown))}")
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


def check_expected(record: KeyRecord, expect: Mapping[str, object] | None) -> None:
    """Raise :class:`Conflict` unless each field named in ``expect`` has that value."""
    if expect:
        for name, value in expect.items():
            if getattr(record, name) != value:
                raise Conflict(f"key {record.id}: {name} has changed")


@runtime_checkable
class KeyStore(Protocol):
    """Blocking store, for WSGI servers, the CLI and scripts."""

    def get(self, key_id: str) -> KeyRecord | None:
        """The record with this id, revoked or not; None when there is none."""

    def find_by_digest(self, digest: bytes) -> KeyRecord | None:
        """The record with this digest (how imported keys are found); None when there is none."""

    def create(self, record: KeyRecord) -> None:
        """Add a record; :class:`DuplicateKey` if its id or digest is taken."""

    def update(
        self, key_id: str, changes: KeyChanges, expect: Mapping[str, object] | None = None
    ) -> KeyRecord:
        """Apply ``changes`` atomically and return the new record; :class:`KeyNotFound` if none.

        With ``expect`` (field name -> value), only if the record has those values when the
        change is applied, in the same atomic step; else :class:`Conflict` and no change.
        """

    def list_keys(
        self, *, owner: str | None = None, after: str | None = None, limit: int = 100
    ) -> Sequence[KeyRecord]:
        """Records ordered by id, those with ids greater than ``after``, at most ``limit``."""

    def spend_credits(self, key_id: str, amount: int = 1) -> int | None:
        """Take ``amount`` credits from a key atomically, never going below zero; a negative
        amount gives credits back (a refund, never refused). A refill that is due
        (:func:`~keysentry.accounts.apply_refill`) is applied first, in the same atomic step.

        Returns the balance left, or None when the key has no credit limit (nothing taken).
        Raises :class:`InsufficientCredits` (taking nothing) when fewer than ``amount`` are
        left, :class:`KeyNotFound` when there is no such key, ``ValueError`` for 0.
        """

    def record_usage(self, usage: Mapping[str, Usage]) -> None:
        """Add each key's count to its ``request_count`` and move its ``last_used_at``
        forward (never back), for many keys at once. Ids with no record are skipped.

        When part of the batch was written and part was not, raise
        :class:`UsageNotRecorded` naming the part that was not; any other error means none
        of it was written (as far as the store knows)."""

    def close(self) -> None:
        """Release connections. The store may not be used afterwards."""


@runtime_checkable
class AsyncKeyStore(Protocol):
    """Non-blocking twin of :class:`KeyStore`, for ASGI apps."""

    async def aget(self, key_id: str) -> KeyRecord | None: ...

    async def afind_by_digest(self, digest: bytes) -> KeyRecord | None: ...

    async def acreate(self, record: KeyRecord) -> None: ...

    async def aupdate(
        self, key_id: str, changes: KeyChanges, expect: Mapping[str, object] | None = None
    ) -> KeyRecord: ...

    async def alist_keys(
        self, *, owner: str | None = None, after: str | None = None, limit: int = 100
    ) -> Sequence[KeyRecord]: ...

    async def aspend_credits(self, key_id: str, amount: int = 1) -> int | None: ...

    async def arecord_usage(self, usage: Mapping[str, Usage]) -> None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class DeletingKeyStore(KeyStore, Protocol):
    """A :class:`KeyStore` that can also remove records (every store keysentry ships).
    Optional: a store of your own without ``delete`` keeps working, and
    :meth:`Keysentry.delete <keysentry.Keysentry.delete>` tells you to revoke instead."""

    def delete(self, key_id: str, expect: Mapping[str, object] | None = None) -> KeyRecord:
        """Remove a record atomically (on ``expect``), then its digest entry and its place in
        every listing (one step where the store can; Redis removes the record first, so a crash
        leaves only index entries that readers skip), and return what it held;
        :class:`KeyNotFound` if there is none. Its id and digest are then free, as if it had
        never been created.

        With ``expect``, only if the record has those values when it is removed, in the same
        atomic step; else :class:`Conflict` and nothing is removed.
        """


@runtime_checkable
class AsyncDeletingKeyStore(AsyncKeyStore, Protocol):
    """The async twin of :class:`DeletingKeyStore`."""

    async def adelete(
        self, key_id: str, expect: Mapping[str, object] | None = None
    ) -> KeyRecord: ...


@runtime_checkable
class UsageHistoryStore(KeyStore, Protocol):
    """A :class:`KeyStore` that also keeps requests per key per UTC day (every store
    keysentry ships). Optional: a store of your own without it keeps working (its
    ``record_usage`` is called as before), and :meth:`Keysentry.usage
    <keysentry.Keysentry.usage>` says that it keeps no history."""

    def record_usage(
        self,
        usage: Mapping[str, Usage],
        routes: RouteCounts | None = None,
        *,
        retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
        """What :meth:`KeyStore.record_usage` does, and add each key's requests to its
        counter for the UTC day of its ``last_used_at``; ``routes`` (key id -> route
        template -> requests, a part of those requests) to its route counters for that day.
        Ids with no record are skipped. Days more than ``retention_days`` before the day
        written are dropped, by the store, as it writes (not necessarily on every write)."""

    def usage_history(
        self, key_ids: Sequence[str], since: date
    ) -> Mapping[str, Sequence[DailyUsage]]:
        """Per key id asked for, its days from ``since`` (UTC) on that have use, in any
        order; ids without any (or without a record) may be missing from the result."""


@runtime_checkable
class AsyncUsageHistoryStore(AsyncKeyStore, Protocol):
    """The async twin of :class:`UsageHistoryStore`."""

    async def arecord_usage(
        self,
        usage: Mapping[str, Usage],
        routes: RouteCounts | None = None,
        *,
        retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None: ...

    async def ausage_history(
        self, key_ids: Sequence[str], since: date
    ) -> Mapping[str, Sequence[DailyUsage]]: ...


@runtime_checkable
class AccountStore(Protocol):
    """A store that also keeps accounts (every store keysentry ships). Optional: with a store
    of your own without it, keys work as before and the account calls of
    :class:`~keysentry.Keysentry` say the store has no accounts."""

    def get_account(self, owner: str) -> AccountRecord | None:
        """The account of ``owner``; None when it has no record."""

    def update_account(self, owner: str, changes: AccountChanges) -> AccountRecord:
        """Apply ``changes`` atomically (creating the account if it has no record) and return
        the account as it now is."""

    def spend_account_credits(self, owner: str, amount: int = 1) -> int | None:
        """:meth:`KeyStore.spend_credits` for an account's balance (a due refill first): the
        balance left, None when the account has no record or no balance (nothing taken);
        :class:`InsufficientCredits` when fewer than ``amount`` are left."""


@runtime_checkable
class AsyncAccountStore(Protocol):
    """The async twin of :class:`AccountStore`."""

    async def aget_account(self, owner: str) -> AccountRecord | None: ...

    async def aupdate_account(self, owner: str, changes: AccountChanges) -> AccountRecord: ...

    async def aspend_account_credits(self, owner: str, amount: int = 1) -> int | None: ...


Balance = TypeVar("Balance", KeyRecord, AccountRecord)


def charged(current: Balance, amount: int) -> Balance | None:
    """``current`` after spending ``amount``, a due refill first
    (:func:`~keysentry.refills.apply_refill`): the one rule of a spend, for stores that hold
    records in Python (memory, Django); None when it has no balance;
    :class:`InsufficientCredits`, changing nothing, when too little is left."""
    credits, refilled_at = current.credits, current.refilled_at
    refilled = apply_refill(credits, current.refill, refilled_at, utcnow())
    if refilled is not None:
        credits, refilled_at = refilled
    if credits is None:
        return None
    if amount > 0 and credits < amount:
        raise InsufficientCredits(credits)
    return dataclasses.replace(current, credits=credits - amount, refilled_at=refilled_at)

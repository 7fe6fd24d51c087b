"""The in-process store: a dict behind a lock, for tests, demos and single-process apps."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence
from datetime import date, timedelta

from ..accounts import AccountChanges, AccountRecord, changed_account
from ..errors import DuplicateKey, KeyNotFound
from ..history import DEFAULT_RETENTION_DAYS, DailyUsage, utc_day
from ..keys import shown_id
from ..records import KeyRecord
from .base import KeyChanges, RouteCounts, Usage, apply_changes, charged, check_expected

__all__ = ["MemoryStore"]


class MemoryStore:
    """Thread-safe, with both the sync and the async face (it never waits on I/O)."""

    def __init__(self, records: Sequence[KeyRecord] = ()) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, KeyRecord] = {}
        self._by_digest: dict[bytes, str] = {}
        #: key id -> UTC day -> [requests, {route template: requests}]
        self._history: dict[str, dict[date, tuple[list[int], dict[str, int]]]] = {}
        #: The oldest day kept when history was last pruned (once a day at most).
        self._kept_from: date | None = None
        self._accounts: dict[str, AccountRecord] = {}
        for record in records:
            self.create(record)

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._by_id)} keys)"

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, key_id: str) -> KeyRecord | None:
        return self._by_id.get(key_id)

    def find_by_digest(self, digest: bytes) -> KeyRecord | None:
        key_id = self._by_digest.get(digest)
        return None if key_id is None else self._by_id.get(key_id)

    def create(self, record: KeyRecord) -> None:
        with self._lock:
            if record.id in self._by_id or record.digest in self._by_digest:
                raise DuplicateKey(f"a key with id {record.id!r} or the same digest exists")
            self._by_id[record.id] = record
            self._by_digest[record.digest] = record.id

    def _current(self, key_id: str) -> KeyRecord:
        current = self._by_id.get(key_id)
        if current is None:
            raise KeyNotFound(f"no key with id {shown_id(key_id)!r}")
        return current

    def update(
        self, key_id: str, changes: KeyChanges, expect: Mapping[str, object] | None = None
    ) -> KeyRecord:
        with self._lock:
            current = self._current(key_id)
            check_expected(current, expect)
            record = apply_changes(current, changes)
            self._by_id[key_id] = record
            return record

    def delete(self, key_id: str, expect: Mapping[str, object] | None = None) -> KeyRecord:
        with self._lock:
            current = self._current(key_id)
            check_expected(current, expect)
            del self._by_id[key_id]
            del self._by_digest[current.digest]
            self._history.pop(key_id, None)
            return current

    def spend_credits(self, key_id: str, amount: int = 1) -> int | None:
        if amount == 0:
            raise ValueError("an amount of credits cannot be zero")
        with self._lock:
            current = self._current(key_id)
            spent = charged(current, amount)
            if spent is not None:
                self._by_id[key_id] = spent
            return None if spent is None else spent.credits

    def get_account(self, owner: str) -> AccountRecord | None:
        return self._accounts.get(owner)

    def update_account(self, owner: str, changes: AccountChanges) -> AccountRecord:
        with self._lock:
            account = changed_account(owner, self._accounts.get(owner), changes)
            self._accounts[owner] = account
            return account

    def spend_account_credits(self, owner: str, amount: int = 1) -> int | None:
        if amount == 0:
            raise ValueError("an amount of credits cannot be zero")
        with self._lock:
            current = self._accounts.get(owner)
            if current is None:
                return None
            spent = charged(current, amount)
            if spent is not None:
                self._accounts[owner] = spent
            return None if spent is None else spent.credits

    def record_usage(
        self,
        usage: Mapping[str, Usage],
        routes: RouteCounts | None = None,
        *,
        retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
        with self._lock:
            newest: date | None = None
            for key_id, (count, when) in usage.items():
                current = self._by_id.get(key_id)
                if current is None:
                    continue
                last = when
                if current.last_used_at is not None and current.last_used_at > last:
                    last = current.last_used_at
                self._by_id[key_id] = dataclasses.replace(
                    current, request_count=current.request_count + count, last_used_at=last
                )
                day = utc_day(when)
                newest = day if newest is None else max(newest, day)
                totals, by_route = self._history.setdefault(key_id, {}).setdefault(day, ([0], {}))
                totals[0] += count
                for route, n in (routes or {}).get(key_id, {}).items():
                    by_route[route] = by_route.get(route, 0) + n
            if newest is not None:
                self._prune(newest - timedelta(days=retention_days))

    def _prune(self, kept_from: date) -> None:
        """Drop the days before ``kept_from``: at most once a day (the lock is held)."""
        if self._kept_from is not None and kept_from <= self._kept_from:
            return
        self._kept_from = kept_from
        for key_id, days in list(self._history.items()):
            for day in [d for d in days if d < kept_from]:
                del days[day]
            if not days:
                del self._history[key_id]

    def usage_history(
        self, key_ids: Sequence[str], since: date
    ) -> Mapping[str, Sequence[DailyUsage]]:
        with self._lock:
            return {
                key_id: [
                    DailyUsage(day, totals[0], by_route)
                    for day, (totals, by_route) in self._history[key_id].items()
                    if day >= since
                ]
                for key_id in key_ids
                if key_id in self._history
            }

    def list_keys(
        self, *, owner: str | None = None, after: str | None = None, limit: int = 100
    ) -> Sequence[KeyRecord]:
        with self._lock:
            records = sorted(self._by_id.values(), key=lambda r: r.id)
        return [
            r
            for r in records
            if (owner is None or r.owner == owner) and (after is None or r.id > after)
        ][: max(limit, 0)]

    def close(self) -> None:
        pass

    async def aget(self, key_id: str) -> KeyRecord | None:
        return self.get(key_id)

    async def afind_by_digest(self, digest: bytes) -> KeyRecord | None:
        return self.find_by_digest(digest)

    async def acreate(self, record: KeyRecord) -> None:
        self.create(record)

    async def aupdate(
        self, key_id: str, changes: KeyChanges, expect: Mapping[str, object] | None = None
    ) -> KeyRecord:
        return self.update(key_id, changes, expect)

    async def adelete(self, key_id: str, expect: Mapping[str, object] | None = None) -> KeyRecord:
        return self.delete(key_id, expect)

    async def alist_keys(
        self, *, owner: str | None = None, after: str | None = None, limit: int = 100
    ) -> Sequence[KeyRecord]:
        return self.list_keys(owner=owner, after=after, limit=limit)

    async def aspend_credits(self, key_id: str, amount: int = 1) -> int | None:
        return self.spend_credits(key_id, amount)

    async def arecord_usage(
        self,
        usage: Mapping[str, Usage],
        routes: RouteCounts | None = None,
        *,
        retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
        self.record_usage(usage, routes, retention_days=retention_days)

    async def ausage_history(
        self, key_ids: Sequence[str], since: date
    ) -> Mapping[str, Sequence[DailyUsage]]:
        return self.usage_history(key_ids, since)

    async def aget_account(self, owner: str) -> AccountRecord | None:
        return self.get_account(owner)

    async def aupdate_account(self, owner: str, changes: AccountChanges) -> AccountRecord:
        return self.update_account(owner, changes)

    async def aspend_account_credits(self, owner: str, amount: int = 1) -> int | None:
        return self.spend_account_credits(owner, amount)

    async def aclose(self) -> None:
        pass

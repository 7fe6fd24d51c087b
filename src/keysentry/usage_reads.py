"""Reading usage history: requests per key (or per account) per UTC day, for dashboards,
invoices and the CLI.

:class:`UsageReads` is the half of :class:`~keysentry.Keysentry` (which inherits it) that
reads what the usage flusher wrote: :meth:`~UsageReads.usage` for one key,
:meth:`~UsageReads.account_usage` for every key of an owner, each with an ``a*`` twin. The
store must keep history (:class:`~keysentry.stores.base.UsageHistoryStore`, as every store
keysentry ships does); "today" is the UTC day of the guard's clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone

from . import _fields as check
from .errors import KeyNotFound
from .history import MAX_DAYS, DailyUsage, UsageHistory, window
from .keys import shown_id
from .settings import Settings
from .stores.base import AsyncKeyStore, AsyncUsageHistoryStore, KeyStore, UsageHistoryStore

__all__ = ["UsageReads"]

#: Keys listed per page, and asked about per history read, for an account.
_PAGE = 500


class UsageReads:
    """Usage history of keys and accounts. Keysentry sets the attributes below."""

    settings: Settings
    store: KeyStore | AsyncKeyStore
    _sync_store: KeyStore | None
    _async_store: AsyncKeyStore | None

    def usage(self, key_id: str, *, days: int = 30) -> UsageHistory:
        """A key's requests per UTC day over the last ``days`` days (today included, last),
        days without use as zeros, and per route template where the guard counts them
        (``usage_routes``). :class:`KeyNotFound` when there is no such key (revoked keys
        have a history; deleted ones do not)."""
        check.key_id(key_id)
        count = _days(days)
        store = self._history()
        if store.get(key_id) is None:
            raise KeyNotFound(f"no key with id {shown_id(key_id)!r}")
        today = self._today()
        read = store.usage_history([key_id], _since(today, count))
        return window(today, count, {key_id: read.get(key_id, ())})

    async def ausage(self, key_id: str, *, days: int = 30) -> UsageHistory:
        check.key_id(key_id)
        count = _days(days)
        store = self._ahistory()
        if await store.aget(key_id) is None:
            raise KeyNotFound(f"no key with id {shown_id(key_id)!r}")
        today = self._today()
        read = await store.ausage_history([key_id], _since(today, count))
        return window(today, count, {key_id: read.get(key_id, ())})

    def account_usage(self, owner: str, *, days: int = 30) -> UsageHistory:
        """The usage of every key of ``owner`` (revoked ones included), summed per day, with
        each key's total over the window in ``keys`` (keys without use as 0). An owner
        without keys has a window of zeros and no keys."""
        check.text(owner, "owner")
        count = _days(days)
        store = self._history()
        today = self._today()
        since = _since(today, count)
        read: dict[str, Sequence[DailyUsage]] = {}
        after: str | None = None
        while True:
            page = store.list_keys(owner=owner, after=after, limit=_PAGE)
            ids = [record.id for record in page]
            read.update(dict.fromkeys(ids, ()))
            if ids:
                read.update(store.usage_history(ids, since))
            if len(page) < _PAGE:
                return window(today, count, read)
            after = ids[-1]

    async def aaccount_usage(self, owner: str, *, days: int = 30) -> UsageHistory:
        check.text(owner, "owner")
        count = _days(days)
        store = self._ahistory()
        today = self._today()
        since = _since(today, count)
        read: dict[str, Sequence[DailyUsage]] = {}
        after: str | None = None
        while True:
            page = await store.alist_keys(owner=owner, after=after, limit=_PAGE)
            ids = [record.id for record in page]
            read.update(dict.fromkeys(ids, ()))
            if ids:
                read.update(await store.ausage_history(ids, since))
            if len(page) < _PAGE:
                return window(today, count, read)
            after = ids[-1]

    def _today(self) -> date:
        return datetime.fromtimestamp(self.settings.clock(), timezone.utc).date()

    def _history(self) -> UsageHistoryStore:
        store = self._sync_store
        if store is None:
            raise TypeError(f"{type(self.store).__name__} has no blocking face: use the a* methods")
        if not isinstance(store, UsageHistoryStore):
            raise TypeError(_NO_HISTORY.format(type(store).__name__, "usage_history"))
        return store

    def _ahistory(self) -> AsyncUsageHistoryStore:
        store = self._async_store
        if store is None:
            raise TypeError(f"{type(self.store).__name__} has no async face: use the sync methods")
        if not isinstance(store, AsyncUsageHistoryStore):
            raise TypeError(_NO_HISTORY.format(type(store).__name__, "ausage_history"))
        return store


_NO_HISTORY = (
    "{} keeps no usage history: it has no {}() (UsageHistoryStore, optional for a store of "
    "your own); its keys' request_count and last_used_at are the usage it records"
)


def _days(days: object) -> int:
    if isinstance(days, bool) or not isinstance(days, int):
        raise TypeError(f"days must be a whole number of days, not {type(days).__name__}")
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be from 1 to {MAX_DAYS}, not {days}")
    return days


def _since(today: date, days: int) -> date:
    return today - timedelta(days=days - 1)

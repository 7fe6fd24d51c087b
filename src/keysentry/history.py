"""Usage history: requests per key per UTC day (and per route template where known), as values.

The usage flusher (``keysentry.usage``) counts each batch into the UTC day of its drain, and
stores that keep history (:class:`~keysentry.stores.base.UsageHistoryStore`) add it to per-day
counters. Reading gives :class:`UsageHistory`: one :class:`DailyUsage` per day of a window,
oldest first, days without use included as zeros, so a chart or an invoice needs no gaps
filled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from types import MappingProxyType

__all__ = ["DEFAULT_RETENTION_DAYS", "MAX_DAYS", "DailyUsage", "UsageHistory", "utc_day", "window"]

#: Days of history a store keeps unless told otherwise (``usage_retention_days``).
DEFAULT_RETENTION_DAYS = 90
#: The longest window a read may ask for, and the longest retention: ten years.
MAX_DAYS = 3660


def utc_day(when: datetime) -> date:
    """The UTC day of an aware datetime."""
    return when.astimezone(timezone.utc).date()


@dataclass(frozen=True, slots=True)
class DailyUsage:
    """One UTC day of a key's (or an account's) use: requests let through, and how many of
    them went to each route template (empty when the framework did not say)."""

    day: date
    requests: int = 0
    routes: Mapping[str, int] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.routes, MappingProxyType):
            object.__setattr__(self, "routes", MappingProxyType(dict(self.routes)))


@dataclass(frozen=True, slots=True)
class UsageHistory:
    """Requests per day over a window of days, oldest first, today (UTC) last.

    ``keys`` holds each key's total over the window: the one key asked for
    (``Keysentry.usage``), or every key of an account, revoked ones included
    (``Keysentry.account_usage``).
    """

    days: tuple[DailyUsage, ...]
    keys: Mapping[str, int] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.keys, MappingProxyType):
            object.__setattr__(self, "keys", MappingProxyType(dict(self.keys)))

    @property
    def total(self) -> int:
        """Requests over the whole window."""
        return sum(day.requests for day in self.days)


def window(today: date, days: int, per_key: Mapping[str, Iterable[DailyUsage]]) -> UsageHistory:
    """The history of ``days`` days ending ``today`` from what a store read (days with use
    only, in any order, per key): summed over the keys, one entry per day."""
    first = today - timedelta(days=days - 1)
    requests = dict.fromkeys((first + timedelta(days=i) for i in range(days)), 0)
    routes: dict[date, dict[str, int]] = {}
    totals: dict[str, int] = {}
    for key_id, used in per_key.items():
        total = 0
        for entry in used:
            if entry.day not in requests:
                continue  # outside the window (a store may return more)
            requests[entry.day] += entry.requests
            total += entry.requests
            if entry.routes:
                counts = routes.setdefault(entry.day, {})
                for route, n in entry.routes.items():
                    counts[route] = counts.get(route, 0) + n
        totals[key_id] = total
    return UsageHistory(
        tuple(DailyUsage(day, n, routes.get(day, {})) for day, n in requests.items()),
        dict(sorted(totals.items())),
    )

"""Credit refills: a balance topped up once per UTC day, ISO week or month, with no job to run.

A :class:`Refill` tops a balance up (to ``amount``, or by ``amount``) on the first spend after
its period began: the store applies it in the same atomic step as the spend, so concurrent
spends see one refill. ``refilled_at`` is when it last happened; setting a refill sets it to
now, so the balance given with it stands until the next period.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

__all__ = ["INTERVALS", "MAX_CREDITS", "Refill", "apply_refill", "period_start", "period_starts"]

#: Refill periods, UTC calendar-aligned.
INTERVALS = ("day", "week", "month")
#: Most credits a balance may hold (Redis's Lua numbers are doubles: exact below 2**53).
MAX_CREDITS = 2**53 - 1


@dataclass(frozen=True, slots=True)
class Refill:
    """``amount`` credits every ``interval``: the balance set to it, or raised by it (``add``)."""

    amount: int
    interval: str
    add: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise TypeError(
                f"a refill's amount is a whole number, not {type(self.amount).__name__}"
            )
        if not 1 <= self.amount <= MAX_CREDITS:
            raise ValueError(f"a refill's amount is from 1 to {MAX_CREDITS}, not {self.amount}")
        if self.interval not in INTERVALS:
            raise ValueError(
                f"a refill's interval is one of {', '.join(INTERVALS)}, not {self.interval!r}"
            )

    @classmethod
    def parse(cls, text: str) -> Refill:
        """``1000/month`` (refill to 1000 each month) or ``+100/day`` (add 100 each day)."""
        spec = text.strip()
        add = spec.startswith("+")
        amount, sep, interval = spec.removeprefix("+").partition("/")
        interval = interval.strip().lower().removesuffix("ly")
        interval = {"dai": "day", "daily": "day"}.get(interval, interval)
        if not sep or not amount.strip().isdigit() or interval not in INTERVALS:
            raise ValueError(
                f"not a refill: {text!r} (expected e.g. '1000/month', or '+100/day' to add)"
            )
        return cls(int(amount), interval, add)

    def __str__(self) -> str:
        return f"{'+' if self.add else ''}{self.amount}/{self.interval}"

    def applied(self, credits: int | None) -> int:
        """The balance after this refill of ``credits``."""
        if self.add:
            return min((credits or 0) + self.amount, MAX_CREDITS)
        return self.amount


def period_start(interval: str, when: datetime) -> datetime:
    """The start (UTC) of the day, ISO week or month that ``when`` falls in."""
    day = when.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    if interval == "day":
        return day
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    raise ValueError(f"a refill's interval is one of {', '.join(INTERVALS)}, not {interval!r}")


def period_starts(when: datetime) -> tuple[datetime, datetime, datetime]:
    """The starts of the day, week and month of ``when`` (what a store script compares)."""
    return (
        period_start("day", when),
        period_start("week", when),
        period_start("month", when),
    )


def apply_refill(
    credits: int | None, refill: Refill | None, refilled_at: datetime | None, now: datetime
) -> tuple[int | None, datetime | None] | None:
    """``(credits, refilled_at)`` after the refill due at ``now``; None when none is due (no
    refill, or it already ran in this period). Stores call it inside their atomic spend."""
    if refill is None:
        return None
    if refilled_at is not None and refilled_at >= period_start(refill.interval, now):
        return None
    return refill.applied(credits), now

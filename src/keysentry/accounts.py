"""Accounts and credit refills: the values a store keeps beside its key records.

A key's ``owner`` names its *account*. An account with no record behaves as it always has (the
keys' own settings decide); one with a record can be disabled (every key of it answers 403
``ACCOUNT_DISABLED``), hold a credit balance that all its keys spend (instead of their own), and
a rate limit that all its keys share (on top of each key's own).

Accounts and keys both take a :class:`~keysentry.refills.Refill` of their balance.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypedDict

from .records import Rate
from .refills import MAX_CREDITS, Refill, apply_refill, period_start, period_starts

__all__ = [
    "AccountChanges",
    "AccountRecord",
    "Refill",
    "apply_refill",
    "changed_account",
    "decode_account",
    "discard_account",
    "encode_account",
    "owner_hash",
    "parse_rate",
    "rate_text",
    "period_start",
    "period_starts",
]


class AccountChanges(TypedDict, total=False):
    """The fields of an account that may change (an account is created by its first change)."""

    disabled: bool
    credits: int | None
    rate_limit: str | Rate | Iterable[str | Rate] | None
    refill: Refill | None
    refilled_at: datetime | None


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """What the store holds about one account (the ``owner`` of keys)."""

    owner: str
    disabled: bool = False
    #: The balance every key of the account spends; None: the keys' own credits decide.
    credits: int | None = None
    #: Limits shared by all the account's keys together; None or (): none.
    rate_limit: tuple[Rate, ...] | None = None
    refill: Refill | None = None
    refilled_at: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.owner, str) or not self.owner:
            raise ValueError("an account's owner is a non-empty string")
        limits: str | Rate | Iterable[str | Rate] | None = self.rate_limit
        if limits is not None and not (
            isinstance(limits, tuple) and all(isinstance(r, Rate) for r in limits)
        ):
            object.__setattr__(self, "rate_limit", Rate.parse_many(limits))
        if self.credits is not None and not 0 <= self.credits <= MAX_CREDITS:
            raise ValueError(f"an account's credits are from 0 to {MAX_CREDITS}")
        if self.refilled_at is not None:
            if self.refilled_at.tzinfo is None:
                raise ValueError("refilled_at must be timezone-aware (UTC)")
            if self.refilled_at.utcoffset():
                object.__setattr__(self, "refilled_at", self.refilled_at.astimezone(timezone.utc))

    @property
    def state(self) -> bool:
        """Whether the account changes anything for its keys' requests."""
        return self.disabled or self.credits is not None or bool(self.rate_limit)


def owner_hash(owner: str) -> str:
    """How an account is named where names must be safe and fixed-length (Redis keys, the
    invalidation channel): BLAKE2b-128 of the owner, never the owner itself."""
    return hashlib.blake2b(owner.encode(), digest_size=16).hexdigest()


def discard_account(cache: Any, hashed: str) -> int:
    """Forget every key in ``cache`` (a :class:`~keysentry.cache.TTLCache` of entries with a
    ``record``) whose owner hashes to ``hashed``: its account changed."""

    def owned(entry: Any) -> bool:
        owner = getattr(getattr(entry, "record", None), "owner", None)
        return owner is not None and owner_hash(owner) == hashed

    return int(cache.discard_where(owned))


_ACCOUNT_FIELDS = frozenset(AccountChanges.__annotations__)


def changed_account(
    owner: str, current: AccountRecord | None, changes: AccountChanges
) -> AccountRecord:
    """``current`` (or a new account of ``owner``) with ``changes`` applied."""
    unknown = set(changes) - _ACCOUNT_FIELDS
    if unknown:
        raise ValueError(f"these account fields cannot be changed: {', '.join(sorted(unknown))}")
    values: dict[str, object] = {}
    if current is not None:
        values = {
            "disabled": current.disabled,
            "credits": current.credits,
            "rate_limit": current.rate_limit,
            "refill": current.refill,
            "refilled_at": current.refilled_at,
        }
    values.update(changes)
    return AccountRecord(owner, **values)  # type: ignore[arg-type]


def encode_account(account: AccountRecord) -> dict[str, str | int | None]:
    """An account as strings, integers and None (the codec of :mod:`.stores.codec`)."""
    return {
        "owner": account.owner,
        "disabled": int(account.disabled),
        "credits": account.credits,
        "rate_limit": None
        if account.rate_limit is None
        else ",".join(rate_text(r) for r in account.rate_limit),
        "refill": None if account.refill is None else str(account.refill),
        "refilled_at": None
        if account.refilled_at is None
        else account.refilled_at.astimezone(timezone.utc).isoformat(),
    }


def decode_account(row: Mapping[str, object]) -> AccountRecord:
    """Inverse of :func:`encode_account`; takes bytes (Redis) and native values (SQL) too."""
    values = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in row.items()}

    def none(name: str) -> object:
        value = values.get(name)
        return None if value in (None, "") else value

    rates = none("rate_limit")
    credits = none("credits")
    refill = none("refill")
    refilled = none("refilled_at")
    when: datetime | None = None
    if isinstance(refilled, datetime):
        when = refilled if refilled.tzinfo else refilled.replace(tzinfo=timezone.utc)
    elif refilled is not None:
        when = datetime.fromisoformat(str(refilled))
    return AccountRecord(
        owner=str(values["owner"]),
        disabled=str(values.get("disabled") or "0") not in ("0", "False", "false"),
        credits=None if credits is None else int(str(credits)),
        rate_limit=None if rates is None else tuple(parse_rate(r) for r in str(rates).split(",")),
        refill=None if refill is None else Refill.parse(str(refill)),
        refilled_at=when,
    )


def rate_text(rate: Rate) -> str:
    """A rate as stores keep it: ``limit/period[/burst]`` (the period in seconds)."""
    text = f"{rate.limit}/{rate.period!r}"
    return text if rate.burst is None else f"{text}/{rate.burst}"


def parse_rate(text: str) -> Rate:
    """Inverse of :func:`rate_text`."""
    parts = text.split("/")
    period = float(parts[1])
    if not math.isfinite(period):
        raise ValueError(f"not a stored rate: {text!r}")
    return Rate(int(parts[0]), period, int(parts[2]) if len(parts) > 2 else None)

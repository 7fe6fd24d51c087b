"""What an account may do to its own keys, and nothing else: the portal's logic, once.

Every action takes the account it acts for and reads the key first: a key of another account
is answered exactly as a key that does not exist (404 ``KEY_NOT_FOUND``), so an owner can
neither change another's keys nor learn which ids exist. An id that is not a key id is
refused without asking the store. Each action is a :data:`~keysentry.portal.steps.Step`: it
yields the lifecycle calls it needs, which the drivers make, blocking or awaited.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from ..accounts import AccountRecord
from ..errors import Denial, KeyNotFound
from ..history import UsageHistory, utc_day, window
from ..keys import ALPHABET, KEY_ID_LENGTH
from ..lifecycle import IssuedKey
from ..records import KeyRecord
from . import fields
from .steps import Call, Refusal, Step

__all__ = [
    "MAX_PAGE",
    "MAX_USAGE_DAYS",
    "NO_HISTORY",
    "AccountView",
    "KeyView",
    "Page",
    "conflict",
    "not_found",
]

#: Most keys one page of the list holds.
MAX_PAGE = 100
#: The longest usage window the portal shows, in days (today included).
MAX_USAGE_DAYS = 90

NO_HISTORY = Denial.of(
    "USAGE_NOT_KEPT", "This key store keeps no usage history: only each key's request count."
)

_ID_CHARACTERS = frozenset(ALPHABET)


def not_found(key_id: str) -> Refusal:
    shown = key_id if _is_key_id(key_id) else "that id"
    return Refusal(Denial.of("KEY_NOT_FOUND", f"This account has no key {shown}."))


def conflict(message: str) -> Refusal:
    return Refusal(Denial.of("KEY_STATE_CONFLICT", message))


def _is_key_id(text: str) -> bool:
    return len(text) == KEY_ID_LENGTH and _ID_CHARACTERS.issuperset(text)


@dataclass(frozen=True, slots=True)
class KeyView:
    """A key as its owner sees it: the record, and the balance it spends (its own, or its
    rotation line's first key's; None when unmetered)."""

    record: KeyRecord
    credits: int | None


@dataclass(frozen=True, slots=True)
class Page:
    keys: Sequence[KeyView]
    #: The ``after`` of the next page; None on the last.
    next: str | None


@dataclass(frozen=True, slots=True)
class AccountView:
    """An account as its owner sees it: its record (None: it has none, or the store keeps
    no accounts, and the keys' own settings decide) and its usage (None: no history kept)."""

    owner: str
    record: AccountRecord | None
    usage: UsageHistory | None


def own(account: str, key_id: str) -> Step[KeyRecord]:
    """The record of ``key_id`` if ``account`` owns it; else 404, as for no key at all."""
    if not _is_key_id(key_id):
        raise not_found(key_id)
    try:
        record: KeyRecord = yield Call("get", (key_id,))
    except KeyNotFound:
        raise not_found(key_id) from None
    if record.owner != account:
        raise not_found(key_id)
    return record


def view(record: KeyRecord) -> Step[KeyView]:
    if record.credits_from is None:
        return KeyView(record, record.credits)
    try:
        balance: int | None = yield Call("credits_of", (record,))
    except KeyNotFound:  # the line's first key was deleted by the host
        balance = None
    return KeyView(record, balance)


def list_keys(account: str, after: str | None, limit: int) -> Step[Page]:
    """One page of the account's keys, in id order."""
    if after is not None and not _is_key_id(after):
        raise fields.invalid("after must be a key id, from the previous page's next", "after")
    records: Sequence[KeyRecord] = yield Call(
        "list_keys", (), {"owner": account, "after": after, "limit": limit + 1}
    )
    more = len(records) > limit
    records = records[:limit]
    views = []
    for record in records:
        views.append((yield from view(record)))  # noqa: PERF401 (a generator delegating)
    return Page(views, records[-1].id if more and records else None)


def show(account: str, key_id: str) -> Step[KeyView]:
    record = yield from own(account, key_id)
    return (yield from view(record))


def usage(account: str, key_id: str, days: int) -> Step[UsageHistory]:
    """The key's requests per day over the last ``days`` days, if ``account`` owns it."""
    yield from own(account, key_id)
    try:
        history: UsageHistory = yield Call("usage", (key_id,), {"days": days})
    except KeyNotFound:  # deleted meanwhile
        raise not_found(key_id) from None
    except TypeError:  # a store without history
        raise Refusal(NO_HISTORY) from None
    return history


def account_of(account: str) -> Step[AccountRecord | None]:
    """The account's record: None when it has none, or the store keeps no accounts."""
    try:
        record: AccountRecord | None = yield Call("account", (account,))
    except TypeError:  # a store without accounts
        return None
    return record


def account_view(account: str, days: int) -> Step[AccountView]:
    """The account's record and its usage over the last ``days`` days, each None where the
    store keeps no such thing."""
    record = yield from account_of(account)
    try:
        history: UsageHistory | None = yield Call("account_usage", (account,), {"days": days})
    except TypeError:  # a store without history
        history = None
    return AccountView(account, record, history)


def keys_usage(
    records: Sequence[KeyRecord], today: date, days: int
) -> Step[Mapping[str, UsageHistory] | None]:
    """Each key's requests per day over the ``days`` days up to ``today``; None when the store
    keeps no history. Only the keys used within the window are read: the usage flusher writes
    a key's ``last_used_at`` with the day it counts, so a key last used before the window
    (or never) has none of it."""
    first = today - timedelta(days=days - 1)
    found: dict[str, UsageHistory] = {}
    for record in records:
        used = record.last_used_at
        if used is None or utc_day(used) < first:
            found[record.id] = window(today, days, {record.id: ()})
            continue
        try:
            found[record.id] = yield Call("usage", (record.id,), {"days": days})
        except KeyNotFound:  # deleted since the list was read
            found[record.id] = window(today, days, {record.id: ()})
        except TypeError:  # a store without history
            return None
    return found


def create(account: str, grants: fields.Grants, values: Mapping[str, object]) -> Step[IssuedKey]:
    checked = fields.changes(values, grants, creating=True)
    issued: IssuedKey = yield Call("issue", (), {"owner": account, **checked})
    return issued


def update(
    account: str, grants: fields.Grants, key_id: str, values: Mapping[str, object]
) -> Step[KeyView]:
    record = yield from own(account, key_id)
    checked = fields.changes(values, grants, creating=False, held=record.scopes)
    _live(record)
    if checked:
        record = yield Call("update", (key_id,), checked)
    return (yield from view(record))


def _live(record: KeyRecord) -> None:
    if record.revoked_at is not None:
        raise conflict(f"key {record.id} is revoked: it cannot be changed")


def disable(account: str, key_id: str) -> Step[KeyView]:
    _live((yield from own(account, key_id)))
    record: KeyRecord = yield Call("disable", (key_id,))
    return (yield from view(record))


def enable(account: str, key_id: str) -> Step[KeyView]:
    _live((yield from own(account, key_id)))
    try:
        record: KeyRecord = yield Call("enable", (key_id,))
    except ValueError as exc:  # revoked meanwhile
        raise conflict(str(exc)) from None
    return (yield from view(record))


def revoke(account: str, key_id: str) -> Step[KeyView]:
    yield from own(account, key_id)
    record: KeyRecord = yield Call("revoke", (key_id,))
    return (yield from view(record))


def rotate(account: str, key_id: str, grace: float) -> Step[IssuedKey]:
    """A new key with the same settings; the old one works ``grace`` seconds more."""
    yield from own(account, key_id)
    try:
        issued: IssuedKey = yield Call("rotate", (key_id,), {"grace": grace})
    except ValueError as exc:  # revoked, expired, already rotated
        raise conflict(str(exc)) from None
    return issued


def delete(account: str, key_id: str) -> Step[KeyRecord]:
    yield from own(account, key_id)
    try:
        gone: KeyRecord = yield Call("delete", (key_id,))
    except ValueError as exc:  # it holds its rotation line's credits
        raise conflict(str(exc)) from None
    except TypeError:  # a store that cannot delete
        raise conflict("this store keeps every key: revoke it instead") from None
    return gone


def as_dict(value: Any) -> Mapping[str, object]:
    """A JSON body that must be an object."""
    if not isinstance(value, dict):
        raise fields.invalid("the body must be a JSON object")
    return value

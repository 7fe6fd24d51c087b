"""The Redis store's writes, written once as steps that each touch one hash slot.

Each step is a generator of Redis calls (:mod:`._redis_calls`) that the store's blocking and
asyncio faces run alike. On a Redis Cluster a script or a transaction may touch one hash slot
only; a record lives in its id's slot (``<ns>:key:{<id>}``), the indexes elsewhere, so what
spans them is a sequence whose every prefix, cut short by a crash, leaves at most an index
entry that nothing backs (*dangling*), never a record its indexes miss:

* ``create``: mark the id as being created (``<ns>:creating:{<id>}``, in the id's slot, for
  ``CREATING_TTL_MS``); claim the digest entry; add the id to the list of all ids and to its
  owner's; write the record (only while the marker is still this attempt's) and drop the
  marker. A digest entry naming another id is taken over only when that id's slot backs it
  neither by a record with this digest nor by a creation in progress, and only if it still
  names that id (a compare-and-set), so two creates with one digest cannot both win.
* an ``update`` that changes the owner: add the id to the new owner's set, update the record
  on the condition that its owner is still the one read, take the id out of the old owner's
  set (putting it back if the record's owner is that one again: a racing move), add it to
  the new owner's set once more (a racing move may have taken it out).
* ``delete``: remove the record (on conditions, one script that returns what it held), then
  its digest entry (only while it names this id) and its place in the id list and its owner's.
* ``record_usage``: one script call per slot, made together (see :class:`Spread`), each
  writing the records' counts and their usage history (``<ns>:usage:{<id>}``, in the same
  slot) at once.

Readers check what an index names against the record (``find_by_digest`` its digest, a listing
its owner) and skip what does not match; :mod:`._redis_repair` sweeps dangling entries and
writes back any a record misses.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import Generator, Mapping, Sequence
from datetime import date, timedelta, timezone
from typing import Any, NamedTuple, TypeVar

from .._redis import LuaScript
from ..accounts import owner_hash
from ..errors import Conflict, DuplicateKey, KeyNotFound, KeysentryError, StoreUnavailable
from ..history import DEFAULT_RETENTION_DAYS, DailyUsage, utc_day
from ..keys import shown_id
from ..records import KeyRecord
from ._redis_calls import Batch, Call, Command, Script, Spread
from .base import (
    KeyChanges,
    RouteCounts,
    Usage,
    UsageNotRecorded,
    apply_changes,
    check_expected,
)
from .codec import decode, encode

__all__ = [
    "CHUNK",
    "CREATING_TTL_MS",
    "ID",
    "RELEASE",
    "SPEND",
    "KeyNames",
    "SlotState",
    "Steps",
    "create",
    "delete",
    "decode_record",
    "not_found",
    "owner_hash",
    "record_usage",
    "slot_state",
    "state_call",
    "read_states",
    "as_text",
    "update",
    "usage_history",
]

T = TypeVar("T")
#: A step: yields calls, receives their replies, returns a ``T``.
Steps = Generator[Call, Any, T]

BEGIN = LuaScript(__package__, "begin.lua")
CLAIM = LuaScript(__package__, "claim.lua")
CREATE = LuaScript(__package__, "create.lua")
DELETE = LuaScript(__package__, "delete.lua")
RELEASE = LuaScript(__package__, "release.lua")
SPEND = LuaScript(__package__, "spend.lua")
STATE = LuaScript(__package__, "state.lua")
UPDATE = LuaScript(__package__, "update.lua")
USAGE = LuaScript(__package__, "usage.lua")

#: Ids this store accepts: public key ids are 12 of these characters. Anything longer or
#: stranger is refused before it can become part of a Redis key name (a full key passed where
#: its id belongs must never reach the server, its logs or MONITOR).
ID = re.compile(r"[A-Za-z0-9_-]{1,32}\Z")
#: How long a creation may take: its marker's lifetime. A creation that outlives it fails
#: (nothing is created), and one that crashed stops holding its id and digest after it.
CREATING_TTL_MS = 60_000
#: Update attempts before giving up on a key whose owner keeps changing under it, and claims
#: of a digest entry before giving up on one that keeps changing hands.
ATTEMPTS = 100
#: Records per usage script call, and names per page of a repair.
CHUNK = 500


class KeyNames:
    """The Redis key names of one namespace; they hold public ids, digests and hashed owners
    only, never a key."""

    __slots__ = ("namespace",)

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def record(self, key_id: str) -> str:
        return f"{self.namespace}:key:{{{key_id}}}"

    def creating(self, key_id: str) -> str:
        return f"{self.namespace}:creating:{{{key_id}}}"

    def digest(self, digest: bytes) -> str:
        return f"{self.namespace}:digest:{digest.hex()}"

    def usage(self, key_id: str) -> str:
        """The key's usage history: a hash in its record's slot (``lua/usage.lua``)."""
        return f"{self.namespace}:usage:{{{key_id}}}"

    def account(self, owner: str) -> str:
        """An account's hash, under the hash of its owner (its own slot on a cluster)."""
        return f"{self.namespace}:account:{{{owner_hash(owner)}}}"

    def index(self, owner: str | None) -> str:
        """The sorted set of all ids, or of one owner's: ``<ns>:owner:<BLAKE2b-128 of the
        owner>``, a safe, fixed-length name for an owner string of any shape."""
        if owner is None:
            return f"{self.namespace}:ids"
        return f"{self.namespace}:owner:{owner_hash(owner)}"

    def pattern(self, kind: str) -> str:
        """A SCAN pattern for one kind of name (``key``, ``digest``, ``owner``)."""
        return re.sub(r"([*?\[\]\\])", r"\\\1", self.namespace) + f":{kind}:*"

    def parse(self, kind: str, name: bytes) -> str | None:
        """What a name SCAN found holds (an id, a digest's hex, an owner's hash), or None
        when it is not one of this namespace's names of that kind."""
        text = name.decode(errors="replace")
        prefix = f"{self.namespace}:{kind}:"
        if not text.startswith(prefix):
            return None
        rest = text[len(prefix) :]
        shape = _SHAPES[kind]
        match = shape.fullmatch(rest)
        return None if match is None else match.group(1)


_SHAPES = {
    "key": re.compile(r"\{([A-Za-z0-9_-]{1,32})\}"),
    "digest": re.compile(r"((?:[0-9a-f]{2})+)"),
    "owner": re.compile(r"([0-9a-f]{32})"),
}


def fields(record: KeyRecord) -> dict[str, str | int]:
    """The record as the hash's fields ("" for None)."""
    return {k: "" if v is None else v for k, v in encode(record).items()}


def decode_record(raw: Mapping[bytes, bytes] | None) -> KeyRecord | None:
    if not raw:
        return None
    try:
        return decode({k.decode(): v for k, v in raw.items()})
    except (KeyError, ValueError, TypeError) as exc:
        raise StoreUnavailable(f"unreadable key record in Redis ({type(exc).__name__})") from exc


def not_found(key_id: str) -> KeyNotFound:
    return KeyNotFound(f"no key with id {shown_id(key_id)!r}")


def as_text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


# -- what an id's slot backs -------------------------------------------------------------------


class SlotState(NamedTuple):
    exists: bool
    digest: str
    owner: str  # "" for none
    marker: str  # "" for none: "<digest hex> <token>" while a creation is in progress

    def backs_digest(self, hexdigest: str) -> str | None:
        """Why a digest entry naming this id is not dangling, or None when it is."""
        if self.exists and self.digest == hexdigest:
            return "exists"
        if self.marker.partition(" ")[0] == hexdigest:
            return "is being created"
        return None

    def backs_owner(self, hashed: str) -> bool:
        """Whether this id belongs in the set of the owner whose hash is ``hashed``."""
        if self.marker:
            return True  # a creation in progress: its owner is not known here
        return self.exists and bool(self.owner) and owner_hash(self.owner) == hashed


def state_call(names: KeyNames, key_id: str) -> Script:
    return Script(STATE, (names.record(key_id), names.creating(key_id)))


def slot_state(reply: Any) -> SlotState:
    exists, digest, owner, marker = reply
    return SlotState(bool(int(exists)), as_text(digest), as_text(owner), as_text(marker))


def read_states(names: KeyNames, ids: list[str]) -> Steps[list[SlotState]]:
    if not ids:
        return []
    replies = yield Spread(tuple(state_call(names, key_id) for key_id in ids))
    return [slot_state(reply) for reply in replies]


# -- create ------------------------------------------------------------------------------------


def create(names: KeyNames, record: KeyRecord) -> Steps[None]:
    key_id, hexdigest = record.id, record.digest.hex()
    if not ID.match(key_id):
        raise ValueError(
            f"key id {shown_id(key_id)!r} cannot be stored in Redis: use 1-32 letters, "
            "digits, '_' or '-'"
        )
    keys = (names.record(key_id), names.creating(key_id))
    marker = f"{hexdigest} {secrets.token_hex(8)}"
    opened = yield Script(BEGIN, keys, (marker, CREATING_TTL_MS))
    if opened == 1:
        raise DuplicateKey(f"a key with id {key_id!r} exists")
    if opened == 2:
        raise DuplicateKey(f"a key with id {key_id!r} is being created")
    try:
        yield from _claim(names, key_id, record.digest)
    except DuplicateKey:
        yield Script(RELEASE, (keys[1],), (marker,))
        raise
    indexes = [Command("zadd", (names.index(None), {key_id: 0}))]
    if record.owner is not None:
        indexes.append(Command("zadd", (names.index(record.owner), {key_id: 0})))
    yield Batch(tuple(indexes))
    args: list[str | int] = [marker]
    for field, value in fields(record).items():
        args += (field, value)
    created = yield Script(CREATE, keys, tuple(args))
    if created == 0:
        return
    # The marker is gone: this creation outlived it, and another may have begun since.
    state = slot_state((yield state_call(names, key_id)))
    if state.backs_digest(hexdigest) is None:
        yield Script(RELEASE, (names.digest(record.digest),), (key_id,))
    if created == 1:
        raise DuplicateKey(f"a key with id {key_id!r} exists")
    raise StoreUnavailable(
        f"creating key {key_id!r} took over {CREATING_TTL_MS // 1000} s: it was not created"
    )


def _claim(names: KeyNames, key_id: str, digest: bytes) -> Steps[None]:
    """Make the digest's entry name ``key_id``; :class:`DuplicateKey` when a record with that
    digest exists or is being created."""
    entry, hexdigest = names.digest(digest), digest.hex()
    replacing: tuple[str, ...] = ()
    for _ in range(ATTEMPTS):
        reply = yield Script(CLAIM, (entry,), (key_id, *replacing))
        if int(reply[0]) == 0:
            return
        holder = as_text(reply[1])
        if ID.match(holder):
            state = slot_state((yield state_call(names, holder)))
            why = state.backs_digest(hexdigest)
            if why is not None:
                raise DuplicateKey(f"a key with the digest of {key_id!r} {why}")
        replacing = (holder,)  # dangling: take it over, if it still names that id
    raise StoreUnavailable(f"the digest entry of key {key_id!r} changed under every claim")


# -- update ------------------------------------------------------------------------------------


def update(
    names: KeyNames, key_id: str, changes: KeyChanges, expect: Mapping[str, object] | None
) -> Steps[KeyRecord]:
    """Read the record, apply the changes in Python (the validation lives there), write only
    the fields that change, on the conditions ``expect`` names and, when the owner changes,
    on the owner read (or read again); move the id between owner sets around it."""
    if not ID.match(key_id):
        raise not_found(key_id)
    record_key = names.record(key_id)
    joined: str | None = None
    try:
        for _ in range(ATTEMPTS):
            current = decode_record((yield Command("hgetall", (record_key,))))
            if current is None:
                raise not_found(key_id)
            target, args = _update_args(current, changes, expect)
            if target.owner not in (current.owner, None, joined):
                yield Command("zadd", (names.index(target.owner), {key_id: 0}))
                joined = target.owner
            record = _updated(key_id, (yield Script(UPDATE, (record_key,), args)), expect)
            if record is not None:
                break
        else:
            raise StoreUnavailable(f"key {shown_id(key_id)!r} changed under every update")
    except (KeysentryError, ValueError):
        if joined is not None:
            yield from _leave(names, key_id, joined)
        raise
    if record.owner != current.owner:
        if current.owner is not None:
            yield from _leave(names, key_id, current.owner)
        if record.owner is not None:
            yield Command("zadd", (names.index(record.owner), {key_id: 0}))
    return record


def _update_args(
    current: KeyRecord, changes: KeyChanges, expect: Mapping[str, object] | None
) -> tuple[KeyRecord, tuple[str | int, ...]]:
    """The record after the change, and the update script's arguments: the changed fields
    only, on the condition that the record still has what ``expect`` names and, when the
    owner changes, the owner it was read with (the owner sets to move the id between)."""
    record = apply_changes(current, changes)
    check_expected(current, expect)  # fail early; the script checks again, atomically
    written = fields(record)
    conditions: dict[str, str | int] = {}
    if expect:
        wanted = fields(dataclasses.replace(current, **expect))  # type: ignore[arg-type]
        conditions = {name: wanted[name] for name in expect}
    if record.owner != current.owner:
        conditions.setdefault("owner", fields(current)["owner"])
    args: list[str | int] = [len(conditions)]
    for field, value in conditions.items():
        args += (field, value)
    for field in changes:
        args += (field, written[field])
    return record, tuple(args)


def _updated(
    key_id: str, reply: list[Any], expect: Mapping[str, object] | None
) -> KeyRecord | None:
    """The record the update script wrote; None when the owner moved meanwhile (try
    again); :class:`Conflict` when an expectation failed."""
    code = int(reply[0])
    if code == 0:
        raise not_found(key_id)
    if code == 1:
        field = as_text(reply[1])
        if expect and field in expect:
            raise Conflict(f"key {key_id}: {field} has changed")
        return None
    flat = reply[1]
    record = decode_record(dict(zip(flat[::2], flat[1::2], strict=True)))
    if record is None:  # pragma: no cover - the script wrote it just now
        raise not_found(key_id)
    return record


def _leave(names: KeyNames, key_id: str, owner: str) -> Steps[None]:
    """Take the id out of an owner's set, then put it back if the record's owner is that
    one (again): a move to that owner may have added it just before. Read after the removal,
    so a move whose addition the removal undid has written the record by then, or adds the
    id again itself afterwards."""
    index = names.index(owner)
    yield Command("zrem", (index, key_id))
    now = yield Command("hget", (names.record(key_id), "owner"))
    if now is not None and as_text(now) == owner:
        yield Command("zadd", (index, {key_id: 0}))


# -- delete ------------------------------------------------------------------------------------


def delete(names: KeyNames, key_id: str, expect: Mapping[str, object] | None) -> Steps[KeyRecord]:
    """Remove the record on the conditions ``expect`` names, then what finds it: the indexes
    of the record as it was when removed (its owner may have moved since it was read)."""
    if not ID.match(key_id):
        raise not_found(key_id)
    record_key = names.record(key_id)
    current = decode_record((yield Command("hgetall", (record_key,))))
    if current is None:
        raise not_found(key_id)
    check_expected(current, expect)  # fail early; the script checks again, atomically
    args: list[str | int] = [len(expect or {})]
    if expect:
        wanted = fields(dataclasses.replace(current, **expect))  # type: ignore[arg-type]
        for name in expect:
            args += (name, wanted[name])
    reply = yield Script(DELETE, (record_key, names.usage(key_id)), tuple(args))
    code = int(reply[0])
    if code == 0:
        raise not_found(key_id)
    if code == 1:
        raise Conflict(f"key {key_id}: {as_text(reply[1])} has changed")
    flat = reply[1]
    gone = decode_record(dict(zip(flat[::2], flat[1::2], strict=True)))
    if gone is None:  # pragma: no cover - the script read it just now
        raise not_found(key_id)
    yield Script(RELEASE, (names.digest(gone.digest),), (key_id,))
    yield Command("zrem", (names.index(None), key_id))
    if gone.owner is not None:
        yield Command("zrem", (names.index(gone.owner), key_id))
    return gone


# -- usage -------------------------------------------------------------------------------------


def record_usage(
    names: KeyNames,
    usage: Mapping[str, Usage],
    routes: RouteCounts | None = None,
    retention_days: int = DEFAULT_RETENTION_DAYS,
) -> Steps[None]:
    """One usage script call per hash slot (at most ``CHUNK`` records each), all at once.
    Calls that failed raise :class:`UsageNotRecorded` naming their keys' usage, so the
    recorder keeps only that: what one master wrote is not counted twice while another is
    down."""
    from redis.crc import key_slot

    by_slot: dict[int, list[tuple[str, Usage]]] = {}
    for key_id, used in usage.items():
        if ID.match(key_id):
            slot = key_slot(names.record(key_id).encode())
            by_slot.setdefault(slot, []).append((key_id, used))
    chunks = [
        entries[i : i + CHUNK]
        for entries in by_slot.values()
        for i in range(0, len(entries), CHUNK)
    ]
    if not chunks:
        return
    calls = tuple(_usage_call(names, chunk, routes or {}, retention_days) for chunk in chunks)
    replies = yield Spread(calls, errors=True)
    unwritten: dict[str, Usage] = {}
    failure: BaseException | None = None
    for chunk, reply in zip(chunks, replies, strict=True):
        if isinstance(reply, BaseException):
            failure = failure or reply
            unwritten.update(chunk)
    if unwritten:
        raise UsageNotRecorded(
            f"the usage of {len(unwritten)} of {sum(map(len, chunks))} keys was not "
            f"recorded ({type(failure).__name__})",
            unwritten,
        ) from failure


def _usage_call(
    names: KeyNames, chunk: list[tuple[str, Usage]], routes: RouteCounts, retention_days: int
) -> Script:
    keys: list[str] = []
    args: list[str | int] = []
    ttl = (retention_days + 1) * 86400
    for key_id, (count, last) in chunk:
        day = utc_day(last)
        kept = day - timedelta(days=retention_days)
        counted = [(route, n) for route, n in routes.get(key_id, {}).items() if route and n]
        keys += (names.record(key_id), names.usage(key_id))
        args += (count, last.astimezone(timezone.utc).isoformat(), day.isoformat())
        args += (kept.isoformat(), ttl, len(counted))
        for route, n in counted:
            args += (route, n)
    return Script(USAGE, tuple(keys), tuple(args))


def usage_history(
    names: KeyNames, key_ids: Sequence[str], since: date
) -> Steps[dict[str, list[DailyUsage]]]:
    """The history hashes of the keys, read in one pipeline (on a cluster, one per node)."""
    ids = [key_id for key_id in key_ids if ID.match(key_id)]
    if not ids:
        return {}
    replies = yield Batch(tuple(Command("hgetall", (names.usage(key_id),)) for key_id in ids))
    found: dict[str, list[DailyUsage]] = {}
    for key_id, raw in zip(ids, replies, strict=True):
        days: dict[str, tuple[list[int], dict[str, int]]] = {}
        for name, value in (raw or {}).items():
            field = as_text(name)
            day = field[:10]
            if field == "kept" or day < since.isoformat():
                continue
            totals, by_route = days.setdefault(day, ([0], {}))
            if len(field) > 10:
                by_route[field[11:]] = int(value)
            else:
                totals[0] = int(value)
        if days:
            found[key_id] = [
                DailyUsage(date.fromisoformat(day), totals[0], by_route)
                for day, (totals, by_route) in days.items()
            ]
    return found

"""``RedisStore.repair()``: make a Redis store's indexes match its records again.

The store's writes that span hash slots (:mod:`._redis_steps`) leave, when a crash cuts one
short, index entries no record backs: a digest entry naming an id with no record of that
digest, an id in the list of all ids with no record, an id in an owner's set whose record has
another owner. Readers skip them; this sweep removes them, each only if nothing backs it when
it is removed (a creation in progress backs the entries it made, by its marker). Then it
writes back the entries existing records miss (a failover that lost one master's last writes
can lose one). Every name is found by SCAN, on every master of a cluster, a page at a time.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from ._redis_calls import Batch, Command, More, Scan, Script, Spread
from ._redis_steps import (
    CHUNK,
    ID,
    RELEASE,
    KeyNames,
    SlotState,
    Steps,
    as_text,
    read_states,
)

__all__ = ["Repaired", "repair"]


@dataclasses.dataclass(frozen=True, slots=True)
class Repaired:
    """What :meth:`~keysentry.stores.redis.RedisStore.repair` changed."""

    #: Digest entries removed: the id they named has no record with that digest, nor a
    #: creation of one in progress.
    digests: int = 0
    #: Ids taken out of the list of all ids: no record, no creation in progress.
    ids: int = 0
    #: Ids taken out of an owner's set: no record with that owner, no creation in progress.
    owners: int = 0
    #: Entries a record was missing (in the id list, its owner's set, its digest's), written.
    restored: int = 0


def repair(names: KeyNames) -> Steps[Repaired]:
    """Remove dangling index entries, then write back entries existing records miss."""
    digests = yield from _each_page(names, "digest", lambda page: _sweep_digests(names, page))
    ids = yield from _sweep_set(names, names.index(None), None)
    owners = yield from _each_page(names, "owner", lambda page: _sweep_owners(names, page))
    restored = yield from _each_page(names, "key", lambda page: _restore(names, page))
    return Repaired(digests=digests, ids=ids, owners=owners, restored=restored)


def _each_page(names: KeyNames, kind: str, handle: Callable[[list[str]], Steps[int]]) -> Steps[int]:
    """Hand each page of one kind of name, on every master, to ``handle`` (what the names
    hold: ids, digests' hex, owners' hashes); the sum of what it counted. SCAN may name a
    key twice: every handler can see one twice."""
    total = 0
    cursor = yield Scan(names.pattern(kind), CHUNK)
    while True:
        page: list[bytes] = yield More(cursor, CHUNK)
        if not page:
            return total
        parts = [part for name in page if (part := names.parse(kind, name)) is not None]
        if parts:
            total += yield from handle(parts)


def _sweep_digests(names: KeyNames, hexdigests: list[str]) -> Steps[int]:
    entries = [f"{names.namespace}:digest:{h}" for h in hexdigests]
    replies = yield Batch(tuple(Command("get", (entry,)) for entry in entries))
    held = [
        (entry, hexdigest, as_text(holder))
        for entry, hexdigest, holder in zip(entries, hexdigests, replies, strict=True)
        if holder is not None
    ]
    valid = [holder for _, _, holder in held if ID.match(holder)]
    states = dict(zip(valid, (yield from read_states(names, valid)), strict=True))
    dangling = tuple(
        Script(RELEASE, (entry,), (holder,))
        for entry, hexdigest, holder in held
        if holder not in states or states[holder].backs_digest(hexdigest) is None
    )
    if not dangling:
        return 0
    return sum(int(n) for n in (yield Spread(dangling)))


def _sweep_owners(names: KeyNames, owner_hashes: list[str]) -> Steps[int]:
    removed = 0
    for owner_hash in owner_hashes:
        index = f"{names.namespace}:owner:{owner_hash}"
        removed += yield from _sweep_set(names, index, owner_hash)
    return removed


def _sweep_set(names: KeyNames, index: str, owner_hash: str | None) -> Steps[int]:
    """Take out of a sorted set of ids (all ids, or one owner's) the ids nothing backs; an
    id found backed once taken out (a racing create or move) is put back."""
    removed = 0
    start = b"-"
    while True:
        page: list[bytes] = yield Command(
            "zrangebylex", (index, start, b"+"), {"start": 0, "num": CHUNK}
        )
        if not page:
            return removed
        start = b"(" + page[-1]
        ids = {member: member.decode(errors="replace") for member in page}
        valid = [key_id for key_id in ids.values() if ID.match(key_id)]
        states = dict(zip(valid, (yield from read_states(names, valid)), strict=True))
        dead = [m for m, key_id in ids.items() if not _backs(states.get(key_id), owner_hash)]
        if not dead:
            continue
        yield Command("zrem", (index, *dead))
        back = [ids[m] for m in dead if ids[m] in states]
        again = dict(zip(back, (yield from read_states(names, back)), strict=True))
        revived = {key_id: 0 for key_id, state in again.items() if _backs(state, owner_hash)}
        if revived:
            yield Command("zadd", (index, revived))
        removed += len(dead) - len(revived)


def _backs(state: SlotState | None, owner_hash: str | None) -> bool:
    if state is None:
        return False
    if owner_hash is None:
        return state.exists or bool(state.marker)
    return state.backs_owner(owner_hash)


def _restore(names: KeyNames, ids: list[str]) -> Steps[int]:
    """Write back the id-list, owner-set and digest entries of these records."""
    states = yield from read_states(names, ids)
    records = [(key_id, s) for key_id, s in zip(ids, states, strict=True) if s.exists]
    if not records:
        return 0
    calls = [Command("zadd", (names.index(None), {key_id: 0 for key_id, _ in records}))]
    for key_id, state in records:
        if state.owner:
            calls.append(Command("zadd", (names.index(state.owner), {key_id: 0})))
        if _HEX.fullmatch(state.digest):
            entry = f"{names.namespace}:digest:{state.digest}"
            calls.append(Command("set", (entry, key_id), {"nx": True}))
    replies = yield Batch(tuple(calls))
    # ZADD answers how many ids it added, SET NX True when it wrote the entry.
    return sum(1 if reply is True else int(reply or 0) for reply in replies)


_HEX = re.compile(r"(?:[0-9a-f]{2})+")

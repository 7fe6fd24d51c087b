"""The Redis store: key records shared by every process, with a blocking and an asyncio face.

Layout, under a namespace (``keysentry`` unless told otherwise); key names hold public ids,
digests and hashed owners only, never a key::

    <ns>:key:{<id>}       hash: the record, one field per codec field ("" for None)
    <ns>:digest:<hex>     string: the id owning that digest (how imported keys are found)
    <ns>:ids              sorted set of every id, all scored 0: ZRANGEBYLEX pages in id order
    <ns>:owner:<hash>     the same for one owner's ids; <hash> is BLAKE2b-128 of the owner,
                          so an owner string of any shape makes a safe, fixed-length name

``create`` is one Lua script (``lua/create.lua``): the id and digest checks and every write
happen atomically, so two racing creates cannot both win. ``update`` reads the record, runs
:func:`~keysentry.stores.base.apply_changes` in Python (the validation lives there), then
writes only the fields it changes with one script (``lua/update.lua``) that first checks the
caller's conditions (``expect``) and, when the owner changes, that the owner is still the one
read (moving the id between owner sets depends on it; otherwise it reads again). Writing
named fields only means credit spending (``lua/spend.lua``) and usage counting
(``lua/usage.lua``), which write the same hash all the time, never make an update fail: a
WATCH on the whole hash did, for a busy key under revocation. Reads are single commands;
``find_by_digest`` is two (the index, then the record) and checks the record's digest.

Redis Cluster: ``get``, ``update`` without an owner change, and the two steps of
``find_by_digest`` each touch one key. ``create`` (record, digest entry and indexes) and an
``update`` that changes the owner touch several keys, which Cluster allows only within one hash
slot. The braces around the id tag a record's hash with its id; to keep a whole store on one
slot, give the namespace its own hash tag, e.g. ``namespace="{keysentry}"`` (Redis hashes the
first ``{...}`` of a name). A key store is small and read through a cache, so one slot is rarely
a constraint. The store takes the same URLs (``redis+cluster://``, ``redis+sentinel://``) and
clients of the user's own as :class:`~keysentry.ratelimit.redis.RedisLimiter`; on a cluster,
give the namespace a hash tag as above.

Every failure to reach the server raises :class:`~keysentry.errors.StoreUnavailable`, within
``timeout`` and without retries; a circuit breaker then answers at once until a trial call
succeeds. Given a :class:`~keysentry.invalidation.RedisInvalidator`, the store announces each
create and update so other processes drop their cached copy at once (all but updates of
``last_used_at`` alone, which no cached decision depends on).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import timezone
from typing import TYPE_CHECKING, Any

from .._redis import LuaScript, RedisBackend
from ..errors import (
    Conflict,
    DuplicateKey,
    InsufficientCredits,
    KeyNotFound,
    StoreUnavailable,
)
from ..keys import shown_id
from ..records import KeyRecord
from .base import KeyChanges, Usage, apply_changes, check_expected
from .codec import decode, encode

if TYPE_CHECKING:
    from ..invalidation import RedisInvalidator

__all__ = ["RedisStore"]

log = logging.getLogger("keysentry")


CREATE = LuaScript(__package__, "create.lua")
DELETE = LuaScript(__package__, "delete.lua")
SPEND = LuaScript(__package__, "spend.lua")
UPDATE = LuaScript(__package__, "update.lua")
USAGE = LuaScript(__package__, "usage.lua")

#: Ids this store accepts: public key ids are 12 of these characters. Anything longer or
#: stranger is refused before it can become part of a Redis key name (a full key passed where
#: its id belongs must never reach the server, its logs or MONITOR).
_ID = re.compile(r"[A-Za-z0-9_-]{1,32}\Z")
#: Update attempts before giving up on a key whose owner keeps changing under it.
_ATTEMPTS = 100
#: Changes no cached decision depends on: not announced, so recording usage in batches does
#: not flush every process's cache of the keys in use.
_UNANNOUNCED = frozenset({"last_used_at"})


def _fields(record: KeyRecord) -> dict[str, str | int]:
    return {k: "" if v is None else v for k, v in encode(record).items()}


def _decode(raw: dict[bytes, bytes] | None) -> KeyRecord | None:
    if not raw:
        return None
    try:
        return decode({k.decode(): v for k, v in raw.items()})
    except (KeyError, ValueError, TypeError) as exc:
        raise StoreUnavailable(f"unreadable key record in Redis ({type(exc).__name__})") from exc


class RedisStore(RedisBackend):
    """``RedisStore("redis://127.0.0.1:6379/0")``; share one per process.

    :param url: one server, a cluster (``redis+cluster://``) or a Sentinel-managed master
        (``redis+sentinel://``); ``?namespace=`` sets ``namespace`` unless it is given. Or,
        instead of a URL, ``client`` (blocking) and ``aclient`` (asyncio): redis-py clients
        of your own, used as they are and never closed (see
        :class:`~keysentry.ratelimit.redis.RedisLimiter`).
    :param namespace: prefix of every Redis key this store writes (``keysentry`` by default).
    :param timeout: seconds a Redis call may take before it counts as a failure.
    :param failures: consecutive failures that open the circuit breaker.
    :param cooldown: seconds the breaker stays open before one trial call.
    :param invalidator: announces every create and update to other processes.
    """

    kind = "RedisStore"

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        aclient: Any = None,
        namespace: str | None = None,
        timeout: float = 0.25,
        failures: int = 3,
        cooldown: float = 2.0,
        invalidator: RedisInvalidator | None = None,
    ) -> None:
        super().__init__(
            url,
            client=client,
            aclient=aclient,
            timeout=timeout,
            failures=failures,
            cooldown=cooldown,
        )
        if namespace is None:
            namespace = "keysentry" if self.url_namespace is None else self.url_namespace
        if not namespace:
            raise ValueError("a RedisStore needs a non-empty namespace")
        self.namespace = namespace
        self.invalidator = invalidator

    def __repr__(self) -> str:
        return f"RedisStore({self._where()}, namespace={self.namespace!r}, {self.breaker.state})"

    # -- key names -------------------------------------------------------------------------------

    def record_key(self, key_id: str) -> str:
        return f"{self.namespace}:key:{{{key_id}}}"

    def digest_key(self, digest: bytes) -> str:
        return f"{self.namespace}:digest:{digest.hex()}"

    def index_key(self, owner: str | None) -> str:
        """The sorted set of all ids, or of one owner's."""
        if owner is None:
            return f"{self.namespace}:ids"
        hashed = hashlib.blake2b(owner.encode(), digest_size=16).hexdigest()
        return f"{self.namespace}:owner:{hashed}"

    # -- shared steps ----------------------------------------------------------------------------

    def _create_call(self, record: KeyRecord) -> tuple[list[str], list[str | int]]:
        if not _ID.match(record.id):
            raise ValueError(
                f"key id {shown_id(record.id)!r} cannot be stored in Redis: use 1-32 letters, "
                "digits, '_' or '-'"
            )
        keys = [self.record_key(record.id), self.digest_key(record.digest), self.index_key(None)]
        if record.owner is not None:
            keys.append(self.index_key(record.owner))
        args: list[str | int] = [record.id]
        for field, value in _fields(record).items():
            args += (field, value)
        return keys, args

    @staticmethod
    def _created(code: int, record: KeyRecord) -> None:
        if code == 1:
            raise DuplicateKey(f"a key with id {record.id!r} exists")
        if code == 2:
            raise DuplicateKey(f"a key with the digest of {record.id!r} exists")

    def _update_call(
        self,
        key_id: str,
        current: KeyRecord | None,
        changes: KeyChanges,
        expect: Mapping[str, object] | None,
    ) -> tuple[list[str], list[str | int]]:
        """The update script's keys and arguments: the changed fields only, on the condition
        that the record still has what ``expect`` names and, when the owner changes, the owner
        it was read with (the owner sets to move the id between depend on it)."""
        if current is None:
            raise self._not_found(key_id)
        record = apply_changes(current, changes)
        check_expected(current, expect)  # fail early; the script checks again, atomically
        written = _fields(record)
        conditions: dict[str, str | int] = {}
        if expect:
            wanted = _fields(dataclasses.replace(current, **expect))  # type: ignore[arg-type]
            conditions = {name: wanted[name] for name in expect}
        keys = [self.record_key(key_id)]
        leave = join = 0
        if record.owner != current.owner:
            conditions.setdefault("owner", _fields(current)["owner"])
            if current.owner is not None:
                keys.append(self.index_key(current.owner))
                leave = 1
            if record.owner is not None:
                keys.append(self.index_key(record.owner))
                join = 1
        args: list[str | int] = [key_id, leave, join, len(conditions)]
        for field, value in conditions.items():
            args += (field, value)
        for field in changes:
            args += (field, written[field])
        return keys, args

    def _updated(
        self, key_id: str, reply: list[Any], expect: Mapping[str, object] | None
    ) -> KeyRecord | None:
        """The record the update script wrote; None when the owner moved meanwhile (try
        again); :class:`Conflict` when an expectation failed."""
        code = int(reply[0])
        if code == 0:
            raise self._not_found(key_id)
        if code == 1:
            field = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
            if expect and field in expect:
                raise Conflict(f"key {key_id}: {field} has changed")
            return None
        flat = reply[1]
        record = _decode(dict(zip(flat[::2], flat[1::2], strict=True)))
        if record is None:  # pragma: no cover - the script wrote it just now
            raise self._not_found(key_id)
        return record

    def _spent(self, key_id: str, reply: list[int]) -> int | None:
        code = reply[0]
        if code == 0:
            return int(reply[1])
        if code == 1:
            return None
        if code == 2:
            raise InsufficientCredits(int(reply[1]))
        raise self._not_found(key_id)

    def _usage_calls(self, usage: Mapping[str, Usage]) -> list[tuple[list[str], list[Any]]]:
        return [
            ([self.record_key(key_id)], [count, last.astimezone(timezone.utc).isoformat()])
            for key_id, (count, last) in usage.items()
            if _ID.match(key_id)
        ]

    def _record_usage_in(self, pipe: Any, usage: Mapping[str, Usage]) -> None:
        # The script is loaded first, so EVALSHA cannot miss within the pipeline, where a
        # NOSCRIPT reply cannot be retried command by command.
        for keys, args in self._usage_calls(usage):
            USAGE.queue(pipe, keys, args)

    @staticmethod
    def _not_found(key_id: str) -> KeyNotFound:
        return KeyNotFound(f"no key with id {shown_id(key_id)!r}")

    @staticmethod
    def _page_start(after: str | None) -> str:
        return "-" if after is None else "(" + after

    @staticmethod
    def _matching(raws: list[Any], owner: str | None) -> list[KeyRecord]:
        # Records deleted behind the index's back, or an index entry left stale by a hand
        # edit, are skipped rather than returned under the wrong owner.
        records = (_decode(raw) for raw in raws)
        return [r for r in records if r is not None and (owner is None or r.owner == owner)]

    def _announce(self, record: KeyRecord) -> None:
        if self.invalidator is not None:
            try:
                self.invalidator.publish(record.id, record.digest)
            except StoreUnavailable:
                log.warning("key %s changed but could not be announced", record.id, exc_info=True)

    async def _aannounce(self, record: KeyRecord) -> None:
        if self.invalidator is not None:
            try:
                await self.invalidator.apublish(record.id, record.digest)
            except StoreUnavailable:
                log.warning("key %s changed but could not be announced", record.id, exc_info=True)

    # -- the blocking face -----------------------------------------------------------------------

    def get(self, key_id: str) -> KeyRecord | None:
        if not _ID.match(key_id):
            return None
        with self._guard("get"):
            raw = self._client().hgetall(self.record_key(key_id))
        return _decode(raw)

    def find_by_digest(self, digest: bytes) -> KeyRecord | None:
        with self._guard("find_by_digest"):
            client = self._client()
            key_id = client.get(self.digest_key(digest))
            if key_id is None or not _ID.match(key_id.decode()):
                return None
            raw = client.hgetall(self.record_key(key_id.decode()))
        record = _decode(raw)
        return record if record is not None and record.digest == digest else None

    def create(self, record: KeyRecord) -> None:
        keys, args = self._create_call(record)
        with self._guard("create"):
            code = CREATE.run(self._client(), keys, args)
            self._created(code, record)
        self._announce(record)

    def update(
        self, key_id: str, changes: KeyChanges, expect: Mapping[str, object] | None = None
    ) -> KeyRecord:
        if not _ID.match(key_id):
            raise self._not_found(key_id)
        with self._guard("update"):
            client = self._client()
            for _ in range(_ATTEMPTS):
                current = _decode(client.hgetall(self.record_key(key_id)))
                keys, args = self._update_call(key_id, current, changes, expect)
                reply = UPDATE.run(client, keys, args)
                record = self._updated(key_id, reply, expect)
                if record is not None:
                    break
            else:
                raise StoreUnavailable(f"key {shown_id(key_id)!r} changed under every update")
        if not changes.keys() <= _UNANNOUNCED:
            self._announce(record)
        return record

    def list_keys(
        self, *, owner: str | None = None, after: str | None = None, limit: int = 100
    ) -> Sequence[KeyRecord]:
        found: list[KeyRecord] = []
        index, start = self.index_key(owner), self._page_start(after)
        with self._guard("list_keys"):
            client = self._client()
            while len(found) < limit:
                ids = client.zrangebylex(index, start, "+", start=0, num=limit - len(found))
                if not ids:
                    break
                with client.pipeline(transaction=False) as pipe:
                    for key_id in ids:
                        pipe.hgetall(self.record_key(key_id.decode()))
                    found += self._matching(pipe.execute(), owner)
                start = "(" + ids[-1].decode()
        return found

    def spend_credits(self, key_id: str, amount: int = 1) -> int | None:
        if amount == 0:
            raise ValueError("an amount of credits cannot be zero")
        if not _ID.match(key_id):
            raise self._not_found(key_id)
        with self._guard("spend_credits"):
            reply = SPEND.run(self._client(), [self.record_key(key_id)], [amount])
        return self._spent(key_id, reply)

    def record_usage(self, usage: Mapping[str, Usage]) -> None:
        if not usage:
            return
        with self._guard("record_usage"):
            client = self._client()
            USAGE.load(client)
            with client.pipeline(transaction=False) as pipe:
                self._record_usage_in(pipe, usage)
                pipe.execute()

    # -- the asyncio face ------------------------------------------------------------------------

    async def aget(self, key_id: str) -> KeyRecord | None:
        if not _ID.match(key_id):
            return None
        with self._guard("get"):
            client = await self._aclient()
            raw = await client.hgetall(self.record_key(key_id))
        return _decode(raw)

    async def afind_by_digest(self, digest: bytes) -> KeyRecord | None:
        with self._guard("find_by_digest"):
            client = await self._aclient()
            key_id = await client.get(self.digest_key(digest))
            if key_id is None or not _ID.match(key_id.decode()):
                return None
            raw = await client.hgetall(self.record_key(key_id.decode()))
        record = _decode(raw)
        return record if record is not None and record.digest == digest else None

    async def acreate(self, record: KeyRecord) -> None:
        keys, args = self._create_call(record)
        with self._guard("create"):
            code = await CREATE.arun(await self._aclient(), keys, args)
            self._created(code, record)
        await self._aannounce(record)

    async def aupdate(
        self, key_id: str, changes: KeyChanges, expect: Mapping[str, object] | None = None
    ) -> KeyRecord:
        if not _ID.match(key_id):
            raise self._not_found(key_id)
        with self._guard("update"):
            client = await self._aclient()
            for _ in range(_ATTEMPTS):
                current = _decode(await client.hgetall(self.record_key(key_id)))
                keys, args = self._update_call(key_id, current, changes, expect)
                reply = await UPDATE.arun(client, keys, args)
                record = self._updated(key_id, reply, expect)
                if record is not None:
                    break
            else:
                raise StoreUnavailable(f"key {shown_id(key_id)!r} changed under every update")
        if not changes.keys() <= _UNANNOUNCED:
            await self._aannounce(record)
        return record

    async def alist_keys(
        self, *, owner: str | None = None, after: str | None = None, limit: int = 100
    ) -> Sequence[KeyRecord]:
        found: list[KeyRecord] = []
        index, start = self.index_key(owner), self._page_start(after)
        with self._guard("list_keys"):
            client = await self._aclient()
            while len(found) < limit:
                ids = await client.zrangebylex(index, start, "+", start=0, num=limit - len(found))
                if not ids:
                    break
                async with client.pipeline(transaction=False) as pipe:
                    for key_id in ids:
                        pipe.hgetall(self.record_key(key_id.decode()))
                    found += self._matching(await pipe.execute(), owner)
                start = "(" + ids[-1].decode()
        return found

    async def aspend_credits(self, key_id: str, amount: int = 1) -> int | None:
        if amount == 0:
            raise ValueError("an amount of credits cannot be zero")
        if not _ID.match(key_id):
            raise self._not_found(key_id)
        with self._guard("spend_credits"):
            reply = await SPEND.arun(await self._aclient(), [self.record_key(key_id)], [amount])
        return self._spent(key_id, reply)

    async def arecord_usage(self, usage: Mapping[str, Usage]) -> None:
        if not usage:
            return
        with self._guard("record_usage"):
            client = await self._aclient()
            await USAGE.aload(client)
            async with client.pipeline(transaction=False) as pipe:
                self._record_usage_in(pipe, usage)
                await pipe.execute()

    # -- deleting --------------------------------------------------------------------------------
    # Like update: read the record, then one script (lua/delete.lua) removes the hash, the
    # digest entry and the id's place in the indexes, on the condition that the record still
    # holds the owner (and digest) read, whose keys it names, and what ``expect`` names; else
    # read again. On a cluster it touches several keys, like create: a hash-tagged namespace.

    def _delete_call(
        self, key_id: str, current: KeyRecord | None, expect: Mapping[str, object] | None
    ) -> tuple[list[str], list[str | int]]:
        if current is None:
            raise self._not_found(key_id)
        check_expected(current, expect)  # fail early; the script checks again, atomically
        read = _fields(current)
        conditions: dict[str, str | int] = {"owner": read["owner"], "digest": read["digest"]}
        if expect:
            wanted = _fields(dataclasses.replace(current, **expect))  # type: ignore[arg-type]
            conditions.update({name: wanted[name] for name in expect})
        keys = [
            self.record_key(key_id),
            self.digest_key(current.digest),
            self.index_key(None),
        ]
        if current.owner is not None:
            keys.append(self.index_key(current.owner))
        args: list[str | int] = [key_id]
        for field, value in conditions.items():
            args += (field, value)
        return keys, args

    def _deleted(self, key_id: str, reply: list[Any], expect: Mapping[str, object] | None) -> bool:
        """Whether the script removed the record; False when it changed meanwhile (read again);
        :class:`Conflict` when an expectation failed."""
        code = int(reply[0])
        if code == 0:
            raise self._not_found(key_id)
        if code == 1:
            field = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
            if expect and field in expect:
                raise Conflict(f"key {key_id}: {field} has changed")
            return False
        return True

    def delete(self, key_id: str, expect: Mapping[str, object] | None = None) -> KeyRecord:
        if not _ID.match(key_id):
            raise self._not_found(key_id)
        with self._guard("delete"):
            client = self._client()
            for _ in range(_ATTEMPTS):
                current = _decode(client.hgetall(self.record_key(key_id)))
                keys, args = self._delete_call(key_id, current, expect)
                if self._deleted(key_id, DELETE.run(client, keys, args), expect):
                    break
            else:
                raise StoreUnavailable(f"key {shown_id(key_id)!r} changed under every delete")
        assert current is not None
        self._announce(current)
        return current

    async def adelete(self, key_id: str, expect: Mapping[str, object] | None = None) -> KeyRecord:
        if not _ID.match(key_id):
            raise self._not_found(key_id)
        with self._guard("delete"):
            client = await self._aclient()
            for _ in range(_ATTEMPTS):
                current = _decode(await client.hgetall(self.record_key(key_id)))
                keys, args = self._delete_call(key_id, current, expect)
                if self._deleted(key_id, await DELETE.arun(client, keys, args), expect):
                    break
            else:
                raise StoreUnavailable(f"key {shown_id(key_id)!r} changed under every delete")
        assert current is not None
        await self._aannounce(current)
        return current

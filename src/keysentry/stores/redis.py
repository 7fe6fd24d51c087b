"""The Redis store: key records shared by every process, with a blocking and an asyncio face.

Layout, under a namespace (``keysentry`` unless told otherwise); key names hold public ids,
digests and hashed owners only, never a key::

    <ns>:key:{<id>}       hash: the record, one field per codec field ("" for None)
    <ns>:creating:{<id>}  string, for up to a minute: a creation of that id in progress
    <ns>:digest:<hex>     string: the id owning that digest (how imported keys are found, and
                          what keeps digests unique)
    <ns>:ids              sorted set of every id, all scored 0: ZRANGEBYLEX pages in id order
    <ns>:owner:<hash>     the same for one owner's ids; <hash> is BLAKE2b-128 of the owner,
                          so an owner string of any shape makes a safe, fixed-length name
    <ns>:usage:{<id>}     hash: the key's usage history, "<YYYY-MM-DD>" -> requests that
                          UTC day, "<YYYY-MM-DD> <route>" -> those of a route template;
                          pruned as it is written (once a day), expiring when unwritten
                          for longer than the retention, deleted with the record
    <ns>:account:{<hash>} hash: the account of that owner, if it has a record

Redis Cluster, with any namespace: every script touches one hash slot. A record and what must
change with it (credits, usage counts, every field) live in one hash under its id's hash tag,
so ``get``, ``update``, ``spend_credits`` (``lua/spend.lua``) and usage counting with its
history (``lua/usage.lua``) are each one atomic script or command on that slot. The indexes cannot
live there (an index names many ids; a digest must be found without its id), so the writes
that touch them are sequences of one-slot steps, ordered so that a crash between two leaves
at most an index entry no record backs, never a record its indexes miss
(:mod:`._redis_steps` says how): ``create`` marks the id as being created, claims the digest
entry, adds the id to the id list and its owner's set, then writes the record; an owner change
adds the id to the new owner's set, updates the record, then takes the id out of the old
owner's. Two racing creates of one id or one digest cannot both win: the id's marker and the
digest entry are each claimed atomically, and a digest entry naming another id is taken over
only when that id's slot shows no record with this digest and no creation of one in progress.

Readers check what an index names: ``find_by_digest`` (two reads: the entry, then the record)
returns a record only if its digest is the one asked for, a listing skips ids with no record
or another owner. A dangling entry is thus harmless; a later ``create`` takes over a dangling
digest entry, and :meth:`RedisStore.repair` removes them all (and writes back any entry a
record misses, as a failover that lost one master's last writes may leave).

An update reads the record, runs :func:`~keysentry.stores.base.apply_changes` in Python (the
validation lives there), then writes only the fields it changes with one script
(``lua/update.lua``) that first checks the caller's conditions (``expect``) and, when the
owner changes, that the owner is still the one read (otherwise it reads again). Writing named
fields only means credit spending and usage counting, which write the same hash all the time,
never make an update fail: a WATCH on the whole hash did, for a busy key under revocation.
``record_usage`` sends one script call per hash slot and one pipeline per node.

The store takes the same URLs (``redis+cluster://``, ``redis+sentinel://``) and clients of the
user's own as :class:`~keysentry.ratelimit.redis.RedisLimiter`. A namespace with a hash tag
(``{keysentry}``, which older releases asked for on a cluster) still works: the whole store
then lives on one slot.

Every failure to reach the server raises :class:`~keysentry.errors.StoreUnavailable`, within
``timeout`` and without retries; a circuit breaker then answers at once until a trial call
succeeds. Given a :class:`~keysentry.invalidation.RedisInvalidator`, the store announces each
create and update so other processes drop their cached copy at once (all but updates of
``last_used_at`` alone, which no cached decision depends on).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any, TypeVar

from .._redis import RedisBackend
from ..accounts import (
    AccountChanges,
    AccountRecord,
    changed_account,
    decode_account,
    encode_account,
)
from ..errors import InsufficientCredits, StoreUnavailable
from ..history import DEFAULT_RETENTION_DAYS, DailyUsage
from ..records import KeyRecord, utcnow
from ..refills import period_starts
from . import _redis_steps as steps
from ._redis_calls import acall, call
from ._redis_repair import Repaired, repair
from ._redis_steps import ID, SPEND, KeyNames, Steps, decode_record, not_found
from .base import KeyChanges, RouteCounts, Usage, UsageNotRecorded

if TYPE_CHECKING:
    from ..invalidation import RedisInvalidator

__all__ = ["RedisStore", "Repaired"]

log = logging.getLogger("keysentry")

T = TypeVar("T")

#: Changes no cached decision depends on: not announced, so recording usage in batches does
#: not flush every process's cache of the keys in use.
_UNANNOUNCED = frozenset({"last_used_at"})


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
        self.names = KeyNames(namespace)
        self.invalidator = invalidator

    def __repr__(self) -> str:
        return f"RedisStore({self._where()}, namespace={self.namespace!r}, {self.breaker.state})"

    @property
    def namespace(self) -> str:
        """The prefix of every Redis key this store writes."""
        return self.names.namespace

    # -- key names -------------------------------------------------------------------------------

    def record_key(self, key_id: str) -> str:
        return self.names.record(key_id)

    def creating_key(self, key_id: str) -> str:
        return self.names.creating(key_id)

    def digest_key(self, digest: bytes) -> str:
        return self.names.digest(digest)

    def index_key(self, owner: str | None) -> str:
        """The sorted set of all ids, or of one owner's."""
        return self.names.index(owner)

    # -- running steps ---------------------------------------------------------------------------

    def _run(self, what: str, job: Steps[T]) -> T:
        """Run a step on the blocking client, under the breaker."""
        with self._guard(what, (UsageNotRecorded,)):
            client = self._client()
            reply: Any = None
            try:
                while True:
                    reply = call(client, job.send(reply), self._errors)
            except StopIteration as done:
                result: T = done.value
                return result
            finally:
                job.close()

    async def _arun(self, what: str, job: Steps[T]) -> T:
        """Run a step on the asyncio client, under the breaker."""
        with self._guard(what, (UsageNotRecorded,)):
            client = await self._aclient()
            reply: Any = None
            try:
                while True:
                    reply = await acall(client, job.send(reply), self._errors)
            except StopIteration as done:
                result: T = done.value
                return result
            finally:
                job.close()

    # -- shared steps ----------------------------------------------------------------------------

    def _spent(self, key_id: str, reply: list[int]) -> int | None:
        code = reply[0]
        if code == 0:
            return int(reply[1])
        if code == 1:
            return None
        if code == 2:
            raise InsufficientCredits(int(reply[1]))
        raise not_found(key_id)

    @staticmethod
    def _spend_args(amount: int) -> list[str | int]:
        """``lua/spend.lua``'s arguments: the amount, now and the current periods' starts."""
        if amount == 0:
            raise ValueError("an amount of credits cannot be zero")
        now = utcnow()
        return [amount, now.isoformat(), *(start.isoformat() for start in period_starts(now))]

    @staticmethod
    def _account_fields(current: AccountRecord | None, account: AccountRecord) -> dict[str, Any]:
        after = encode_account(account)
        before = None if current is None else encode_account(current)
        changed = {k: v for k, v in after.items() if before is None or before[k] != v}
        return {k: "" if v is None else v for k, v in changed.items()} or {"owner": account.owner}

    @staticmethod
    def _decoded_account(raw: Mapping[bytes, bytes] | None) -> AccountRecord | None:
        if not raw:
            return None
        try:
            return decode_account({k.decode(): v for k, v in raw.items()})
        except (KeyError, ValueError, TypeError) as exc:
            raise StoreUnavailable(f"unreadable account in Redis ({type(exc).__name__})") from exc

    @staticmethod
    def _page_start(after: str | None) -> str:
        return "-" if after is None else "(" + after

    @staticmethod
    def _matching(raws: list[Any], owner: str | None) -> list[KeyRecord]:
        # Ids whose record was never written (a create cut short) or was deleted behind the
        # index's back, and ids an owner's set still holds after a move, are skipped rather
        # than returned under the wrong owner.
        records = (decode_record(raw) for raw in raws)
        return [r for r in records if r is not None and (owner is None or r.owner == owner)]

    @staticmethod
    def _found(record: KeyRecord | None, digest: bytes) -> KeyRecord | None:
        # A digest entry names an id whose record may not have this digest (a dangling entry
        # a crashed create left): that is no key with this digest.
        return record if record is not None and record.digest == digest else None

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
        if not ID.match(key_id):
            return None
        with self._guard("get"):
            raw = self._client().hgetall(self.record_key(key_id))
        return decode_record(raw)

    def find_by_digest(self, digest: bytes) -> KeyRecord | None:
        with self._guard("find_by_digest"):
            client = self._client()
            key_id = client.get(self.digest_key(digest))
            if key_id is None or not ID.match(key_id.decode()):
                return None
            raw = client.hgetall(self.record_key(key_id.decode()))
        return self._found(decode_record(raw), digest)

    def create(self, record: KeyRecord) -> None:
        self._run("create", steps.create(self.names, record))
        self._announce(record)

    def update(
        self, key_id: str, changes: KeyChanges, expect: Mapping[str, object] | None = None
    ) -> KeyRecord:
        record = self._run("update", steps.update(self.names, key_id, changes, expect))
        if not changes.keys() <= _UNANNOUNCED:
            self._announce(record)
        return record

    def delete(self, key_id: str, expect: Mapping[str, object] | None = None) -> KeyRecord:
        record = self._run("delete", steps.delete(self.names, key_id, expect))
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
        if not ID.match(key_id):
            raise not_found(key_id)
        args = self._spend_args(amount)
        with self._guard("spend_credits"):
            reply = SPEND.run(self._client(), [self.record_key(key_id)], args)
        return self._spent(key_id, reply)

    def get_account(self, owner: str) -> AccountRecord | None:
        with self._guard("get_account"):
            raw = self._client().hgetall(self.names.account(owner))
        return self._decoded_account(raw)

    def update_account(self, owner: str, changes: AccountChanges) -> AccountRecord:
        name = self.names.account(owner)
        with self._guard("update_account"):
            client = self._client()
            current = self._decoded_account(client.hgetall(name))
            account = changed_account(owner, current, changes)
            # Only the fields that change: a spend writing the balance meanwhile is not undone.
            client.hset(name, mapping=self._account_fields(current, account))
        return account

    def spend_account_credits(self, owner: str, amount: int = 1) -> int | None:
        args = self._spend_args(amount)
        with self._guard("spend_account_credits"):
            reply = SPEND.run(self._client(), [self.names.account(owner)], args)
        return None if reply[0] == 3 else self._spent(owner, reply)

    def record_usage(
        self,
        usage: Mapping[str, Usage],
        routes: RouteCounts | None = None,
        *,
        retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
        if usage:
            job = steps.record_usage(self.names, usage, routes, retention_days)
            self._run("record_usage", job)

    def usage_history(
        self, key_ids: Sequence[str], since: date
    ) -> Mapping[str, Sequence[DailyUsage]]:
        return self._run("usage_history", steps.usage_history(self.names, key_ids, since))

    def repair(self) -> Repaired:
        """Sweep the indexes: remove the entries no record backs (a create or an owner change
        cut short by a crash leaves such an entry; readers skip them, so nothing is wrong
        meanwhile) and write back any a record misses. On a cluster it scans every master.
        Safe to run at any time, alongside the store's other users; it reads every index
        entry and every record once, so run it off-peak on a large store."""
        return self._run("repair", repair(self.names))

    # -- the asyncio face ------------------------------------------------------------------------

    async def aget(self, key_id: str) -> KeyRecord | None:
        if not ID.match(key_id):
            return None
        with self._guard("get"):
            client = await self._aclient()
            raw = await client.hgetall(self.record_key(key_id))
        return decode_record(raw)

    async def afind_by_digest(self, digest: bytes) -> KeyRecord | None:
        with self._guard("find_by_digest"):
            client = await self._aclient()
            key_id = await client.get(self.digest_key(digest))
            if key_id is None or not ID.match(key_id.decode()):
                return None
            raw = await client.hgetall(self.record_key(key_id.decode()))
        return self._found(decode_record(raw), digest)

    async def acreate(self, record: KeyRecord) -> None:
        await self._arun("create", steps.create(self.names, record))
        await self._aannounce(record)

    async def aupdate(
        self, key_id: str, changes: KeyChanges, expect: Mapping[str, object] | None = None
    ) -> KeyRecord:
        record = await self._arun("update", steps.update(self.names, key_id, changes, expect))
        if not changes.keys() <= _UNANNOUNCED:
            await self._aannounce(record)
        return record

    async def adelete(self, key_id: str, expect: Mapping[str, object] | None = None) -> KeyRecord:
        record = await self._arun("delete", steps.delete(self.names, key_id, expect))
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
        if not ID.match(key_id):
            raise not_found(key_id)
        args = self._spend_args(amount)
        with self._guard("spend_credits"):
            reply = await SPEND.arun(await self._aclient(), [self.record_key(key_id)], args)
        return self._spent(key_id, reply)

    async def aget_account(self, owner: str) -> AccountRecord | None:
        with self._guard("get_account"):
            raw = await (await self._aclient()).hgetall(self.names.account(owner))
        return self._decoded_account(raw)

    async def aupdate_account(self, owner: str, changes: AccountChanges) -> AccountRecord:
        name = self.names.account(owner)
        with self._guard("update_account"):
            client = await self._aclient()
            current = self._decoded_account(await client.hgetall(name))
            account = changed_account(owner, current, changes)
            await client.hset(name, mapping=self._account_fields(current, account))
        return account

    async def aspend_account_credits(self, owner: str, amount: int = 1) -> int | None:
        args = self._spend_args(amount)
        with self._guard("spend_account_credits"):
            reply = await SPEND.arun(await self._aclient(), [self.names.account(owner)], args)
        return None if reply[0] == 3 else self._spent(owner, reply)

    async def arecord_usage(
        self,
        usage: Mapping[str, Usage],
        routes: RouteCounts | None = None,
        *,
        retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
        if usage:
            job = steps.record_usage(self.names, usage, routes, retention_days)
            await self._arun("record_usage", job)

    async def ausage_history(
        self, key_ids: Sequence[str], since: date
    ) -> Mapping[str, Sequence[DailyUsage]]:
        return await self._arun("usage_history", steps.usage_history(self.names, key_ids, since))

    async def arepair(self) -> Repaired:
        """:meth:`repair` on the asyncio client."""
        return await self._arun("repair", repair(self.names))

"""Single-flight store lookups: concurrent cache misses for one key share one store query.

When a popular key's cache entry expires (or a flood of requests presents one id), every
request in flight would ask the store at once. Instead the first becomes the *leader* and
queries; the others wait for its answer. Each waiter then decides with its own presented key:
the record is shared, the verdict is not. Blocking callers (threads) and async callers (tasks)
have separate tables, as a thread cannot await a task's future nor a task block on a lock.

A leader that fails with :class:`~keysentry.errors.StoreUnavailable` hands that failure to its
waiters (the store is down for them too); a leader cancelled or failing otherwise leaves its
waiters to query for themselves.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable

from .decision import Lookup
from .errors import StoreUnavailable
from .records import KeyRecord
from .stores.base import AsyncKeyStore, KeyStore

__all__ = ["Flights"]

#: Longest a blocking waiter waits on a leader before asking the store itself.
WAIT = 30.0


class _Flight:
    __slots__ = ("done", "error", "record")

    def __init__(self) -> None:
        self.done = threading.Lock()
        self.done.acquire()  # released by the leader when the answer is in
        self.record: KeyRecord | None = None
        self.error: BaseException | None = None


class Flights:
    """The lookups in flight in this process, by cache key."""

    __slots__ = ("_async", "_lock", "_sync")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sync: dict[Hashable, _Flight] = {}
        self._async: dict[Hashable, asyncio.Future[KeyRecord | None]] = {}

    def fetch(self, lookup: Lookup, store: KeyStore) -> KeyRecord | None:
        """The record for ``lookup`` from the blocking store, or a leader's answer."""
        key = lookup.key_id or lookup.digest
        with self._lock:
            flight = self._sync.get(key)
            leader = flight is None
            if flight is None:
                flight = self._sync[key] = _Flight()
        if not leader:
            if flight.done.acquire(timeout=WAIT):
                flight.done.release()
                if flight.error is None:
                    return flight.record
                if isinstance(flight.error, StoreUnavailable):
                    raise StoreUnavailable(str(flight.error))
            return _query(lookup, store)
        try:
            flight.record = _query(lookup, store)
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._sync[key]
            flight.done.release()
        return flight.record

    async def afetch(self, lookup: Lookup, store: AsyncKeyStore) -> KeyRecord | None:
        """The async twin of :meth:`fetch`, for tasks of one event loop."""
        key = lookup.key_id or lookup.digest
        loop = asyncio.get_running_loop()
        flight = self._async.get(key)
        if flight is not None and flight.get_loop() is loop:
            # Our own cancellation propagates from wait(); the leader's does not.
            await asyncio.wait((flight,))
            if not flight.cancelled():
                error = flight.exception()
                if error is None:
                    return flight.result()
                if isinstance(error, StoreUnavailable):
                    raise StoreUnavailable(str(error))
            return await _aquery(lookup, store)
        if flight is not None:  # another loop's leader: its future is not ours to await
            return await _aquery(lookup, store)
        flight = self._async[key] = loop.create_future()
        try:
            record = await _aquery(lookup, store)
        except BaseException as exc:
            if isinstance(exc, StoreUnavailable):
                flight.set_exception(exc)
                flight.exception()  # retrieved here: no "never retrieved" log without waiters
            else:
                flight.cancel()
            raise
        else:
            flight.set_result(record)
        finally:
            if self._async.get(key) is flight:
                del self._async[key]
        return record


def _query(lookup: Lookup, store: KeyStore) -> KeyRecord | None:
    if lookup.key_id:
        return store.get(lookup.key_id.decode())
    return store.find_by_digest(lookup.digest)


async def _aquery(lookup: Lookup, store: AsyncKeyStore) -> KeyRecord | None:
    if lookup.key_id:
        return await store.aget(lookup.key_id.decode())
    return await store.afind_by_digest(lookup.digest)

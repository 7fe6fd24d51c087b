"""The hot-path cache: LRU with a TTL, and negative entries for ids the store does not know.

A hit returns what the store said at most ``ttl`` seconds ago, so a change made elsewhere
reaches this process within ``ttl`` even with no invalidation channel. A negative entry keeps
a flood of well-formed but unknown keys to one store call per id per ``negative_ttl``.
Size is bounded: the least recently used entry goes first. One lock guards it, so threaded
WSGI servers share a process-wide cache safely; it is held for dict operations only.

An entry stops being trusted in one of two ways: its TTL runs out, or :meth:`TTLCache.expire_all`
marks it stale at once (when changes may have been missed). Either way :meth:`TTLCache.get`
misses, so the next request asks the store, and :meth:`TTLCache.get_stale` still finds it,
for ``grace`` seconds past the end of its own TTL, in case the store cannot answer.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["MISS", "NEGATIVE", "TTLCache"]

V = TypeVar("V")


class _Marker:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: Returned by :meth:`TTLCache.get` when nothing (fresh) is cached.
MISS = _Marker("MISS")
#: Returned by :meth:`TTLCache.get` when the store was recently asked and had nothing.
NEGATIVE = _Marker("NEGATIVE")

#: The "fresh until" of an entry marked stale: before any clock reading.
_STALE = -math.inf


class TTLCache(Generic[V]):
    """Positive entries and negative ones in two separately bounded LRU tables.

    Unknown ids cost an attacker nothing to mint (the checksum is public), so a flood of them
    must not push known keys out: negative entries live in their own table of
    ``negative_size`` entries. A generation counter, bumped by every :meth:`discard`,
    :meth:`expire_all` and :meth:`clear`, lets a store answer that was in flight during an
    invalidation be dropped instead of cached (see :meth:`put`), so a revocation is never
    undone by a slow lookup.

    A positive entry is ``(fresh until, value, TTL end)``: the two times are equal until
    :meth:`expire_all` moves the first into the past, and the stale window of
    :meth:`get_stale` counts from the second, so marking an entry stale never shortens it.
    """

    __slots__ = (
        "_clock",
        "_data",
        "_lock",
        "_negative",
        "generation",
        "maxsize",
        "negative_size",
        "negative_ttl",
        "ttl",
    )

    def __init__(
        self,
        maxsize: int = 10_000,
        ttl: float = 30.0,
        negative_ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        negative_size: int | None = None,
    ) -> None:
        if maxsize < 1 or ttl <= 0 or negative_ttl < 0:
            raise ValueError("cache size must be >= 1, ttl > 0 and negative_ttl >= 0")
        self.maxsize = maxsize
        self.negative_size = maxsize if negative_size is None else max(1, negative_size)
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._data: OrderedDict[Hashable, tuple[float, V, float]] = OrderedDict()
        self._negative: OrderedDict[Hashable, float] = OrderedDict()
        #: Bumped by every invalidation; read it before asking the store, hand it to put().
        self.generation = 0

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return (
            f"TTLCache({len(self._data)}/{self.maxsize}, "
            f"{len(self._negative)}/{self.negative_size} negative, ttl={self.ttl:g}s)"
        )

    def get(self, key: Hashable) -> V | _Marker:
        """The cached value, :data:`NEGATIVE`, or :data:`MISS`.

        Lock-free: each OrderedDict operation is atomic, and a concurrent eviction between
        the read and the recency update only costs that update. An expired entry is left for
        the next :meth:`put` to replace or the LRU end to drop.
        """
        item = self._data.get(key)
        if item is None:
            expires = self._negative.get(key)
            if expires is not None and expires > self._clock():
                return NEGATIVE
            return MISS
        if item[0] <= self._clock():
            return MISS
        try:  # noqa: SIM105  (contextlib.suppress costs a context manager per hit)
            self._data.move_to_end(key)
        except KeyError:
            pass
        return item[1]

    def get_stale(self, key: Hashable, grace: float) -> V | None:
        """A positive entry whose TTL ran out less than ``grace`` seconds ago (or runs still,
        fresh or marked stale by :meth:`expire_all`), else None.

        For when the store cannot be reached: a key known a moment ago keeps working.
        """
        item = self._data.get(key)
        if item is None or item[2] + grace <= self._clock():
            return None
        return item[1]

    def put(self, key: Hashable, value: V, generation: int | None = None) -> None:
        """Cache ``value``; skipped if anything was invalidated since ``generation``."""
        expires = self._clock() + self.ttl
        with self._lock:
            if generation is not None and generation != self.generation:
                return
            self._negative.pop(key, None)
            self._data[key] = (expires, value, expires)
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def put_negative(self, key: Hashable, generation: int | None = None) -> None:
        if self.negative_ttl <= 0:
            return
        expires = self._clock() + self.negative_ttl
        with self._lock:
            if generation is not None and generation != self.generation:
                return
            self._data.pop(key, None)
            self._negative[key] = expires
            self._negative.move_to_end(key)
            while len(self._negative) > self.negative_size:
                self._negative.popitem(last=False)

    def discard(self, key: Hashable) -> None:
        with self._lock:
            self.generation += 1
            self._data.pop(key, None)
            self._negative.pop(key, None)

    def expire_all(self) -> None:
        """Stop trusting every entry now, without forgetting it: for when changes may have
        been missed (an invalidation channel was lost).

        :meth:`get` misses on each positive entry from now on, so its next request asks the
        store, while :meth:`get_stale` still finds it until its own TTL plus ``grace`` runs
        out; negative entries are dropped. Answers in flight are not cached (the generation
        moves on). O(n) under the lock; :meth:`get` stays lock-free and does no more work.
        """
        with self._lock:
            self.generation += 1
            self._negative.clear()
            data = self._data
            # A snapshot, as lock-free get()s reorder the dict meanwhile; assigning an existing
            # key changes neither the order nor the size, and only holders of the lock add or
            # remove keys.
            for key, (_, value, ends) in list(data.items()):
                data[key] = (_STALE, value, ends)

    def clear(self) -> None:
        """Forget every entry, positive and negative (nothing is left for stale serving)."""
        with self._lock:
            self.generation += 1
            self._data.clear()
            self._negative.clear()

"""The hot-path cache: LRU with a TTL, for known keys and for ids the store does not know.

A hit returns what the store said at most ``ttl`` seconds ago, so a change made elsewhere
reaches this process within ``ttl`` even with no invalidation channel. A negative entry keeps
a flood of well-formed but unknown keys to one store call per id per ``negative_ttl``.
Size is bounded: the least recently used entry goes first. One lock guards writes, so threaded
WSGI servers share a process-wide cache safely; reads take no lock.

Known and unknown entries are found through one index by the same steps, so a lookup takes the
same time whichever it finds (timing must not tell which key ids exist); only their recency
order and their bound are kept apart.

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
#: What :meth:`TTLCache.put_negative` stores unless told otherwise: the store was recently
#: asked and had nothing.
NEGATIVE = _Marker("NEGATIVE")

#: The "fresh until" of an entry marked stale: before any clock reading.
_STALE = -math.inf


class TTLCache(Generic[V]):
    """Positive entries and negative ones, in two separately bounded LRU orders.

    Unknown ids cost an attacker nothing to mint (the checksum is public), so a flood of them
    must not push known keys out: negative entries count against their own bound of
    ``negative_size``. A generation counter, bumped by every :meth:`discard`,
    :meth:`expire_all` and :meth:`clear`, lets a store answer that was in flight during an
    invalidation be dropped instead of cached (see :meth:`put`), so a revocation is never
    undone by a slow lookup.

    An entry is ``(fresh until, value, its recency order, TTL end)``: the two times are equal
    until :meth:`expire_all` moves the first into the past, and the stale window of
    :meth:`get_stale` counts from the second, so marking an entry stale never shortens it.
    """

    __slots__ = (
        "_clock",
        "_index",
        "_kinds",
        "_known",
        "_lock",
        "_unknown",
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
        negative_ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        negative_size: int | None = None,
    ) -> None:
        if negative_ttl is None:
            negative_ttl = ttl
        if maxsize < 1 or ttl <= 0 or negative_ttl < 0:
            raise ValueError("cache size must be >= 1, ttl > 0 and negative_ttl >= 0")
        self.maxsize = maxsize
        self.negative_size = maxsize if negative_size is None else max(1, negative_size)
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (fresh until, value, the recency order it belongs to, TTL end)
        self._index: dict[
            Hashable, tuple[float, V | _Marker, OrderedDict[Hashable, None], float]
        ] = {}
        self._known: OrderedDict[Hashable, None] = OrderedDict()
        self._unknown: OrderedDict[Hashable, None] = OrderedDict()
        # put()'s settings by kind, indexed by ``known``.
        self._kinds = (
            (negative_ttl, self._unknown, self.negative_size),
            (ttl, self._known, maxsize),
        )
        #: Bumped by every invalidation; read it before asking the store, hand it to put().
        self.generation = 0

    def __len__(self) -> int:
        return len(self._known)

    def __repr__(self) -> str:
        return (
            f"TTLCache({len(self._known)}/{self.maxsize}, "
            f"{len(self._unknown)}/{self.negative_size} negative, ttl={self.ttl:g}s)"
        )

    def get(self, key: Hashable) -> V | _Marker:
        """The cached value (what :meth:`put_negative` stored, for an unknown id), or
        :data:`MISS`.

        Lock-free: each dict operation is atomic, and a concurrent eviction or move between
        the read and the recency update only costs that update. An expired entry is left for
        the next put to replace or the LRU end to drop.
        """
        item = self._index.get(key)
        if item is None or item[0] <= self._clock():
            return MISS
        try:  # noqa: SIM105  (contextlib.suppress costs a context manager per hit)
            item[2].move_to_end(key)
        except KeyError:
            pass
        return item[1]

    def get_stale(self, key: Hashable, grace: float) -> V | _Marker | None:
        """An entry whose TTL ran out less than ``grace`` seconds ago (or runs still, fresh or
        marked stale by :meth:`expire_all`), else None.

        For when the store cannot be reached: a key known a moment ago keeps working (and an
        id known to be unknown stays unknown).
        """
        item = self._index.get(key)
        if item is None or item[3] + grace <= self._clock():
            return None
        return item[1]

    def put(
        self,
        key: Hashable,
        value: V | _Marker,
        generation: int | None = None,
        known: bool = True,
    ) -> None:
        """Cache ``value``; skipped if anything was invalidated since ``generation``.

        ``known=False`` remembers an id the store does not have (``value`` is then what
        :meth:`get` returns for it), for ``negative_ttl``, within the negative bound: the same
        steps either way.
        """
        ttl, order, bound = self._kinds[known]
        expires = self._clock() + ttl
        index = self._index
        with self._lock:
            if (generation is not None and generation != self.generation) or ttl <= 0:
                return
            old = index.get(key)
            if old is not None:
                old[2].pop(key, None)
            index[key] = (expires, value, order, expires)
            order[key] = None
            while len(order) > bound:
                index.pop(order.popitem(last=False)[0], None)

    def put_negative(
        self, key: Hashable, generation: int | None = None, value: V | _Marker = NEGATIVE
    ) -> None:
        """``put(key, value, generation, known=False)``."""
        self.put(key, value, generation, False)

    def discard(self, key: Hashable) -> None:
        with self._lock:
            self.generation += 1
            item = self._index.pop(key, None)
            if item is not None:
                item[2].pop(key, None)

    def discard_where(self, matches: Callable[[V], bool]) -> int:
        """Forget every known entry whose value ``matches`` (all the keys of an account that
        changed); how many went. O(n) under the lock, for rare changes."""
        with self._lock:
            self.generation += 1
            index = self._index
            gone = [
                key
                for key, item in list(index.items())
                if item[2] is self._known and not isinstance(item[1], _Marker) and matches(item[1])
            ]
            for key in gone:
                item = index.pop(key)
                item[2].pop(key, None)
        return len(gone)

    def expire_all(self) -> None:
        """Stop trusting every entry now, without forgetting it: for when changes may have
        been missed (an invalidation channel was lost).

        :meth:`get` misses on each entry from now on, so its next request asks the store,
        while :meth:`get_stale` still finds it until its own TTL plus ``grace`` runs out.
        Unknown ids are kept stale alike: dropping them would let an outage tell them from
        known ones (one answered from the stale entry, the other 503). Answers in flight are
        not cached (the generation moves on). O(n) under the lock; :meth:`get` stays
        lock-free and does no more work.
        """
        with self._lock:
            self.generation += 1
            index = self._index
            # A snapshot; assigning an existing key changes neither the order nor the size, and
            # only holders of the lock add or remove keys.
            for key, (_, value, order, ends) in list(index.items()):
                index[key] = (_STALE, value, order, ends)

    def clear(self) -> None:
        """Forget every entry, known and unknown (nothing is left for stale serving)."""
        with self._lock:
            self.generation += 1
            self._index.clear()
            self._known.clear()
            self._unknown.clear()

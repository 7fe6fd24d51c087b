"""The hot-path cache: LRU with a TTL, and negative entries for ids the store does not know.

A hit returns what the store said at most ``ttl`` seconds ago, so a change made elsewhere
reaches this process within ``ttl`` even with no invalidation channel. A negative entry keeps
a flood of well-formed but unknown keys to one store call per id per ``negative_ttl``.
Size is bounded: the least recently used entry goes first. One lock guards it, so threaded
WSGI servers share a process-wide cache safely; it is held for dict operations only.
"""

from __future__ import annotations

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


class TTLCache(Generic[V]):
    __slots__ = ("_clock", "_data", "_lock", "maxsize", "negative_ttl", "ttl")

    def __init__(
        self,
        maxsize: int = 10_000,
        ttl: float = 30.0,
        negative_ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if maxsize < 1 or ttl <= 0 or negative_ttl < 0:
            raise ValueError("cache size must be >= 1, ttl > 0 and negative_ttl >= 0")
        self.maxsize = maxsize
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._data: OrderedDict[Hashable, tuple[float, V | _Marker]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"TTLCache({len(self._data)}/{self.maxsize}, ttl={self.ttl:g}s)"

    def get(self, key: Hashable) -> V | _Marker:
        """The cached value, :data:`NEGATIVE`, or :data:`MISS`.

        Lock-free: each OrderedDict operation is atomic, and a concurrent eviction between
        the read and the recency update only costs that update. An expired entry is left for
        the next :meth:`put` to replace or the LRU end to drop.
        """
        item = self._data.get(key)
        if item is None or item[0] <= self._clock():
            return MISS
        try:  # noqa: SIM105  (contextlib.suppress costs a context manager per hit)
            self._data.move_to_end(key)
        except KeyError:
            pass
        return item[1]

    def put(self, key: Hashable, value: V) -> None:
        self._store(key, value, self.ttl)

    def put_negative(self, key: Hashable) -> None:
        if self.negative_ttl > 0:
            self._store(key, NEGATIVE, self.negative_ttl)

    def discard(self, key: Hashable) -> None:
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def _store(self, key: Hashable, value: V | _Marker, ttl: float) -> None:
        expires = self._clock() + ttl
        with self._lock:
            self._data[key] = (expires, value)
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

"""The in-process limiter: GCRA state in a dict, for one process (threads included).

Monotonic clock, one lock. Memory is bounded two ways: a key whose every TAT is in the past is
back to full burst, so forgetting it loses nothing (the least recently used keys are checked
and dropped as others are charged), and ``max_keys`` caps the table outright, dropping the
least recently used key first.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from .gcra import US, Policy, RateDecision, decide, describe

__all__ = ["MemoryLimiter"]


#: Makes a RateDecision without the named tuple's Python-level ``__new__``.
_new = tuple.__new__


class MemoryLimiter:
    #: In this process: the request path calls :meth:`hit` in line, with no wait.
    local = True

    def __init__(
        self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        self._clock = clock
        # The default clock read as integer nanoseconds: the same clock, without a float
        # multiplication and conversion per hit.
        self._ns = clock is time.monotonic
        self._lock = threading.Lock()
        # key -> {policy name: TAT}; ordered by last use, oldest first.
        self._tats: OrderedDict[str, dict[str, int]] = OrderedDict()
        self._hits = 0  # idle keys are swept every 64 admitted requests, not on each

    def __repr__(self) -> str:
        return f"MemoryLimiter({len(self._tats)}/{self.max_keys} keys)"

    def __len__(self) -> int:
        return len(self._tats)

    def hit(self, key: str, policies: tuple[Policy, ...], cost: int = 1) -> RateDecision:
        if len(policies) != 1:
            return self._hit_all(key, policies, cost)
        # One policy, the common case: a dict lookup and integer arithmetic (gcra.decide and
        # gcra.describe, inline), the state updated in place.
        p = policies[0]
        name = p.name
        now = time.monotonic_ns() // 1000 if self._ns else int(self._clock() * US)
        data = self._tats
        lock = self._lock
        lock.acquire()
        try:
            stored = data.get(key)
            tat = None if stored is None else stored.get(name)
            if tat is None or tat < now:
                tat = now
            new = tat + cost * p.interval
            if new - p.tolerance > now:
                return describe(policies, (tat,), now, False, cost)
            if stored is None:
                data[key] = {name: new}
                if len(data) > self.max_keys:
                    self._sweep(now)
            else:
                stored[name] = new
                data.move_to_end(key)
            self._hits = hits = self._hits + 1
            if not hits & 63:
                self._sweep(now)
        finally:
            lock.release()
        # Allowed, so 0 < used <= B*T: r is the room left, and r next grows when `used` drops
        # to the multiple of T below it (gcra._state, simplified for that range).
        used = new - now
        interval = p.interval
        wait = (used - 1) % interval + 1
        return _new(
            RateDecision,
            (True, policies, ((p.tolerance - used) // interval,), (-(-wait // US),), 0),
        )

    def _hit_all(self, key: str, policies: tuple[Policy, ...], cost: int) -> RateDecision:
        """Several policies, all-or-nothing; a policy the key no longer has is dropped."""
        now = int(self._clock() * US)
        data = self._tats
        with self._lock:
            stored = data.get(key)
            if stored is None:
                tats: list[int | None] = [None] * len(policies)
            else:
                tats = [stored.get(p.name) for p in policies]
            allowed, new = decide(policies, tats, now, cost)
            if allowed:
                data[key] = dict(zip([p.name for p in policies], new, strict=True))
                data.move_to_end(key)
                self._hits += 1
                if self._hits & 63 == 0 or len(data) > self.max_keys:
                    self._sweep(now)
        return describe(policies, new, now, allowed, cost)

    async def ahit(self, key: str, policies: tuple[Policy, ...], cost: int = 1) -> RateDecision:
        return self.hit(key, policies, cost)

    def reset(self, key: str) -> None:
        with self._lock:
            self._tats.pop(key, None)

    def _sweep(self, now: int) -> None:
        data = self._tats
        while len(data) > self.max_keys:
            data.popitem(last=False)
        # The oldest entries are the likeliest to be idle; stop at the first busy one.
        for _ in range(128):
            oldest = next(iter(data))
            if max(data[oldest].values()) > now:
                return
            del data[oldest]
            if not data:
                return

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

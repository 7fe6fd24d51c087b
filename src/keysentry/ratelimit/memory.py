"""The in-process limiter: GCRA state in a dict, for one process (threads included).

Monotonic clock, one lock. Memory is bounded two ways: a key whose every TAT is in the past is
back to full burst, so forgetting it loses nothing (idle keys are swept as they age), and
``max_keys`` caps the table outright, dropping the least recently used key first.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from .gcra import US, Policy, RateDecision, decide, describe

__all__ = ["MemoryLimiter"]


class MemoryLimiter:
    def __init__(
        self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        # key -> TATs by policy position; ordered by last use, oldest first.
        self._tats: OrderedDict[str, list[int]] = OrderedDict()

    def __repr__(self) -> str:
        return f"MemoryLimiter({len(self._tats)}/{self.max_keys} keys)"

    def __len__(self) -> int:
        return len(self._tats)

    def hit(self, key: str, policies: tuple[Policy, ...], cost: int = 1) -> RateDecision:
        now = int(self._clock() * US)
        with self._lock:
            stored = self._tats.get(key)
            tats: list[int | None] = list(stored) if stored else []
            tats.extend([None] * (len(policies) - len(tats)))
            allowed, new = decide(policies, tats[: len(policies)], now, cost)
            if allowed:
                self._tats[key] = new
                self._tats.move_to_end(key)
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
        for _ in range(2):
            if not data:
                return
            oldest = next(iter(data))
            if max(data[oldest]) > now:
                return
            del data[oldest]

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

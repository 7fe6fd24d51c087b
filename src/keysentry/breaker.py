"""A circuit breaker for remote backends (Redis, SQL): fail fast while a server is down.

After ``threshold`` consecutive failures the breaker opens: calls are refused at once, with no
I/O, for ``cooldown`` seconds. Then one call is let through as a trial; its success closes the
breaker, its failure opens it for another cooldown. A trial that never reports back (its
caller cancelled or killed) is given up after another cooldown, so the breaker cannot stick.
A request therefore waits on a dead server at most once per cooldown, not once per request,
and recovery needs no restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["CircuitBreaker"]


class CircuitBreaker:
    __slots__ = ("_clock", "_failures", "_lock", "_opened_at", "_trial", "cooldown", "threshold")
    # _trial: when the current trial call started (monotonic), or None

    def __init__(
        self,
        threshold: int = 3,
        cooldown: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 1 or cooldown <= 0:
            raise ValueError("threshold must be >= 1 and cooldown > 0")
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial: float | None = None

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.state}, failures={self._failures})"

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._trial is not None else "open"

    def allow(self) -> bool:
        """Whether a call may go to the server now."""
        if self._opened_at is None:
            return True
        with self._lock:
            return self._try_trial()

    def _try_trial(self) -> bool:
        opened_at = self._opened_at
        if opened_at is None:
            return True  # closed by another thread meanwhile
        now = self._clock()
        if now - opened_at < self.cooldown:
            return False
        if self._trial is not None and now - self._trial < self.cooldown:
            return False  # one trial at a time; a silent one expires after a cooldown
        self._trial = now
        return True

    def success(self) -> None:
        if self._failures or self._opened_at is not None:
            with self._lock:
                self._failures = 0
                self._opened_at = None
                self._trial = None

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial is not None or self._failures >= self.threshold:
                self._opened_at = self._clock()
                self._trial = None

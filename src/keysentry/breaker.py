"""A circuit breaker for remote backends (Redis, SQL): fail fast while a server is down.

After ``threshold`` consecutive failures the breaker opens: calls are refused at once, with no
I/O, for ``cooldown`` seconds. Then one call is let through as a trial; its success closes the
breaker, its failure opens it for another cooldown. A trial that never reports back (its
caller cancelled or killed) is given up after another cooldown, so the breaker cannot stick.
A request therefore waits on a dead server at most once per cooldown, not once per request,
and recovery needs no restart.

Every call to a remote server (the Redis store, limiter and invalidator, the SQL store) goes
through :class:`Guarded`, one ``with`` block per call: it asks the breaker first, tells it how
the call went, and turns the driver's errors into :class:`~keysentry.errors.StoreUnavailable`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import NoReturn

from .errors import KeysentryError, StoreUnavailable

__all__ = ["CircuitBreaker", "Guarded", "Translate"]

#: A backend's own reading of a driver error: the error to raise instead, and what to chain it
#: to (the driver's error; None when the driver's text may quote a row's values or a secret,
#: and it must not ride along at all). A :class:`StoreUnavailable` counts as a failure of the
#: server; any other error (a duplicate key, say) means the server answered: a success.
Translate = Callable[[BaseException], tuple[Exception, BaseException | None]]


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


class Guarded:
    """One exchange with a remote server, under its breaker: ``with Guarded(...): ...``.

    :param breaker: the backend's breaker.
    :param name: the backend, in messages (``"RedisStore"``).
    :param what: the call, in messages (``"get"``).
    :param errors: the driver's exception classes: a server that could not be reached, or
        failed to answer.
    :param translate: the error to raise for a driver error; by default
        ``StoreUnavailable("<name> <what> failed: <error class>")``, chained to it.
    :param failing: errors of keysentry's own that count as a failure when raised inside
        (a store whose tables a newer release wrote cannot serve any call).

    When the breaker is open, entering raises :class:`StoreUnavailable` at once. Leaving, the
    breaker is told how the call went: a success without an error, or with keysentry's own
    errors and ``ValueError`` (a missing key, a refused change: the server answered); a
    failure with a driver error or anything else (a cancellation mid-call included, so a
    trial call is never left unaccounted for). It is a plain ``with`` block, so it works
    around ``await`` as well.
    """

    __slots__ = ("_breaker", "_errors", "_failing", "_name", "_translate", "_what")

    def __init__(
        self,
        breaker: CircuitBreaker,
        name: str,
        what: str,
        errors: tuple[type[BaseException], ...],
        *,
        translate: Translate | None = None,
        failing: tuple[type[BaseException], ...] = (),
    ) -> None:
        self._breaker = breaker
        self._name = name
        self._what = what
        self._errors = errors
        self._translate = translate
        self._failing = failing

    def __enter__(self) -> None:
        if not self._breaker.allow():
            raise StoreUnavailable(f"{self._name} circuit is open: {self._what} not attempted")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        breaker = self._breaker
        if exc is None:
            breaker.success()
            return
        if isinstance(exc, self._errors):
            error: Exception
            if self._translate is None:
                error = StoreUnavailable(f"{self._name} {self._what} failed: {type(exc).__name__}")
                cause: BaseException | None = exc
            else:
                error, cause = self._translate(exc)
            if isinstance(error, StoreUnavailable):
                breaker.failure()
            else:
                breaker.success()
            if cause is None:
                _raise_alone(error)
            raise error from cause
        if isinstance(exc, (KeysentryError, ValueError)) and not isinstance(exc, self._failing):
            breaker.success()
        else:
            breaker.failure()


def _raise_alone(error: BaseException) -> NoReturn:
    """Raise ``error`` with neither cause nor context: the error being handled must not ride
    along on it, not even unprinted (``raise ... from None`` would keep it as the context)."""
    try:
        raise error
    except BaseException as raised:
        raised.__context__ = None
        raise

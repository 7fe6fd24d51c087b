"""The circuit breaker that keeps a dead Redis from costing every request a timeout, and the
``with`` block every remote call of every backend goes through."""

from __future__ import annotations

import asyncio
import traceback

import pytest

from keysentry.breaker import CircuitBreaker, Guarded, Translate
from keysentry.errors import Conflict, DuplicateKey, KeyNotFound, StoreUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_and_lets_one_trial_through() -> None:
    clock = Clock()
    b = CircuitBreaker(threshold=2, cooldown=1.0, clock=clock)
    b.failure()
    assert b.allow()
    b.failure()
    assert b.state == "open"
    assert not b.allow()
    clock.now = 1.5
    assert b.allow()  # the trial
    assert not b.allow()  # only one at a time
    b.success()
    assert b.state == "closed"
    assert b.allow()


def test_failed_trial_reopens_for_a_full_cooldown() -> None:
    clock = Clock()
    b = CircuitBreaker(threshold=1, cooldown=1.0, clock=clock)
    b.failure()
    clock.now = 1.0
    assert b.allow()
    b.failure()
    clock.now = 1.5
    assert not b.allow()
    clock.now = 2.0
    assert b.allow()


def test_a_trial_that_never_reports_back_does_not_stick() -> None:
    """A caller cancelled mid-trial reports nothing; the breaker must not stay half-open."""
    clock = Clock()
    b = CircuitBreaker(threshold=1, cooldown=1.0, clock=clock)
    b.failure()
    clock.now = 1.0
    assert b.allow()  # trial taken, then its caller vanishes
    clock.now = 1.5
    assert not b.allow()
    clock.now = 2.1
    assert b.allow()  # a new trial after another cooldown
    b.success()
    assert b.state == "closed"


# -- Guarded: one remote call ----------------------------------------------------------------------


class DriverError(Exception):
    """A driver's error, whose text may quote what it was sent."""


def guarded(
    breaker: CircuitBreaker,
    translate: Translate | None = None,
    failing: tuple[type[BaseException], ...] = (),
) -> Guarded:
    errors = (DriverError, OSError)
    return Guarded(breaker, "Backend", "get", errors, translate=translate, failing=failing)


def test_guarded_counts_a_clean_call_as_a_success() -> None:
    b = CircuitBreaker(threshold=2, cooldown=1.0)
    b.failure()
    with guarded(b):
        pass
    b.failure()
    assert b.state == "closed"  # the success in between reset the count


def test_guarded_turns_driver_errors_into_store_unavailable_and_counts_them() -> None:
    b = CircuitBreaker(threshold=2, cooldown=1.0)
    for _ in range(2):
        failed = r"^Backend get failed: ConnectionResetError$"
        with pytest.raises(StoreUnavailable, match=failed), guarded(b):
            raise ConnectionResetError("peer")
    assert b.state == "open"
    refused = r"^Backend circuit is open: get not attempted$"
    with pytest.raises(StoreUnavailable, match=refused), guarded(b):
        raise AssertionError("not attempted")  # pragma: no cover


@pytest.mark.parametrize("error", [KeyNotFound("k"), Conflict("c"), ValueError("v")])
def test_guarded_counts_keysentrys_own_errors_as_answers(error: Exception) -> None:
    b = CircuitBreaker(threshold=1, cooldown=1.0)
    with pytest.raises(type(error)), guarded(b):
        raise error
    assert b.state == "closed"


def test_guarded_counts_its_failing_errors_and_everything_else_as_failures() -> None:
    failing = (StoreUnavailable,)
    for error in [StoreUnavailable("newer tables"), RuntimeError("a bug"), KeyboardInterrupt()]:
        b = CircuitBreaker(threshold=1, cooldown=1.0)
        with pytest.raises(type(error)), guarded(b, failing=failing):
            raise error
        assert b.state == "open", error


def test_guarded_counts_a_cancelled_await_so_a_trial_is_not_lost() -> None:
    clock = Clock()
    b = CircuitBreaker(threshold=1, cooldown=1.0, clock=clock)
    b.failure()
    clock.now = 1.0

    async def trial() -> None:
        with guarded(b):  # the trial call
            await asyncio.sleep(10)

    async def cancel_it() -> None:
        task = asyncio.create_task(trial())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_it())
    assert b.state == "open"  # reopened at once, not half-open until the trial expires


def test_guarded_translation_may_leave_the_driver_error_out_of_the_chain() -> None:
    b = CircuitBreaker(threshold=1, cooldown=1.0)

    def duplicate(exc: BaseException) -> tuple[Exception, BaseException | None]:
        return DuplicateKey("a key with that digest exists"), None

    def unavailable(exc: BaseException) -> tuple[Exception, BaseException | None]:
        return StoreUnavailable("Backend get failed: DriverError"), None

    for translate, state in [(duplicate, "closed"), (unavailable, "open")]:
        try:
            raise KeyError("the caller was handling this")
        except KeyError:
            with (
                pytest.raises((DuplicateKey, StoreUnavailable)) as raised,
                guarded(b, translate=translate),
            ):
                # Raised as a driver raises: while its caller handles an error of its own.
                raise DriverError("Key (digest)=(ab12cd34) already exists")  # noqa: B904
        assert raised.value.__cause__ is None
        assert raised.value.__context__ is None
        assert "ab12cd34" not in "".join(traceback.format_exception(raised.value))
        assert b.state == state  # a duplicate is an answer; anything unavailable is not


def test_guarded_chains_the_driver_error_by_default() -> None:
    with pytest.raises(StoreUnavailable) as raised, guarded(CircuitBreaker()):
        raise DriverError("refused")
    assert isinstance(raised.value.__cause__, DriverError)

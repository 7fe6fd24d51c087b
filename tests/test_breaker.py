"""The circuit breaker that keeps a dead Redis from costing every request a timeout."""

from __future__ import annotations

from keysentry.breaker import CircuitBreaker


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

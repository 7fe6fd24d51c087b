"""GCRA, the generic cell rate algorithm, as pure integer math shared by every backend.

A policy ``N per P with burst B`` admits one request every ``T = P / N`` on average and lets a
client that has been idle send ``B`` requests at once. The only state is one timestamp per
policy, the *theoretical arrival time* (TAT): when the client would be back to full burst.

For a request of ``cost`` c at time ``now``::

    tat  = max(stored_tat, now)          # idle time is not banked beyond the burst
    new  = tat + c * T
    allowed  iff  new - B * T <= now     # i.e. the burst still has room for c
    on allow: stored_tat = new;  on refusal: nothing changes (refusals consume nothing)

What a client may send, for ``N/P`` with burst ``B`` (default ``B = N``):

* from idle: ``B`` requests at once, then one every ``T``;
* in any window of length ``w``: at most ``B + floor(w / T)`` requests (``B + N`` per ``P``);
* in steady state: ``N`` per ``P``, evenly spaced.

A key's limit can change at any time: the stored TAT is time owed, not a count, so the next
request is judged by the new policy against the same debt (no reset, no orphaned state). A
client that spent a whole ``2/minute`` burst (60 s owed) and is upgraded to ``4/minute`` has a
full burst still, now repaid at 15 s a request.

Everything is integer microseconds, so the Redis script and this module agree to the unit and
no float drift accumulates. Several policies per key are decided all-or-nothing: a request is
admitted only if every policy admits it, and only then does any state change.

The Lua script (``lua/gcra.lua``) repeats the five lines above inside Redis, atomically; it
returns the state, and :func:`describe` turns state into header values for both backends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..records import Rate

__all__ = ["Policy", "RateDecision", "decide", "describe"]

US = 1_000_000

_PERIOD_NAMES = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}


@dataclass(frozen=True, slots=True)
class Policy:
    """A :class:`Rate` prepared for the math: intervals in microseconds, a name for headers."""

    name: str
    limit: int  # q: requests per window
    window: int  # w: window in whole seconds (at least 1)
    interval: int  # T, µs between requests at the sustained rate
    burst: int  # B

    @classmethod
    def of(cls, rate: Rate) -> Policy:
        window = max(1, round(rate.period))
        unit = _PERIOD_NAMES.get(window)
        name = f"per-{unit}" if unit else f"per-{window}s"
        interval = max(1, round(rate.period * US / rate.limit))
        return cls(name, rate.limit, window, interval, rate.burst or rate.limit)

    @property
    def tolerance(self) -> int:
        return self.burst * self.interval


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The outcome for one request across a key's policies, with what the headers say."""

    allowed: bool
    policies: tuple[Policy, ...]
    remaining: tuple[int, ...]  # r, per policy
    reset: tuple[int, ...]  # t, per policy: whole seconds until r next grows (0 when full)
    retry_after: int  # whole seconds, rounded up; 0 when allowed


def decide(
    policies: Sequence[Policy], tats: Sequence[int | None], now: int, cost: int = 1
) -> tuple[bool, list[int]]:
    """Whether every policy admits ``cost`` at ``now``; and the TATs to keep afterwards.

    On refusal the returned TATs are the current ones (normalised to ``now`` when stale),
    so a refusal changes nothing.
    """
    current = [now if tat is None or tat < now else tat for tat in tats]
    new = [tat + cost * p.interval for tat, p in zip(current, policies, strict=True)]
    if all(n - p.tolerance <= now for n, p in zip(new, policies, strict=True)):
        return True, new
    return False, current


def describe(
    policies: tuple[Policy, ...], tats: Sequence[int], now: int, allowed: bool, cost: int = 1
) -> RateDecision:
    """Header values from the TATs after the decision (those :func:`decide` returned)."""
    remaining = []
    reset = []
    retry = 0
    for tat, p in zip(tats, policies, strict=True):
        used = max(0, tat - now)  # µs of burst in use
        room = p.tolerance - used
        remaining.append(max(0, room // p.interval))
        # r grows by one when `used` next drops to a multiple of T.
        wait = used - (-(-used // p.interval) - 1) * p.interval if used else 0
        reset.append(-(-wait // US))
        if not allowed:
            short = cost * p.interval - room  # µs until this policy admits `cost`
            retry = max(retry, short)
    return RateDecision(
        allowed, policies, tuple(remaining), tuple(reset), -(-retry // US) if retry > 0 else 0
    )

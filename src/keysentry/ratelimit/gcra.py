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

A key's limit can change at any time. Each policy's TAT is stored under the policy's name,
which says its window (``per-minute``), so a new limit for the same window is judged against the
same state on the next request: no reset, no orphaned counter. The state is time owed, not a
count: a client that spent a whole ``2/minute`` burst owes 60 s; upgraded to ``4/minute`` it
still owes 60 s, which the new policy repays at 15 s a request (its next request is admitted in
15 s instead of 30 s). Adding a policy with a new window starts that policy fresh; removing one
drops its state.

Everything is integer microseconds, so the Redis script and this module agree to the unit and
no float drift accumulates. Several policies per key are decided all-or-nothing: a request is
admitted only if every policy admits it, and only then does any state change.

The Lua script (``lua/gcra.lua``) repeats the five lines above inside Redis, atomically; it
returns the state, and :func:`describe` turns state into header values for both backends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ..records import Rate

__all__ = ["Policy", "RateDecision", "decide", "describe", "policies_of"]

US = 1_000_000

_PERIOD_NAMES = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}


#: Larger tolerances lose integer precision in Lua's doubles (2^53 µs is 285 years).
MAX_TOLERANCE = 2**51


@dataclass(frozen=True, slots=True)
class Policy:
    """A :class:`Rate` prepared for the math: intervals in microseconds, a name for headers
    and for the stored state."""

    name: str
    limit: int  # q: requests per window (scaled to the window for sub-second periods)
    window: int  # w: window in whole seconds (at least 1)
    interval: int  # T, µs between requests at the sustained rate
    burst: int  # B
    tolerance: int  # B * T
    #: ``"name";r=``, the start of this policy's RateLimit field, as ASGI sends it: built once
    #: per policy, so a request adds only its two numbers.
    head: bytes = field(init=False, repr=False, compare=False)
    #: The header fields of an allowed request, as ASGI and as WSGI send them, by the two
    #: numbers that vary (``r`` and ``t``, few for any one policy): made on first use, then
    #: shared by every request that has the same numbers (see ``headers.py``).
    encoded: dict[int, tuple[tuple[bytes, bytes], ...]] = field(
        init=False, repr=False, compare=False
    )
    plain: dict[int, tuple[tuple[str, str], ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "head", f'"{self.name}";r='.encode())
        object.__setattr__(self, "encoded", {})
        object.__setattr__(self, "plain", {})

    @classmethod
    def of(cls, rate: Rate, name: str | None = None) -> Policy:
        window = max(1, round(rate.period))
        if name is None:
            unit = _PERIOD_NAMES.get(window) if window == rate.period else None
            name = f"per-{unit}" if unit else f"per-{rate.period:g}s"
        limit = rate.limit if window == rate.period else round(rate.limit * window / rate.period)
        interval = max(1, round(rate.period * US / rate.limit))
        burst = rate.burst or rate.limit
        if burst * interval > MAX_TOLERANCE:
            raise ValueError(f"rate {rate} allows a burst lasting centuries: use a shorter period")
        return cls(name, max(1, limit), window, interval, burst, burst * interval)


def policies_of(rates: Iterable[Rate]) -> tuple[Policy, ...]:
    """Policies for a key's rates, named by window and unique (``per-minute``, ``per-minute-2``)."""
    policies: list[Policy] = []
    seen: dict[str, int] = {}
    for rate in rates:
        base = Policy.of(rate)
        n = seen[base.name] = seen.get(base.name, 0) + 1
        policies.append(base if n == 1 else Policy.of(rate, f"{base.name}-{n}"))
    return tuple(policies)


class RateDecision(NamedTuple):
    """The outcome for one request across a key's policies, with what the headers say.

    A named tuple, not a frozen dataclass: one is built per request, and a tuple builds in a
    quarter of the time.
    """

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
    if len(policies) == 1:  # the common case, without the generality's cost
        p = policies[0]
        tat = tats[0]
        if tat is None or tat < now:
            tat = now
        new = tat + cost * p.interval
        return (True, [new]) if new - p.tolerance <= now else (False, [tat])
    current = [now if tat is None or tat < now else tat for tat in tats]
    new_tats = [tat + cost * p.interval for tat, p in zip(current, policies, strict=True)]
    if all(n - p.tolerance <= now for n, p in zip(new_tats, policies, strict=True)):
        return True, new_tats
    return False, current


def _state(p: Policy, tat: int, now: int) -> tuple[int, int, int]:
    """(r, t in whole seconds, µs until ``p`` admits one more request) for a stored TAT."""
    used = tat - now if tat > now else 0  # µs of burst in use
    room = p.tolerance - used
    interval = p.interval
    # r grows by one when `used` next drops to a multiple of T (at most (B - 1) T, after a
    # lowered limit left more owed than the new burst holds).
    wait = used - interval * min(-(-used // interval) - 1, p.burst - 1) if used else 0
    return (room // interval if room > 0 else 0), -(-wait // US), interval - room


def describe(
    policies: tuple[Policy, ...], tats: Sequence[int], now: int, allowed: bool, cost: int = 1
) -> RateDecision:
    """Header values from the TATs after the decision (those :func:`decide` returned)."""
    if len(policies) == 1:
        r, t, short = _state(policies[0], tats[0], now)
        if allowed:
            return RateDecision(True, policies, (r,), (t,), 0)
        short += (cost - 1) * policies[0].interval
        return RateDecision(False, policies, (r,), (t,), -(-short // US) if short > 0 else 0)
    remaining = []
    reset = []
    retry = 0
    for tat, p in zip(tats, policies, strict=True):
        r, t, short = _state(p, tat, now)
        remaining.append(r)
        reset.append(t)
        if not allowed:
            retry = max(retry, short + (cost - 1) * p.interval)
    return RateDecision(
        allowed, policies, tuple(remaining), tuple(reset), -(-retry // US) if retry > 0 else 0
    )

"""The leased Redis limiter: a slice of a key's budget per process, spent without a round trip.

:class:`LeasedLimiter` is a :class:`~keysentry.ratelimit.redis.RedisLimiter` whose processes
lease slices of each key's GCRA budget from Redis (``lua/lease.lua``, one ``EVALSHA``) and
admit requests from the slice in memory:

* **Grants.** A lease asks for up to ``lease`` requests and gets an equal share of what is
  free among the processes leasing that key, at least one request's cost: large when the key
  is far from its limit, one request when it is near, so low limits stay exact.
* **Charged first.** Redis charges the whole slice when it grants it; unspent requests go back
  with the process's next lease of that key. What the processes admit can therefore never
  exceed what GCRA admits over the long run.
* **The bound.** A request admitted at time ``s`` was charged at some time in
  ``[s - lease_time, s]``. So over any window of ``w`` seconds, a key with policy ``N per P``
  (interval ``T = P / N``, burst ``B``) admits at most ``B + ceil((w + lease_time) / T)``
  requests: GCRA's own bound plus ``eps = ceil(lease_time / T)``, whatever the slice size and
  however many processes lease the key.
* **Refusals cost no round trip each.** When a key is over its limit, the script says how long
  until a slice for every process leasing the key will be free (it counts them), and this
  process refuses the key locally until then: a client hammering a limited key costs Redis
  about one round trip per process per that interval, not one per request.

RateLimit header values on a request admitted from a slice are those of the grant, with the
slice's unspent requests counted as remaining: exact on the grant, approximate (never above the
burst) in between.

A process forked after leasing (``gunicorn --preload``) starts with no slices and a holder id of
its own, so parent and child never spend the same tokens.
"""

from __future__ import annotations

import math
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from .._redis import LuaScript
from .gcra import US, Policy, RateDecision, describe
from .redis import RedisLimiter

__all__ = ["LeasedLimiter"]

LEASE = LuaScript(__package__, "lease.lua")


class _Slice:
    """What this process holds of one key's budget."""

    __slots__ = ("base", "expires", "policies", "quiet_until", "reset", "tokens")

    def __init__(self, policies: tuple[Policy, ...]) -> None:
        self.policies = policies
        self.tokens = 0  # charged in Redis, not spent yet
        self.expires = 0.0  # local monotonic time the lease ends
        self.quiet_until = 0.0  # refuse locally until then
        self.base: tuple[int, ...] = ()  # r per policy right after the grant
        self.reset: tuple[int, ...] = ()  # t per policy right after the grant


class LeasedLimiter(RedisLimiter):
    """``LeasedLimiter("redis://127.0.0.1:6379/0", lease=16)``, or ``?lease=16`` in the URL
    of ``keysentry demo --limiter``; share one per process.

    :param lease: the largest slice a process leases at once (requests); 1 leases one request
        at a time (exact, one round trip per admitted request, refusals still cached).
    :param lease_time: seconds a slice may be spent for; the ``eps`` of the bound above is the
        number of requests a key earns in that time.

    The other arguments are :class:`RedisLimiter`'s.
    """

    kind = "LeasedLimiter"

    def __init__(
        self,
        url: str | None = None,
        *,
        lease: int = 16,
        lease_time: float = 1.0,
        client: Any = None,
        aclient: Any = None,
        namespace: str | None = None,
        timeout: float = 0.1,
        failures: int = 3,
        cooldown: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            url,
            client=client,
            aclient=aclient,
            namespace=namespace,
            timeout=timeout,
            failures=failures,
            cooldown=cooldown,
        )
        if not (isinstance(lease, int) and lease >= 1):
            raise ValueError("lease must be a whole number of requests, at least 1")
        if not (math.isfinite(lease_time) and 0.01 <= lease_time <= 60):
            raise ValueError("lease_time must be between 0.01 and 60 seconds")
        self.lease = lease
        self.lease_time = lease_time
        self._clock = clock
        self._slices: dict[str, _Slice] = {}
        self._slices_lock = threading.Lock()
        self._holder = _holder_id()
        #: Round trips to Redis made by this process (grants and refusals alike).
        self.round_trips = 0
        _leasing.add(self)

    def __repr__(self) -> str:
        return (
            super()
            .__repr__()
            .replace("RedisLimiter(", "LeasedLimiter(", 1)
            .replace(", namespace=", f", lease={self.lease}, namespace=", 1)
        )

    # -- the two faces -------------------------------------------------------------------------

    def hit_in_memory(
        self, key: str, policies: tuple[Policy, ...], cost: int = 1
    ) -> RateDecision | None:
        """The decision this process can make without Redis (a request from its slice, a
        refusal while the key is known to be full), or None: then :meth:`hit` / :meth:`ahit`
        ask Redis. The guard's request path calls this first, in line."""
        return self._spend(key, policies, cost)

    def hit(self, key: str, policies: tuple[Policy, ...], cost: int = 1) -> RateDecision:
        local = self._spend(key, policies, cost)
        if local is not None:
            return local
        keys, args = self._request(key, policies, cost)
        with self._guard("lease"):
            reply = LEASE.run(self._client(), keys, args)
        return self._answer(key, policies, cost, reply)

    async def ahit(self, key: str, policies: tuple[Policy, ...], cost: int = 1) -> RateDecision:
        local = self._spend(key, policies, cost)
        if local is not None:
            return local
        keys, args = self._request(key, policies, cost)
        with self._guard("lease"):
            reply = await LEASE.arun(await self._aclient(), keys, args)
        return self._answer(key, policies, cost, reply)

    def reset(self, key: str) -> None:
        with self._slices_lock:
            self._slices.pop(key, None)
        with self._guard("reset"):
            self._client().delete(self.state_key(key), self._holders_key(key))

    # -- in this process ---------------------------------------------------------------------

    def _spend(self, key: str, policies: tuple[Policy, ...], cost: int) -> RateDecision | None:
        """Admit from this process's slice, or refuse while the key is known to be full;
        None when Redis must be asked."""
        now = self._clock()
        with self._slices_lock:
            held = self._slices.get(key)
            if held is None or held.policies != policies:
                return None
            if held.tokens >= cost and now < held.expires:
                held.tokens = tokens = held.tokens - cost
                if len(policies) == 1:  # the common case, without the generator
                    remaining: tuple[int, ...] = (min(policies[0].burst, held.base[0] + tokens),)
                else:
                    remaining = tuple(
                        min(p.burst, r + tokens) for p, r in zip(policies, held.base, strict=True)
                    )
                return tuple.__new__(RateDecision, (True, policies, remaining, held.reset, 0))
            if now < held.quiet_until:
                wait = max(1, math.ceil(held.quiet_until - now))
                zeros = (0,) * len(policies)
                return RateDecision(False, policies, zeros, (wait,) * len(policies), wait)
        return None

    def _request(
        self, key: str, policies: tuple[Policy, ...], cost: int
    ) -> tuple[Sequence[str], list[int | str]]:
        """The script's keys and arguments, giving back what the last slice left unspent."""
        with self._slices_lock:
            held = self._slices.pop(key, None)
            unspent = held.tokens if held is not None and held.policies == policies else 0
            self.round_trips += 1
        args: list[int | str] = [
            cost,
            max(cost, self.lease),
            unspent,
            self._holder,
            max(1, round(self.lease_time * 1000)),
        ]
        for p in policies:
            args += (p.name, p.interval, p.burst)
        return (self.state_key(key), self._holders_key(key)), args

    def _answer(
        self, key: str, policies: tuple[Policy, ...], cost: int, reply: Sequence[Any]
    ) -> RateDecision:
        now_local = self._clock()
        granted, now = reply[0] == 1, int(reply[1])
        if granted:
            amount = int(reply[2])
            tats = [int(t) for t in reply[4:]]
            state = describe(policies, tats, now, True, cost)
            with self._slices_lock:
                held = self._slices.get(key)
                if held is None or held.policies != policies:
                    held = self._slices[key] = _Slice(policies)
                held.tokens += amount - cost
                held.expires = now_local + self.lease_time
                held.quiet_until = 0.0
                held.base, held.reset = state.remaining, state.reset
            remaining = tuple(
                min(p.burst, r + held.tokens)
                for p, r in zip(policies, state.remaining, strict=True)
            )
            return RateDecision(True, policies, remaining, state.reset, 0)
        wait, quiet = int(reply[2]), int(reply[3])
        tats = [int(t) for t in reply[5:]]
        state = describe(policies, tats, now, False, cost)
        with self._slices_lock:
            held = self._slices.get(key)
            if held is None or held.policies != policies:
                held = self._slices[key] = _Slice(policies)
            held.quiet_until = now_local + max(wait, quiet) / US
        retry = max(state.retry_after, math.ceil(max(wait, quiet) / US))
        return RateDecision(False, policies, state.remaining, state.reset, retry)

    def _holders_key(self, key: str) -> str:
        return f"{self.namespace}:rl:{{{key}}}:holders"

    def _after_fork(self) -> None:
        self.round_trips = 0
        self._slices = {}
        self._slices_lock = threading.Lock()
        self._holder = _holder_id()


def _holder_id() -> str:
    return f"{os.getpid()}-{secrets.token_hex(4)}"


#: Limiters whose slices a forked child must not inherit.
_leasing: weakref.WeakSet[LeasedLimiter] = weakref.WeakSet()


def _forget_in_child() -> None:
    for limiter in list(_leasing):
        limiter._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)

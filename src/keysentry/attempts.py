"""Failed-attempt throttling: guessing keys costs the guesser, not the store.

A well-formed key with an unknown id or a wrong secret is a *failed attempt*. Each one is
charged to the client address that made it (the direct peer, or the client that trusted
proxies name), on the guard's limiter (a :class:`~keysentry.ratelimit.redis.RedisLimiter`
shares the count across processes) or, without one, on a private in-process limiter. Past the
configured rate (``"30/minute"`` by default: a burst of 30, then one every 2 s) the client is
answered 429 ``TOO_MANY_FAILED_ATTEMPTS`` with ``Retry-After``:

* for every further failed attempt, and
* *before* any store query it would cause: a cache miss from a blocked client is refused
  without asking the store. That check is a dict lookup in this process (each process learns
  of a block from its own limiter answer), so it costs nothing on the hot path.

A blocked client keeps using keys this process has already verified (they need no store call
and prove possession); only what costs a store query or refuses a key is throttled. IPv6
clients are counted by /64, the block one subscriber usually holds. A request whose client
address is unknown (a Unix socket with no trusted proxy) is not counted.

Malformed keys and bad checksums are not counted: they cost no store call and no digest.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from .errors import Denial, StoreUnavailable
from .ratelimit.base import Limiter
from .ratelimit.gcra import Policy
from .ratelimit.memory import MemoryLimiter

__all__ = ["FailedAttempts", "bucket"]

#: Namespace of the limiter keys: key ids are letters and digits, so these never collide.
_KEY = "!failed:"


def bucket(client: str | None) -> str | None:
    """Whom a failed attempt is charged to: the address, an IPv6 address's /64, or None."""
    if client is None:
        return None
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return None
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def too_many(retry_after: int) -> Denial:
    return Denial.of(
        "TOO_MANY_FAILED_ATTEMPTS",
        f"Too many failed attempts from this client address: retry in {retry_after} s.",
        {"retry_after": retry_after},
        headers=(("Retry-After", str(retry_after)),),
    )


class FailedAttempts:
    """Counts failed attempts per client and remembers, in this process, who is blocked.

    :param policies: failed attempts allowed per client (``Settings.failure_policies``).
    :param limiter: where the count lives; None keeps it in this process.
    :param max_blocked: most blocked clients remembered here (the oldest go first).
    """

    __slots__ = ("_blocked", "_clock", "_lock", "limiter", "local", "max_blocked", "policies")

    def __init__(
        self,
        policies: tuple[Policy, ...],
        limiter: Limiter | None = None,
        *,
        max_blocked: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not policies:
            raise ValueError("failed-attempt throttling needs a rate")
        self.policies = policies
        self.limiter: Limiter = MemoryLimiter() if limiter is None else limiter
        #: The count is kept in this process: :meth:`failed` never waits on I/O.
        self.local: bool = bool(getattr(self.limiter, "local", False))
        self.max_blocked = max_blocked
        self._clock = clock
        self._lock = threading.Lock()
        self._blocked: OrderedDict[str, float] = OrderedDict()  # bucket -> blocked until

    def __repr__(self) -> str:
        return f"FailedAttempts({len(self._blocked)} blocked, on {type(self.limiter).__name__})"

    def blocked(self, client: str | None) -> Denial | None:
        """The 429 for a client blocked right now, else None. No I/O."""
        if not self._blocked:
            return None
        who = bucket(client)
        until = None if who is None else self._blocked.get(who)
        if until is None:
            return None
        left = until - self._clock()
        if left <= 0:
            with self._lock:
                self._blocked.pop(who, None)  # type: ignore[arg-type]
            return None
        return too_many(math.ceil(left))

    def failed(self, client: str | None, refusal: Denial) -> Denial:
        """Charge one failed attempt; ``refusal`` if the client is still within its rate,
        else the 429 (the count failing to answer lets the refusal through as it is)."""
        who = bucket(client)
        if who is None:
            return refusal
        try:
            decision = self.limiter.hit(_KEY + who, self.policies)
        except StoreUnavailable:
            return refusal
        return refusal if decision.allowed else self._block(who, decision.retry_after)

    async def afailed(self, client: str | None, refusal: Denial) -> Denial:
        """The async twin of :meth:`failed`."""
        who = bucket(client)
        if who is None:
            return refusal
        try:
            decision = await self.limiter.ahit(_KEY + who, self.policies)
        except StoreUnavailable:
            return refusal
        return refusal if decision.allowed else self._block(who, decision.retry_after)

    def _block(self, who: str, retry_after: int) -> Denial:
        with self._lock:
            blocked = self._blocked
            blocked[who] = self._clock() + retry_after
            blocked.move_to_end(who)
            while len(blocked) > self.max_blocked:
                blocked.popitem(last=False)
        return too_many(retry_after)

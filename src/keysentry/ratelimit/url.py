"""A limiter from a URL: ``memory://`` or ``redis://...`` (what ``keysentry demo --limiter``
and Django's ``KEYSENTRY["LIMITER"]`` take)."""

from __future__ import annotations

from .._urls import REDIS_SCHEMES, safe_url, take_query_param
from .base import Limiter
from .memory import MemoryLimiter

__all__ = ["limiter_from_url"]


def limiter_from_url(url: str) -> Limiter:
    """``memory://`` or ``redis://...`` (also ``rediss://``, ``unix://``,
    ``redis+cluster://``, ``redis+sentinel://``); ``?lease=N`` (slices of at most N
    requests) and ``?lease_time=S`` make it a :class:`~keysentry.ratelimit.leased.LeasedLimiter`."""
    scheme = url.partition("://")[0].lower()
    if scheme == "memory":
        return MemoryLimiter()
    if scheme in REDIS_SCHEMES:
        url, lease = take_query_param(url, "lease")
        url, lease_time = take_query_param(url, "lease_time")
        if lease is None and lease_time is None:
            from .redis import RedisLimiter

            return RedisLimiter(url)
        from .leased import LeasedLimiter

        try:
            size = 16 if lease is None else int(lease)
            seconds = 1.0 if lease_time is None else float(lease_time)
        except ValueError:
            raise ValueError("?lease= takes a whole number, ?lease_time= seconds") from None
        return LeasedLimiter(url, lease=size, lease_time=seconds)
    raise ValueError(f"unsupported limiter URL {safe_url(url)!r}: use 'memory://' or 'redis://'")

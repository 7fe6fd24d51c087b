"""Per-key rate limiting: GCRA math (``gcra``), backends (``memory``, ``redis``), headers."""

from .base import Limiter
from .gcra import Policy, RateDecision
from .memory import MemoryLimiter

__all__ = ["Limiter", "MemoryLimiter", "Policy", "RateDecision", "RedisLimiter"]


def __getattr__(name: str) -> object:
    # RedisLimiter imports nothing from redis-py until used, but keep the module lazy too.
    if name == "RedisLimiter":
        from .redis import RedisLimiter

        return RedisLimiter
    raise AttributeError(name)

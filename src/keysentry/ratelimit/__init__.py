"""Per-key rate limiting: GCRA math (``gcra``), backends (``memory``, ``redis``, ``leased``),
headers."""

from typing import TYPE_CHECKING

from .base import Limiter
from .gcra import Policy, RateDecision
from .memory import MemoryLimiter

if TYPE_CHECKING:  # loaded on first use, by __getattr__
    from .leased import LeasedLimiter
    from .redis import RedisLimiter

__all__ = ["LeasedLimiter", "Limiter", "MemoryLimiter", "Policy", "RateDecision", "RedisLimiter"]


def __getattr__(name: str) -> object:
    # RedisLimiter imports nothing from redis-py until used, but keep the module lazy too.
    if name == "RedisLimiter":
        from .redis import RedisLimiter

        return RedisLimiter
    if name == "LeasedLimiter":
        from .leased import LeasedLimiter

        return LeasedLimiter
    raise AttributeError(name)

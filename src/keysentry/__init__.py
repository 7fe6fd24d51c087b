"""keysentry: API-key authentication and per-key rate limiting for any ASGI or WSGI app.

from keysentry import ASGIMiddleware, Keysentry, MemoryStore

ks = Keysentry(MemoryStore(), secret=os.environ["KEYSENTRY_SECRET"])
app.add_middleware(ASGIMiddleware, keysentry=ks)
print(ks.issue(name="ci").key.reveal())   # shown once; only its digest is stored

What this module exports is what users construct, receive or catch. The parts that need an
extra (``SQLStore``: ``keysentry[sql]``; ``RedisStore``, ``RedisLimiter``, ``LeasedLimiter``,
``RedisInvalidator``: ``keysentry[redis]``) load on first use, so ``import keysentry`` stays free
of SQLAlchemy and redis-py.
"""

from typing import TYPE_CHECKING, Any

from .asgi import ASGIMiddleware
from .core import Keysentry
from .errors import (
    Conflict,
    Denial,
    DuplicateKey,
    InsufficientCredits,
    InvalidKeyFormat,
    KeyNotFound,
    KeysentryError,
    StoreUnavailable,
)
from .events import DecisionEvent, LogActions, LogDecisions, PortalEvent
from .history import DailyUsage, UsageHistory
from .keys import ImportedFormat, SecretKey
from .lifecycle import IssuedKey
from .ratelimit import Limiter, MemoryLimiter
from .records import KeyIdentity, KeyRecord, Rate
from .responses import default_error_body
from .settings import Settings
from .stores import AsyncKeyStore, KeyChanges, KeyStore, MemoryStore, from_url
from .wsgi import WSGIMiddleware

if TYPE_CHECKING:
    from .invalidation import RedisInvalidator
    from .ratelimit.leased import LeasedLimiter
    from .ratelimit.redis import RedisLimiter
    from .stores.redis import RedisStore
    from .stores.sql import SQLStore

__version__ = "0.1.0"

__all__ = [
    "ASGIMiddleware",
    "AsyncKeyStore",
    "Conflict",
    "DailyUsage",
    "DecisionEvent",
    "Denial",
    "DuplicateKey",
    "ImportedFormat",
    "InsufficientCredits",
    "InvalidKeyFormat",
    "IssuedKey",
    "KeyChanges",
    "KeyIdentity",
    "KeyNotFound",
    "KeyRecord",
    "KeyStore",
    "Keysentry",
    "KeysentryError",
    "LeasedLimiter",
    "Limiter",
    "LogActions",
    "LogDecisions",
    "MemoryLimiter",
    "MemoryStore",
    "PortalEvent",
    "Rate",
    "RedisInvalidator",
    "RedisLimiter",
    "RedisStore",
    "SQLStore",
    "SecretKey",
    "Settings",
    "StoreUnavailable",
    "UsageHistory",
    "WSGIMiddleware",
    "__version__",
    "default_error_body",
    "from_url",
]

_LAZY = {
    "SQLStore": ".stores.sql",
    "RedisStore": ".stores.redis",
    "RedisLimiter": ".ratelimit.redis",
    "LeasedLimiter": ".ratelimit.leased",
    "RedisInvalidator": ".invalidation",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'keysentry' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value

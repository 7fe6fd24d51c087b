"""Key stores: the protocol every backend speaks, and the backends.

``base`` holds the protocols, ``memory`` the in-process store, ``sql`` (SQLite, PostgreSQL) and
``redis`` the remote ones, ``codec`` their shared record encoding, ``url`` the factory that
picks a backend from a URL. The remote stores load on first use, so ``import keysentry`` stays
free of sqlalchemy and redis-py.
"""

from typing import TYPE_CHECKING, Any

from .base import AsyncKeyStore, KeyChanges, KeyStore, apply_changes
from .memory import MemoryStore
from .url import from_url

if TYPE_CHECKING:  # loaded on first use, by __getattr__
    from .redis import RedisStore
    from .sql import SQLStore

__all__ = [
    "AsyncKeyStore",
    "KeyChanges",
    "KeyStore",
    "MemoryStore",
    "RedisStore",
    "SQLStore",
    "apply_changes",
    "from_url",
]


def __getattr__(name: str) -> Any:
    if name == "SQLStore":
        from .sql import SQLStore

        return SQLStore
    if name == "RedisStore":
        from .redis import RedisStore

        return RedisStore
    raise AttributeError(name)

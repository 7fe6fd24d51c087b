"""Key stores: the protocol every backend speaks, and the backends.

``base`` holds the protocols, ``memory`` the in-process store, ``url`` the factory that picks a
backend from a URL. Backends with a client library import it lazily.
"""

from .base import AsyncKeyStore, KeyChanges, KeyStore, apply_changes
from .memory import MemoryStore
from .url import from_url

__all__ = ["AsyncKeyStore", "KeyChanges", "KeyStore", "MemoryStore", "apply_changes", "from_url"]

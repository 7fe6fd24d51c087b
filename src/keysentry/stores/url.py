"""Pick a store from a URL, as the CLI, the demo and configuration files name them."""

from __future__ import annotations

from typing import Any

from .memory import MemoryStore

__all__ = ["from_url"]


def from_url(url: str, **options: Any) -> Any:
    """A store for ``url``: ``memory://`` for now; Redis and SQL backends register here too."""
    scheme = url.partition("://")[0].lower()
    if scheme == "memory":
        return MemoryStore(**options)
    raise ValueError(f"unsupported store URL scheme {scheme!r}: this version supports 'memory://'")

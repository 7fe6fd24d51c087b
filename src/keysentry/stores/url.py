"""Pick a store from a URL, as the CLI, the demo and configuration files name them."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .memory import MemoryStore

__all__ = ["from_url", "safe_url"]


def from_url(url: str, **options: Any) -> Any:
    """A store for ``url``: ``memory://`` for now; Redis and SQL backends register here too."""
    scheme = url.partition("://")[0].lower()
    if scheme == "memory":
        return MemoryStore(**options)
    raise ValueError(f"unsupported store URL scheme {scheme!r}: this version supports 'memory://'")


def safe_url(url: str) -> str:
    """``url`` without its password, for logs, ``repr()`` and the demo's banner."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rpartition("@")[2]
        user = f"{parts.username}:***@" if parts.username else ":***@"
        return parts._replace(netloc=user + netloc).geturl()
    except ValueError:
        return "<unparsable URL>"

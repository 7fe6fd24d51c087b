"""Pick a store from a URL, as the CLI, the demo and configuration files name them."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from .memory import MemoryStore

__all__ = ["from_url", "safe_url"]


#: Schemes of the SQL store (``stores/sql.py``, which imports SQLAlchemy only when used),
#: with or without a ``+driver``; the store refuses drivers it does not speak.
SQL_SCHEMES = frozenset({"sqlite", "postgresql", "postgres"})


def from_url(url: str, **options: Any) -> Any:
    """A store for ``url``; ``options`` go to the store's constructor.

    * ``memory://``: :class:`MemoryStore`, in this process only;
    * ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``: :class:`SQLStore` in
      a SQLite file (an in-memory ``sqlite://`` is refused: ``memory://`` is that store);
    * ``postgresql://user:password@host:5432/db`` (also ``postgres://`` and
      ``postgresql+psycopg://``): :class:`SQLStore` on PostgreSQL;
    * ``redis://[:password@]host:6379/0``, ``rediss://`` (TLS), ``unix:///path/redis.sock``:
      :class:`RedisStore`; ``?namespace=name`` sets the prefix of its Redis keys.

    On PostgreSQL, ``?options=-csearch_path%3Dmyschema`` puts the tables in a schema (libpq's
    own parameter).
    """
    scheme = url.partition("://")[0].lower()
    if scheme == "memory":
        return MemoryStore(**options)
    if scheme in ("redis", "rediss", "unix"):
        from .redis import RedisStore

        url, namespace = _take_param(url, "namespace")
        if namespace is not None:
            options.setdefault("namespace", namespace)
        return RedisStore(url, **options)
    if scheme.partition("+")[0] in SQL_SCHEMES:
        from .sql import SQLStore

        return SQLStore(url, **options)
    raise ValueError(
        f"unsupported store URL scheme {scheme!r}: this version supports 'memory://', "
        "'sqlite:///path/to/keys.db', 'postgresql://user:password@host/db' and "
        "'redis://host:6379/0'"
    )


def _take_param(url: str, name: str) -> tuple[str, str | None]:
    """``url`` without the query parameter ``name``, and its value (None when absent)."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    found = [v for k, v in pairs if k == name]
    if not found:
        return url, None
    rest = urlencode([(k, v) for k, v in pairs if k != name])
    return parts._replace(query=rest).geturl(), found[-1]


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

"""Pick a store from a URL, as the CLI, the demo and configuration files name them.

:func:`safe_url` and :func:`scrub`, which show a URL (or a message that may quote one) without
its secrets, live in ``keysentry._urls`` with the other URL helpers every backend shares; they
are importable from here too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

from .._urls import REDIS_SCHEMES, SQL_SCHEMES, safe_url, scheme_of, scrub
from .memory import MemoryStore

if TYPE_CHECKING:  # imported when a URL names them: redis-py, SQLAlchemy only then
    from .redis import RedisStore
    from .sql import SQLStore

__all__ = ["AnyStore", "from_url", "safe_url", "scrub"]

#: What :func:`from_url` returns: each of these is both a
#: :class:`~keysentry.stores.base.KeyStore` and an :class:`~keysentry.stores.base.AsyncKeyStore`.
AnyStore: TypeAlias = "MemoryStore | RedisStore | SQLStore"


def from_url(url: str, **options: Any) -> AnyStore:
    """A store for ``url``; ``options`` go to the store's constructor.

    * ``memory://``: :class:`MemoryStore`, in this process only;
    * ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``: :class:`SQLStore` in
      a SQLite file (an in-memory ``sqlite://`` is refused: ``memory://`` is that store);
    * ``postgresql://user:password@host:5432/db`` (also ``postgres://`` and
      ``postgresql+psycopg://``): :class:`SQLStore` on PostgreSQL;
    * ``redis://[:password@]host:6379/0``, ``rediss://`` (TLS), ``unix:///path/redis.sock``:
      :class:`RedisStore`; ``?namespace=name`` sets the prefix of its Redis keys (an
      explicit ``namespace=`` option wins);
    * ``redis+cluster://host:port[,host:port...]``, ``redis+sentinel://host:port/service``:
      :class:`RedisStore` on a Redis Cluster (any namespace: every script it runs touches
      one hash slot) or on the master Sentinel names.

    On PostgreSQL, ``?options=-csearch_path%3Dmyschema`` puts the tables in a schema (libpq's
    own parameter).
    """
    scheme = scheme_of(url)
    if scheme == "memory":
        return MemoryStore(**options)
    if scheme in REDIS_SCHEMES:
        from .redis import RedisStore

        return RedisStore(url, **options)  # it reads ?namespace= itself
    if scheme is not None and scheme.partition("+")[0] in SQL_SCHEMES:
        from .sql import SQLStore

        return SQLStore(url, **options)
    # Only a well-formed scheme is named: what precedes "://" (or the whole text, without
    # one) may be a mistyped URL's password.
    what = f"URL scheme {scheme!r}" if scheme is not None else f"URL {safe_url(url)!r}"
    raise ValueError(
        f"unsupported store {what}: this version supports 'memory://', "
        "'sqlite:///path/to/keys.db', 'postgresql://user:password@host/db' and "
        "'redis://host:6379/0'"
    )

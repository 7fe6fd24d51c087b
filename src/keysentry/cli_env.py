"""The guard every ``keysentry`` command builds: its store, secret and invalidator, named by
the command line or the environment.

``keysentry keys`` (``cli.py``, ``cli_keys.py``) and ``keysentry demo`` (``demo.py``) both
build their guard with :func:`guard_from_env`, so a key created by the CLI verifies in the
demo, or in any app that follows the same rule, on the same store. Both import this module;
it imports neither.
"""

from __future__ import annotations

import os
from typing import Any

from ._urls import safe_url, scrub
from .core import Keysentry
from .keys import Digester
from .stores.url import from_url

__all__ = [
    "DEFAULT_STORE",
    "INVALIDATOR_ENV",
    "SECRET_ENV",
    "STORE_ENV",
    "default_store",
    "guard_from_env",
]

#: The embedded default: a SQLite file in the working directory, shared by every command.
DEFAULT_STORE = "sqlite:///keysentry.db"
STORE_ENV = "KEYSENTRY_STORE"
INVALIDATOR_ENV = "KEYSENTRY_INVALIDATOR"
SECRET_ENV = "KEYSENTRY_SECRET"  # noqa: S105 (the variable's name, not a secret)


def default_store() -> str:
    return os.environ.get(STORE_ENV) or DEFAULT_STORE


def guard_from_env(
    store_url: str,
    *,
    store_options: dict[str, Any] | None = None,
    invalidator_url: str | None = None,
    **options: Any,
) -> Keysentry:
    """The guard on ``store_url``'s store, digesting keys with ``$KEYSENTRY_SECRET`` when set.

    Every command builds its guard here: a key verifies only under the digest it was created
    with, so the demo and ``keysentry keys`` must agree on the secret. With a Redis URL for
    pub/sub invalidation (``invalidator_url`` or ``$KEYSENTRY_INVALIDATOR``), the guard
    announces its changes (``keys``) and hears others' (``demo``) at once.
    """
    invalidator_url = invalidator_url or os.environ.get(INVALIDATOR_ENV) or None
    if invalidator_url is not None:
        from .invalidation import RedisInvalidator

        try:
            options["invalidator"] = RedisInvalidator(invalidator_url)
        except ValueError as exc:
            shown = safe_url(invalidator_url)
            raise ValueError(f"invalidator {shown}: {scrub(str(exc), invalidator_url)}") from None
    try:
        store = from_url(store_url, **(store_options or {}))
    except ValueError as exc:
        raise ValueError(f"store {safe_url(store_url)}: {scrub(str(exc), store_url)}") from None
    except ImportError as exc:  # the store's client library is not installed
        raise ImportError(f"store {safe_url(store_url)}: {scrub(str(exc), store_url)}") from None
    secret = os.environ.get(SECRET_ENV) or None
    try:
        Digester(secret)  # the one setting here that comes from the environment: say so
    except ValueError as exc:
        store.close()
        raise ValueError(f"${SECRET_ENV}: {exc}") from None
    try:
        return Keysentry(store, secret=secret, **options)
    except (ValueError, TypeError):
        store.close()
        raise

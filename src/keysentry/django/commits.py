"""Announcing a change once it is committed, not while a transaction still hides it.

Django runs the admin's add, change and delete views in a transaction, and every view with
``ATOMIC_REQUESTS``. A key changed there is written by the store inside that transaction; if
the change were announced at once, another process (or thread) could fetch the row before the
commit, still unchanged, and trust it for ``cache_ttl``. :class:`AfterCommit` wraps the guard's
invalidator (or stands alone when there is none): inside a transaction it forgets the key in
this process and announces it again after the commit (``transaction.on_commit``); outside one,
at once, as before. An account's change (``publish_account``) waits for the commit the same
way.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.db import connections, transaction

from ..accounts import discard_account, owner_hash
from ..cache import TTLCache
from ..decision import Entry
from ..errors import StoreUnavailable
from ..lifecycle import Invalidator

__all__ = ["AfterCommit"]

log = logging.getLogger("keysentry")


class AfterCommit:
    """An invalidator for a guard whose store is the database ``using``."""

    def __init__(self, inner: Invalidator | None, using: str) -> None:
        self.inner = inner
        self.using = using
        self._cache: TTLCache[Entry] | None = None

    def __repr__(self) -> str:
        return f"AfterCommit({self.inner!r})"

    def __getattr__(self, name: str) -> Any:
        # What else the wrapped invalidator offers (silence_limit, ...).
        if self.inner is None:
            raise AttributeError(name)
        return getattr(self.inner, name)

    def start(self, *, cache: TTLCache[Entry]) -> None:
        self._cache = cache
        if self.inner is not None:
            self.inner.start(cache=cache)

    def publish(self, key_id: str, digest: bytes | None = None) -> int:
        if connections[self.using].in_atomic_block:
            transaction.on_commit(partial(self._announce, key_id, digest), using=self.using)
            return 0
        return self.inner.publish(key_id, digest) if self.inner is not None else 0

    async def apublish(self, key_id: str, digest: bytes | None = None) -> int:
        # Django runs no transaction on the async path.
        return await self.inner.apublish(key_id, digest) if self.inner is not None else 0

    def publish_account(self, owner: str) -> int:
        if connections[self.using].in_atomic_block:
            transaction.on_commit(partial(self._announce_account, owner), using=self.using)
            return 0
        publish = getattr(self.inner, "publish_account", None)
        return int(publish(owner)) if publish is not None else 0

    async def apublish_account(self, owner: str) -> int:
        publish = getattr(self.inner, "apublish_account", None)
        return int(await publish(owner)) if publish is not None else 0

    def _announce(self, key_id: str, digest: bytes | None) -> None:
        if self._cache is not None:
            self._cache.discard(key_id.encode())
            if digest is not None:
                self._cache.discard(digest)
        if self.inner is not None:
            try:
                self.inner.publish(key_id, digest)
            except StoreUnavailable:  # the change is committed: the request stands
                log.warning("could not announce a change of key %s; others see it by TTL", key_id)

    def _announce_account(self, owner: str) -> None:
        if self._cache is not None:
            discard_account(self._cache, owner_hash(owner))
        publish = getattr(self.inner, "publish_account", None)
        if publish is not None:
            try:
                publish(owner)
            except StoreUnavailable:  # the change is committed: the request stands
                log.warning("could not announce a change of an account; others see it by TTL")

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()

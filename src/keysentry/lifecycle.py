"""The key lifecycle: minting, importing, reading, changing, revoking, rotating and deleting
keys.

:class:`KeyLifecycle` is the admin half of :class:`~keysentry.Keysentry` (which inherits it):
what a sign-up flow, a dashboard or the CLI calls, each with an ``a*`` twin for async code.
Every change goes through the store's atomic ``update``; then this process forgets its cached
copy and the invalidator (if any) tells the others, so a change takes effect everywhere at once
rather than within ``cache_ttl``.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from . import _fields as check
from .accounts import AccountChanges, AccountRecord, discard_account, owner_hash
from .cache import TTLCache
from .decision import Entry
from .errors import Conflict, InvalidKeyFormat, KeyNotFound, StoreUnavailable
from .keys import ALPHABET, KEY_ID_LENGTH, SecretKey, mint, shown_id
from .pipeline import Outages
from .records import KeyRecord, Network, Rate, utcnow
from .refills import Refill
from .settings import Settings
from .stores.base import (
    AccountStore,
    AsyncAccountStore,
    AsyncDeletingKeyStore,
    AsyncKeyStore,
    DeletingKeyStore,
    KeyChanges,
    KeyStore,
)

__all__ = ["Invalidator", "IssuedKey", "KeyLifecycle", "check_deletable"]

log = logging.getLogger("keysentry")


class Invalidator(Protocol):
    """What the guard needs of a cross-process invalidation channel."""

    def start(self, *, cache: TTLCache[Entry]) -> None: ...

    def publish(self, key_id: str, digest: bytes | None = None) -> int: ...

    async def apublish(self, key_id: str, digest: bytes | None = None) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just created: the full key, to show its owner once, and its stored record."""

    key: SecretKey
    record: KeyRecord


class KeyLifecycle:
    """Creating and changing keys: the half of :class:`~keysentry.Keysentry` that is not on
    the request path. Keysentry sets the attributes below."""

    settings: Settings
    store: KeyStore | AsyncKeyStore
    cache: TTLCache[Entry]
    invalidator: Invalidator | None
    _outages: Outages
    _sync_store: KeyStore | None  # the store, if it has a blocking face
    _async_store: AsyncKeyStore | None  # the store, if it has an async face

    def invalidate(self, record: KeyRecord) -> None:
        """Forget what this process cached about a key, so its next request asks the store."""
        self.cache.discard(record.id.encode())
        self.cache.discard(record.digest)

    def require_sync(self) -> None:
        """Raise now, not on the first cache miss, if the store has no blocking face."""
        self._need_sync()

    def require_async(self) -> None:
        """Raise now, not on the first cache miss, if the store has no async face."""
        self._need_async()

    def _need_sync(self) -> KeyStore:
        if self._sync_store is None:
            raise TypeError(f"{type(self.store).__name__} has no blocking face: use the a* methods")
        return self._sync_store

    def _need_async(self) -> AsyncKeyStore:
        if self._async_store is None:
            raise TypeError(f"{type(self.store).__name__} has no async face: use the sync methods")
        return self._async_store

    def _deleting(self) -> DeletingKeyStore:
        store = self._need_sync()
        if not isinstance(store, DeletingKeyStore):
            raise TypeError(f"{type(self.store).__name__} cannot delete keys: revoke them instead")
        return store

    def _adeleting(self) -> AsyncDeletingKeyStore:
        store = self._need_async()
        if not isinstance(store, AsyncDeletingKeyStore):
            raise TypeError(f"{type(self.store).__name__} cannot delete keys: revoke them instead")
        return store

    def new_key(
        self,
        *,
        name: str = "",
        owner: str | None = None,
        scopes: str | Iterable[str] = (),
        prefix: str | None = None,
        expires_at: datetime | timedelta | None = None,
        rate_limit: str | Rate | Iterable[str | Rate] | None = None,
        allowed_networks: str | Iterable[str | Network] = (),
        credits: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        refill: str | Refill | None = None,
    ) -> IssuedKey:
        """Mint a key and build its record, without storing it (see :meth:`issue`)."""
        fields = check.check_fields(
            {
                "name": name,
                "owner": owner,
                "scopes": scopes,
                "expires_at": expires_at,
                "rate_limit": rate_limit,
                "allowed_networks": allowed_networks,
                "credits": credits,
                "metadata": metadata,
                "refill": refill,
            }
        )
        if fields["refill"] is not None:
            fields["refilled_at"] = utcnow()
        chosen = check.prefix(prefix)
        key_id, key = mint(self.settings.prefix if chosen is None else chosen)
        record = KeyRecord(
            id=key_id,
            digest=self.settings.digest(key.reveal().encode()),
            prefix=key.public,
            digest_mode=self.settings.digest.mode,
            **fields,
        )
        return IssuedKey(key, record)

    def issue(self, **fields: Any) -> IssuedKey:
        """Create a key in the store. The full key is in the result and nowhere else.

        ``name``, ``owner``, ``scopes``, ``prefix``, ``expires_at``, ``rate_limit``,
        ``allowed_networks``, ``credits``, ``metadata``: each checked first, a value of the
        wrong type raising ``TypeError`` and a wrong value ``ValueError``, naming the
        argument. ``scopes`` and ``allowed_networks`` take a list, or one string of words
        separated by commas or whitespace (``"read write"``), as the CLI does; ``expires_at``
        a timezone-aware datetime or a timedelta from now; ``rate_limit`` ``"none"`` for no
        limit, None for the guard's default.
        """
        issued = self.new_key(**_known("issue", fields, check.ISSUABLE))
        self._need_sync().create(issued.record)
        return issued

    async def aissue(self, **fields: Any) -> IssuedKey:
        issued = self.new_key(**_known("aissue", fields, check.ISSUABLE))
        await self._need_async().acreate(issued.record)
        return issued

    def imported_record(self, key: str, *, name: str = "", **fields: Any) -> KeyRecord:
        """The record for a key issued by another system (see ``imported``), not yet stored.
        ``fields`` are those of :meth:`issue` but ``prefix`` (the format gives it)."""
        if not isinstance(key, str):
            raise TypeError(f"key must be the key as a str, not {type(key).__name__}")
        checked = check.check_fields(
            {"name": name, **_known("import_key", fields, check.ISSUABLE - {"prefix", "name"})}
        )
        raw = key.encode()
        if not any(fmt.matches(raw) for fmt in self.settings.imported):
            raise InvalidKeyFormat("the key matches none of the configured imported formats")
        fmt = next(f for f in self.settings.imported if f.matches(raw))
        key_id = "".join(secrets.choice(ALPHABET) for _ in range(KEY_ID_LENGTH))
        return KeyRecord(
            id=key_id,
            digest=self.settings.digest(raw),
            prefix=key[: len(fmt.prefix) + 4],
            digest_mode=self.settings.digest.mode,
            **checked,
        )

    def import_key(self, key: str, *, name: str = "", **fields: Any) -> KeyRecord:
        record = self.imported_record(key, name=name, **fields)
        self._need_sync().create(record)
        return record

    async def aimport_key(self, key: str, *, name: str = "", **fields: Any) -> KeyRecord:
        record = self.imported_record(key, name=name, **fields)
        await self._need_async().acreate(record)
        return record

    # Every lifecycle change goes through update()/aupdate(): the store applies it atomically,
    # this process forgets its cached copy, and the invalidator (if any) tells the others.

    def get(self, key_id: str) -> KeyRecord:
        """The record of a key, revoked or not; :class:`KeyNotFound` when there is none."""
        record = self._need_sync().get(check.key_id(key_id))
        if record is None:
            raise KeyNotFound(f"no key with id {shown_id(key_id)!r}")
        return record

    async def aget(self, key_id: str) -> KeyRecord:
        record = await self._need_async().aget(check.key_id(key_id))
        if record is None:
            raise KeyNotFound(f"no key with id {shown_id(key_id)!r}")
        return record

    def list_keys(
        self, *, owner: str | None = None, after: str | None = None, limit: int = 100
    ) -> Sequence[KeyRecord]:
        """One page of records in id order; pass the last id of a page as ``after`` for the
        next. ``owner`` keeps one owner's keys."""
        return self._need_sync().list_keys(**_page(owner, after, limit))

    async def alist_keys(
        self, *, owner: str | None = None, after: str | None = None, limit: int = 100
    ) -> Sequence[KeyRecord]:
        return await self._need_async().alist_keys(**_page(owner, after, limit))

    def update(self, key_id: str, **changes: Any) -> KeyRecord:
        """Change a key: ``name``, ``owner``, ``scopes``, ``expires_at``, ``disabled``,
        ``rate_limit``, ``allowed_networks``, ``credits``, ``metadata`` (see
        :class:`~keysentry.stores.base.KeyChanges`), checked as :meth:`issue` checks them
        (``expires_at`` as :meth:`set_expiry` takes it): a bad value raises ``TypeError`` or
        ``ValueError`` naming it, and changes nothing. ``credits`` of a rotated key's
        successor set the balance it shares (the first key's of the line)."""
        check.key_id(key_id)
        checked = _changes(changes)
        if "credits" in checked:
            account = self.get(key_id).credits_from
            if account is not None:
                self._apply(account, {"credits": checked.pop("credits")})
        return self._apply(key_id, checked) if checked else self.get(key_id)

    async def aupdate(self, key_id: str, **changes: Any) -> KeyRecord:
        check.key_id(key_id)
        checked = _changes(changes)
        if "credits" in checked:
            account = (await self.aget(key_id)).credits_from
            if account is not None:
                await self._aapply(account, {"credits": checked.pop("credits")})
        return await self._aapply(key_id, checked) if checked else await self.aget(key_id)

    def _apply(self, key_id: str, changes: KeyChanges) -> KeyRecord:
        record = self._need_sync().update(key_id, changes)
        self._changed(record)
        return record

    async def _aapply(self, key_id: str, changes: KeyChanges) -> KeyRecord:
        record = await self._need_async().aupdate(key_id, changes)
        await self._achanged(record)
        return record

    def disable(self, key_id: str) -> KeyRecord:
        """Refuse the key (403 ``API_KEY_DISABLED``) until :meth:`enable`."""
        return self.update(key_id, disabled=True)

    async def adisable(self, key_id: str) -> KeyRecord:
        return await self.aupdate(key_id, disabled=True)

    def enable(self, key_id: str) -> KeyRecord:
        """Accept a disabled key again. A revoked key stays refused for good: enabling it
        raises ``ValueError`` and changes nothing."""
        check.key_id(key_id)
        try:
            record = self._need_sync().update(key_id, {"disabled": False}, _UNREVOKED)
        except Conflict:
            raise _revoked(key_id) from None
        self._changed(record)
        return record

    async def aenable(self, key_id: str) -> KeyRecord:
        check.key_id(key_id)
        try:
            record = await self._need_async().aupdate(key_id, {"disabled": False}, _UNREVOKED)
        except Conflict:
            raise _revoked(key_id) from None
        await self._achanged(record)
        return record

    def revoke(self, key_id: str) -> KeyRecord:
        """Refuse this key from now on, for good (in every process, with an invalidator).
        Revoking a revoked key changes nothing: ``revoked_at`` keeps the first time."""
        check.key_id(key_id)
        try:
            record = self._need_sync().update(key_id, {"revoked_at": utcnow()}, _UNREVOKED)
        except Conflict:
            return self.get(key_id)
        self._changed(record)
        return record

    async def arevoke(self, key_id: str) -> KeyRecord:
        check.key_id(key_id)
        try:
            record = await self._need_async().aupdate(key_id, {"revoked_at": utcnow()}, _UNREVOKED)
        except Conflict:
            return await self.aget(key_id)
        await self._achanged(record)
        return record

    def delete(self, key_id: str) -> KeyRecord:
        """Remove a key from the store for good and return its last record. Its requests
        get 401 ``INVALID_API_KEY`` from now on, in every process: the change is announced
        like any other. (:meth:`revoke` keeps the record, for the audit trail.)

        The first key of a rotation line that holds the line's credits is refused
        (``ValueError``): its successors spend them. So is a key rotated meanwhile.
        """
        store = self._deleting()
        record = check_deletable(self.get(key_id))
        try:
            gone = store.delete(key_id, {"rotated_to": record.rotated_to})
        except Conflict:
            raise ValueError(f"key {shown_id(key_id)} was rotated meanwhile: try again") from None
        self._changed(gone)
        return gone

    async def adelete(self, key_id: str) -> KeyRecord:
        store = self._adeleting()
        record = check_deletable(await self.aget(key_id))
        try:
            gone = await store.adelete(key_id, {"rotated_to": record.rotated_to})
        except Conflict:
            raise ValueError(f"key {shown_id(key_id)} was rotated meanwhile: try again") from None
        await self._achanged(gone)
        return gone

    def set_expiry(self, key_id: str, expires_at: datetime | timedelta | None) -> KeyRecord:
        """Expire the key at a time (timezone-aware), after a duration from now, or never
        (None)."""
        return self.update(key_id, expires_at=expires_at)

    async def aset_expiry(self, key_id: str, expires_at: datetime | timedelta | None) -> KeyRecord:
        return await self.aupdate(key_id, expires_at=expires_at)

    def rotate(self, key_id: str, *, grace: float | timedelta = 0.0) -> IssuedKey:
        """Replace a key by a new one with the same settings, shown once in the result.

        The old key keeps working for ``grace`` (seconds or a timedelta), then is refused as
        expired; with no grace it is revoked at once. Credits are not copied: the successor
        spends the same balance as the old key (``credits_from``), so stale caches, a chain of
        rotations and requests racing the rotation all draw on one account. Nor is the rate
        limit doubled: every key of the line (``line``) is charged to one rate-limit state.

        The successor is created first, then the old key is changed on the condition that it
        is still unrotated and unrevoked (so of two racing rotations one wins, the other's
        successor is revoked and :class:`ValueError` raised). If that change fails without
        saying whether it landed (a timeout), the old key is read again to find out.
        """
        store = self._need_sync()
        seconds = check.grace_seconds(grace)
        issued, changes = self._successor(self.get(key_id), seconds)
        store.create(issued.record)
        try:
            old = store.update(key_id, changes, _UNROTATED)
        except Conflict:
            store.update(issued.record.id, {"revoked_at": utcnow()})
            raise ValueError(f"key {shown_id(key_id)} was rotated or revoked meanwhile") from None
        except StoreUnavailable:
            try:
                reread = store.get(key_id)
            except StoreUnavailable:
                reread = None
            landed = _landed(reread, issued)
            if landed is None:
                self._abandon(issued.record.id)
                raise
            old = landed
        self._changed(old)
        return issued

    async def arotate(self, key_id: str, *, grace: float | timedelta = 0.0) -> IssuedKey:
        store = self._need_async()
        seconds = check.grace_seconds(grace)
        issued, changes = self._successor(await self.aget(key_id), seconds)
        await store.acreate(issued.record)
        try:
            old = await store.aupdate(key_id, changes, _UNROTATED)
        except Conflict:
            await store.aupdate(issued.record.id, {"revoked_at": utcnow()})
            raise ValueError(f"key {shown_id(key_id)} was rotated or revoked meanwhile") from None
        except StoreUnavailable:
            try:
                reread = await store.aget(key_id)
            except StoreUnavailable:
                reread = None
            landed = _landed(reread, issued)
            if landed is None:
                await self._aabandon(issued.record.id)
                raise
            old = landed
        await self._achanged(old)
        return issued

    def _abandon(self, key_id: str) -> None:
        """Revoke a successor whose rotation did not happen; log if even that fails."""
        try:
            self._need_sync().update(key_id, {"revoked_at": utcnow()})
        except StoreUnavailable:
            log.error("rotation failed; its new key %s could not be revoked: revoke it", key_id)

    async def _aabandon(self, key_id: str) -> None:
        try:
            await self._need_async().aupdate(key_id, {"revoked_at": utcnow()})
        except StoreUnavailable:
            log.error("rotation failed; its new key %s could not be revoked: revoke it", key_id)

    def _successor(self, old: KeyRecord, seconds: float) -> tuple[IssuedKey, KeyChanges]:
        if old.revoked_at is not None:
            raise ValueError(f"key {old.id} is revoked: issue a new key instead")
        if old.rotated_to is not None:
            raise ValueError(f"key {old.id} was already rotated, to {old.rotated_to}")
        now = utcnow()
        if old.expires_at is not None and old.expires_at <= now:
            raise ValueError(f"key {old.id} has expired: issue a new key instead")
        native = old.prefix.endswith("_" + old.id)
        issued = self.new_key(
            name=old.name,
            owner=old.owner,
            scopes=old.scopes,
            prefix=old.prefix[: -len(old.id) - 1] if native else None,
            expires_at=old.expires_at,
            rate_limit=old.rate_limit,
            allowed_networks=old.allowed_networks,
            metadata=old.metadata,
        )
        metered = old.credits is not None or old.credits_from is not None
        record = dataclasses.replace(
            issued.record,
            disabled=old.disabled,  # a disabled key's successor is disabled too
            credits_from=(old.credits_from or old.id) if metered else None,
            line=old.line_id,  # one rate-limit state for the whole line
        )
        changes: KeyChanges = {"rotated_to": record.id}
        if seconds == 0:
            changes["revoked_at"] = now
        else:
            until = now + timedelta(seconds=seconds)
            if old.expires_at is None or until < old.expires_at:
                changes["expires_at"] = until
        return IssuedKey(issued.key, record), changes

    # -- accounts ------------------------------------------------------------------------------
    # A key's owner is its account. An account with no record changes nothing; one with a
    # record may be disabled, hold the balance its keys spend and a limit they share. Every
    # change is announced like a key's: each process forgets the account's keys.

    def _need_accounts(self) -> AccountStore:
        store = self._need_sync()
        if not isinstance(store, AccountStore):
            raise TypeError(f"{type(self.store).__name__} keeps no accounts")
        return store

    def _aneed_accounts(self) -> AsyncAccountStore:
        store = self._need_async()
        if not isinstance(store, AsyncAccountStore):
            raise TypeError(f"{type(self.store).__name__} keeps no accounts")
        return store

    def account(self, owner: str) -> AccountRecord | None:
        """The account of ``owner``; None when it has no record (its keys decide alone)."""
        return self._need_accounts().get_account(_owner(owner))

    async def aaccount(self, owner: str) -> AccountRecord | None:
        return await self._aneed_accounts().aget_account(_owner(owner))

    def update_account(self, owner: str, **changes: Any) -> AccountRecord:
        """Change an account, making its record if it has none: ``disabled`` (every key of
        it answers 403 ``ACCOUNT_DISABLED``), ``credits`` (the balance all its keys spend,
        instead of their own; None: theirs again), ``rate_limit`` (limits its keys share, on
        top of their own; ``"none"`` or None: none), ``refill`` (``"1000/month"``,
        ``"+100/day"``, a :class:`~keysentry.refills.Refill`, or None)."""
        owner = _owner(owner)
        account = self._need_accounts().update_account(owner, _account_changes(changes))
        self._account_changed(owner)
        return account

    async def aupdate_account(self, owner: str, **changes: Any) -> AccountRecord:
        owner = _owner(owner)
        checked = _account_changes(changes)
        account = await self._aneed_accounts().aupdate_account(owner, checked)
        await self._aaccount_changed(owner)
        return account

    def disable_account(self, owner: str) -> AccountRecord:
        """Refuse every key of the account (403 ``ACCOUNT_DISABLED``) until
        :meth:`enable_account`."""
        return self.update_account(owner, disabled=True)

    async def adisable_account(self, owner: str) -> AccountRecord:
        return await self.aupdate_account(owner, disabled=True)

    def enable_account(self, owner: str) -> AccountRecord:
        return self.update_account(owner, disabled=False)

    async def aenable_account(self, owner: str) -> AccountRecord:
        return await self.aupdate_account(owner, disabled=False)

    def add_account_credits(self, owner: str, amount: int) -> AccountRecord:
        """Add ``amount`` credits to the account's balance, atomically (concurrent spends
        are not lost); an account without a balance gets one of ``amount``."""
        owner, amount = _owner(owner), _positive(amount)
        if self._need_accounts().spend_account_credits(owner, -amount) is None:
            return self.update_account(owner, credits=amount)
        self._account_changed(owner)
        found = self.account(owner)
        assert found is not None
        return found

    async def aadd_account_credits(self, owner: str, amount: int) -> AccountRecord:
        owner, amount = _owner(owner), _positive(amount)
        if await self._aneed_accounts().aspend_account_credits(owner, -amount) is None:
            return await self.aupdate_account(owner, credits=amount)
        await self._aaccount_changed(owner)
        found = await self.aaccount(owner)
        assert found is not None
        return found

    def _account_changed(self, owner: str) -> None:
        discard_account(self.cache, owner_hash(owner))
        publish = getattr(self.invalidator, "publish_account", None)
        if publish is not None:
            try:
                publish(owner)
            except StoreUnavailable:
                self._outages.warn("invalidator", _UNANNOUNCED)

    async def _aaccount_changed(self, owner: str) -> None:
        discard_account(self.cache, owner_hash(owner))
        publish = getattr(self.invalidator, "apublish_account", None)
        if publish is not None:
            try:
                await publish(owner)
            except StoreUnavailable:
                self._outages.warn("invalidator", _UNANNOUNCED)

    def credits_of(self, record: KeyRecord) -> int | None:
        """The balance a key spends: its own, or the first key's of its rotation line; None
        when unmetered."""
        _record(record)
        if record.credits_from is None:
            return record.credits
        return self.get(record.credits_from).credits

    async def acredits_of(self, record: KeyRecord) -> int | None:
        _record(record)
        if record.credits_from is None:
            return record.credits
        return (await self.aget(record.credits_from)).credits

    def _changed(self, record: KeyRecord) -> None:
        self.invalidate(record)
        if self.invalidator is not None:
            try:
                self.invalidator.publish(record.id, record.digest)
            except StoreUnavailable:
                self._outages.warn(
                    "invalidator", "could not announce a change; others see it by TTL"
                )

    async def _achanged(self, record: KeyRecord) -> None:
        self.invalidate(record)
        if self.invalidator is not None:
            try:
                await self.invalidator.apublish(record.id, record.digest)
            except StoreUnavailable:
                self._outages.warn(
                    "invalidator", "could not announce a change; others see it by TTL"
                )


_UNANNOUNCED = "could not announce a change; others see it by TTL"

#: The condition a rotation changes the old key on: nobody rotated or revoked it meanwhile.
_UNROTATED: Mapping[str, object] = {"rotated_to": None, "revoked_at": None}
_UNREVOKED: Mapping[str, object] = {"revoked_at": None}


def _revoked(key_id: str) -> ValueError:
    return ValueError(
        f"key {shown_id(key_id)} is revoked: it cannot be enabled again; issue a new key instead"
    )


def check_deletable(record: KeyRecord) -> KeyRecord:
    """``record``, unless other keys depend on it (``ValueError``): the first key of a
    metered rotation line holds the balance that its successors spend (their
    ``credits_from``). :meth:`KeyLifecycle.delete` checks it; a caller that asks a person
    first may check it before asking."""
    if record.rotated_to is not None and record.credits_from is None and record.credits is not None:
        raise ValueError(
            f"key {record.id} holds the credits of its rotation line, which its successor "
            f"{record.rotated_to} spends: revoke it instead of deleting it"
        )
    return record


def _landed(old: KeyRecord | None, issued: IssuedKey) -> KeyRecord | None:
    """After a rotation step failed without an answer: the old key's record, read again, if
    the rotation landed after all (it names the new key), else None."""
    return old if old is not None and old.rotated_to == issued.record.id else None


def _page(owner: object, after: object, limit: object) -> dict[str, Any]:
    return {
        "owner": check.optional_text(owner, "owner"),
        "after": check.optional_text(after, "after"),
        "limit": check.page_size(limit),
    }


def _record(record: object) -> None:
    if not isinstance(record, KeyRecord):
        raise TypeError(f"record must be a KeyRecord, not {type(record).__name__}")


def _owner(owner: object) -> str:
    if not isinstance(owner, str):
        raise TypeError(f"owner must be a str, not {type(owner).__name__}")
    if not owner:
        raise ValueError("owner: an account's owner is a non-empty string")
    return owner


def _positive(amount: object) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"amount must be a whole number (int), not {type(amount).__name__}")
    if not 1 <= amount <= check.MAX_CREDITS:
        raise ValueError(f"amount must be from 1 to {check.MAX_CREDITS}, not {amount}")
    return amount


_ACCOUNT_CHECKS = frozenset({"disabled", "credits", "rate_limit", "refill"})


def _account_changes(changes: Mapping[str, Any]) -> AccountChanges:
    unknown = sorted(changes.keys() - _ACCOUNT_CHECKS)
    if unknown:
        raise ValueError(
            f"these account fields cannot be changed: {', '.join(unknown)} (those that can: "
            f"{', '.join(sorted(_ACCOUNT_CHECKS))})"
        )
    checked = check.check_fields(changes)
    if "rate_limit" in checked and checked["rate_limit"] == ():
        checked["rate_limit"] = None
    if "refill" in checked:
        checked["refilled_at"] = utcnow()
    return checked  # type: ignore[return-value]


def _known(method: str, fields: Mapping[str, Any], allowed: frozenset[str]) -> Mapping[str, Any]:
    """``fields``, if ``method`` takes each of them, as a call with its own signature would."""
    unknown = sorted(fields.keys() - allowed)
    if unknown:
        raise TypeError(f"{method}() got an unexpected keyword argument {unknown[0]!r}")
    return fields


_FIXED = frozenset({"rotated_to", "credits_from", "last_used_at", "revoked_at"})


def _changes(changes: Mapping[str, Any]) -> KeyChanges:
    """What a caller may change through :meth:`Keysentry.update`, checked; revocation and
    rotation have methods of their own, usage is recorded by the flusher."""
    fixed = _FIXED & changes.keys()
    if fixed:
        raise ValueError(f"use revoke()/rotate() rather than setting {', '.join(sorted(fixed))}")
    unknown = changes.keys() - check.CHANGEABLE
    if unknown:
        raise ValueError(
            f"these key fields cannot be changed: {', '.join(sorted(unknown))} (those that "
            f"can: {', '.join(sorted(check.CHANGEABLE))})"
        )
    checked = check.check_fields(changes)
    if "refill" in checked:
        # A refill set now first runs when the next period begins.
        checked["refilled_at"] = utcnow()
    return checked  # type: ignore[return-value]

"""Keys from djangorestframework-api-key: imported without reissuing them, and upgraded to
keysentry's digest on their first use.

That library's keys read ``<prefix>.<secret>``: 8 and 32 letters and digits by default. It
stores the prefix (public: it finds the row) and ``sha512$$<hex of SHA-512(key)>`` since
3.0, or a Django password hash (PBKDF2, Argon2...) before. :func:`import_keys` copies its rows
(name, prefix, stored hash, revoked, expiry) into keysentry's table, each with a random digest
that no key matches and an :class:`~keysentry.django.models.ImportedKey` holding the stored
hash. When such a key is first presented and missed by the cache, the middleware calls
:func:`upgrade` before the store lookup: the key is verified against the stored hash (in
constant time for SHA-512; with Django's hasher otherwise, as that library itself verifies
them), and its row gets keysentry's digest, in one transaction; the lookup then finds it like
any imported key. A wrong key changes nothing and is refused as an unknown one.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from django.apps import apps
from django.contrib.auth.hashers import check_password
from django.db import transaction

from ..core import Keysentry
from ..errors import DuplicateKey, StoreUnavailable
from ..keys import ALPHABET, KEY_ID_LENGTH, ImportedFormat
from ..records import KeyRecord, utcnow
from .models import APIKey, ImportedKey
from .store import DjangoStore, columns, db_time

__all__ = ["DEFAULT_MODEL", "SOURCE", "DRFKeyFormat", "Imported", "import_keys", "upgrade"]

#: The model :func:`import_keys` reads unless told another (a subclass of AbstractAPIKey).
DEFAULT_MODEL = "rest_framework_api_key.APIKey"
SOURCE = "djangorestframework-api-key"
_SHA512 = "sha512$$"


@dataclass(frozen=True, slots=True)
class DRFKeyFormat(ImportedFormat):
    """``<prefix>.<secret>`` of letters and digits, ``prefix_length`` and ``length``
    long (djangorestframework-api-key's ``KeyGenerator``: 8 and 32). ``prefix`` only names
    the format: these keys start with a public part of their own."""

    prefix: str = SOURCE
    length: int | None = 32
    alphabet: str = ALPHABET
    prefix_length: int = 8

    def matches(self, token: bytes) -> bool:
        n = self.prefix_length
        return (
            len(token) == n + 1 + (self.length or 0)
            and token[n] == 46  # b"."
            and token[:n].isalnum()
            and token[n + 1 :].isalnum()
        )

    def public(self, key: str) -> str:
        return key[: self.prefix_length + 1]


def verify(key: str, hashed_key: str) -> bool:
    """Whether ``key`` is the key djangorestframework-api-key stored as ``hashed_key``."""
    if hashed_key.startswith(_SHA512):
        presented = hashlib.sha512(key.encode()).hexdigest().encode()
        return hmac.compare_digest(presented, hashed_key[len(_SHA512) :].encode())
    if not hashed_key:
        return False
    return check_password(key, hashed_key)


def upgrade(ks: Keysentry, store: DjangoStore, fmt: DRFKeyFormat, token: bytes) -> bool:
    """Give an imported key keysentry's digest, if ``token`` is that key; whether it did.

    Called on a cache miss, before the lookup by digest. Costs one indexed query for a token
    of the format whose prefix was never imported (or was upgraded already)."""
    if not fmt.matches(token):
        return False
    try:
        claimed = _claim(ks, store, fmt, token)
    except DuplicateKey:  # the same key imported twice, from two sources: one is upgraded
        return False
    return claimed


def _claim(ks: Keysentry, store: DjangoStore, fmt: DRFKeyFormat, token: bytes) -> bool:
    lookup = token[: fmt.prefix_length].decode()
    rows = ImportedKey.objects.using(store.using)
    with store.errors():
        found = rows.filter(lookup=lookup).exclude(hashed_key="").values("key_id", "hashed_key")
        row = found.first()
        if row is None or not verify(token.decode(), row["hashed_key"]):
            return False
        digest = ks.digest(token)
        with transaction.atomic(using=store.using):
            claimed = rows.filter(key_id=row["key_id"], hashed_key=row["hashed_key"]).update(
                hashed_key="", upgraded_at=db_time(utcnow())
            )
            if claimed:
                APIKey.objects.using(store.using).filter(pk=row["key_id"]).update(
                    digest=digest.hex(), digest_mode=ks.digest.mode
                )
    if claimed:
        _announce(ks, row["key_id"], digest)
    return bool(claimed)


def _announce(ks: Keysentry, key_id: str, digest: bytes) -> None:
    """Drop what any process cached about the key's new digest (an unknown one, say)."""
    ks.cache.discard(digest)
    if ks.invalidator is not None:
        # Failing that, other processes learn it within their cache TTL.
        with contextlib.suppress(StoreUnavailable):
            ks.invalidator.publish(key_id, digest)


@dataclass(frozen=True, slots=True)
class Imported:
    """What one import did: rows imported, and rows skipped (imported before)."""

    imported: list[KeyRecord]
    skipped: list[str]


def import_keys(store: DjangoStore, model: str = DEFAULT_MODEL) -> Imported:
    """Copy every row of djangorestframework-api-key's ``model`` (``app_label.Model``) that
    was not imported before; returns what was imported and the prefixes skipped."""
    source = apps.get_model(model)
    done = set(ImportedKey.objects.using(store.using).values_list("lookup", flat=True))
    imported: list[KeyRecord] = []
    skipped: list[str] = []
    now = utcnow()
    rows: list[Any] = list(
        source.objects.using(store.using)
        .order_by("created")
        .values("prefix", "hashed_key", "name", "created", "revoked", "expiry_date")
    )
    for row in rows:
        if row["prefix"] in done:
            skipped.append(row["prefix"])
            continue
        record = KeyRecord(
            id="".join(secrets.choice(ALPHABET) for _ in range(KEY_ID_LENGTH)),
            # Random: no key matches it until the key is upgraded on first use.
            digest=os.urandom(32),
            prefix=f"{row['prefix']}.",
            name=row["name"] or "",
            created_at=_aware(row["created"]) or now,
            expires_at=_aware(row["expiry_date"]),
            revoked_at=now if row["revoked"] else None,
        )
        with transaction.atomic(using=store.using):
            APIKey.objects.using(store.using).create(**columns(record))
            ImportedKey.objects.using(store.using).create(
                key_id=record.id, source=model, lookup=row["prefix"], hashed_key=row["hashed_key"]
            )
        imported.append(record)
    return Imported(imported, skipped)


def _aware(value: datetime | None) -> datetime | None:
    """A time the database gave: naive UTC without ``USE_TZ``."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)

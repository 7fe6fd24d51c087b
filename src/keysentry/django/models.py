"""The key records and accounts in the project's own database, and the digests imported from
djangorestframework-api-key that wait for their key's first use.

:class:`APIKey` holds one :class:`~keysentry.KeyRecord` per row, a column per field, in the
encoding every keysentry store shares (``keysentry.stores.codec``): the digest as hex, rate
limits as ``limit/period[/burst]`` strings, times in UTC. Rows are written by
:class:`~keysentry.django.store.DjangoStore` (through the guard's lifecycle methods, the
admin and ``manage.py keysentry``), never by saving a model instance: each change is
atomic, and every process is told of it. :class:`Account` holds the accounts the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from django.db import models


class APIKey(models.Model):
    """An API key: never the key itself, only its digest."""

    objects: ClassVar[models.Manager[APIKey]] = models.Manager()

    id: models.CharField[str, str] = models.CharField(
        primary_key=True, max_length=64, editable=False
    )
    digest: models.CharField[str, str] = models.CharField(
        max_length=64, unique=True, editable=False
    )
    prefix: models.CharField[str, str] = models.CharField(max_length=128, editable=False)
    name: models.CharField[str, str] = models.CharField(max_length=255, blank=True, default="")
    owner: models.CharField[str | None, str | None] = models.CharField(
        max_length=255, null=True, blank=True, db_index=True
    )
    scopes: models.JSONField[Any, Any] = models.JSONField(default=list, blank=True)
    created_at: models.DateTimeField[datetime, datetime] = models.DateTimeField()
    expires_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True, blank=True
    )
    last_used_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True, blank=True
    )
    disabled: models.BooleanField[bool, bool] = models.BooleanField(default=False)
    revoked_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True, blank=True
    )
    #: None: the app's default limit; []: no limit.
    rate_limit: models.JSONField[Any, Any] = models.JSONField(null=True, blank=True)
    allowed_networks: models.JSONField[Any, Any] = models.JSONField(default=list, blank=True)
    credits: models.BigIntegerField[int | None, int | None] = models.BigIntegerField(
        null=True, blank=True
    )
    metadata: models.JSONField[Any, Any] = models.JSONField(default=dict, blank=True)
    request_count: models.BigIntegerField[int, int] = models.BigIntegerField(default=0)
    rotated_to: models.CharField[str | None, str | None] = models.CharField(
        max_length=64, null=True, blank=True
    )
    credits_from: models.CharField[str | None, str | None] = models.CharField(
        max_length=64, null=True, blank=True
    )
    line: models.CharField[str | None, str | None] = models.CharField(
        max_length=64, null=True, blank=True
    )
    digest_mode: models.CharField[str | None, str | None] = models.CharField(
        max_length=16, null=True, blank=True
    )
    #: ``1000/month`` (the balance set to 1000 each month) or ``+100/day`` (100 added).
    refill: models.CharField[str | None, str | None] = models.CharField(
        max_length=64, null=True, blank=True
    )
    refilled_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True, blank=True
    )

    class Meta:
        ordering = ("id",)
        verbose_name = "API key"
        verbose_name_plural = "API keys"

    def __str__(self) -> str:
        return f"{self.name or 'API key'} ({self.prefix}...)"


class Account(models.Model):
    """An account: what the keys of one ``owner`` share (one
    :class:`~keysentry.accounts.AccountRecord` per row, written by the store like keys)."""

    objects: ClassVar[models.Manager[Account]] = models.Manager()

    owner: models.CharField[str, str] = models.CharField(primary_key=True, max_length=255)
    disabled: models.BooleanField[bool, bool] = models.BooleanField(default=False)
    #: The balance all the account's keys spend; None: each key's own credits decide.
    credits: models.BigIntegerField[int | None, int | None] = models.BigIntegerField(
        null=True, blank=True
    )
    #: Limits the account's keys share (``limit/period[/burst]`` strings); None: none.
    rate_limit: models.JSONField[Any, Any] = models.JSONField(null=True, blank=True)
    refill: models.CharField[str | None, str | None] = models.CharField(
        max_length=64, null=True, blank=True
    )
    refilled_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True, blank=True
    )

    class Meta:
        ordering = ("owner",)

    def __str__(self) -> str:
        return self.owner


class ImportedKey(models.Model):
    """A key imported from djangorestframework-api-key (``manage.py keysentry import-drf``).

    That library stores ``sha512$$<hex>`` (3.x) or a Django password hash (older releases)
    and finds a key by its public prefix (the part before the dot), ``lookup`` here. Until the
    key is presented, its :class:`APIKey` row holds a random digest that no key matches; on
    its first successful use it is verified against ``hashed_key``, its row gets keysentry's
    digest, and ``hashed_key`` is emptied (``upgraded_at`` says when). The row stays, so that
    importing again skips the key.
    """

    objects: ClassVar[models.Manager[ImportedKey]] = models.Manager()

    key: models.OneToOneField[APIKey, APIKey] = models.OneToOneField(
        APIKey, on_delete=models.CASCADE, primary_key=True, related_name="imported"
    )
    source: models.CharField[str, str] = models.CharField(max_length=255)
    lookup: models.CharField[str, str] = models.CharField(max_length=64, unique=True)
    hashed_key: models.CharField[str, str] = models.CharField(
        max_length=255, blank=True, default=""
    )
    upgraded_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True, blank=True
    )

    class Meta:
        verbose_name = "imported key"

    def __str__(self) -> str:
        return f"{self.lookup}. ({self.source})"

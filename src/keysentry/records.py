"""Key records and the values that travel with them.

Records are frozen: the cache hands the same object to every request, so nothing may change it
behind the cache's back. A change is a new record written through the store
(:func:`dataclasses.replace` makes one).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from .refills import Refill

__all__ = ["DIGEST_MODES", "KeyIdentity", "KeyRecord", "Network", "Rate", "utcnow"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_PERIODS = {
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}  # fmt: skip


#: How a record's digest was made: HMAC-SHA256 under a server secret, or plain SHA-256.
DIGEST_MODES = ("hmac-sha256", "sha256")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` requests per ``period`` seconds, in bursts of up to ``burst`` (default: limit)."""

    limit: int
    period: float
    burst: int | None = None

    def __post_init__(self) -> None:
        if self.limit < 1 or not math.isfinite(self.period) or self.period <= 0:
            raise ValueError("a rate needs a limit of at least 1 and a positive period")
        if self.burst is not None and self.burst < 1:
            raise ValueError("a rate's burst must be at least 1")

    @classmethod
    def parse_many(cls, spec: str | Rate | Iterable[str | Rate]) -> tuple[Rate, ...]:
        """Read one rate or several: ``"10/second, 1000/day"``, a Rate, or a list of either."""
        if isinstance(spec, Rate):
            return (spec,)
        if isinstance(spec, str):
            spec = [part for part in spec.split(",") if part.strip()]
        return tuple(r if isinstance(r, Rate) else cls.parse(r) for r in spec)

    @classmethod
    def parse(cls, text: str) -> Rate:
        """Read ``60/minute``, ``10/s``, ``1000/day`` or ``100/15m``."""
        count, sep, unit = text.strip().partition("/")
        unit = unit.strip().lower()
        multiple = unit.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = unit[len(multiple) :]
        if not sep or not count.strip().isdigit() or unit not in _PERIODS:
            raise ValueError(f"not a rate: {text!r} (expected e.g. '60/minute' or '10/s')")
        factor = int(multiple) if multiple.isdigit() else 1 if not multiple else 0
        if factor < 1:
            raise ValueError(f"not a rate: {text!r} (expected e.g. '60/minute' or '10/s')")
        return cls(int(count), float(_PERIODS[unit] * factor))

    def __str__(self) -> str:
        unit = {1.0: "second", 60.0: "minute", 3600.0: "hour", 86400.0: "day"}.get(self.period)
        text = f"{self.limit}/{unit or f'{self.period:g}s'}"
        return text if self.burst is None else f"{text} (burst {self.burst})"


def _networks(values: Iterable[str | Network]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """Everything the store holds about one key. Never the key itself: only its digest."""

    id: str
    digest: bytes = field(repr=False)
    prefix: str
    name: str = ""
    owner: str | None = None
    scopes: frozenset[str] = frozenset()
    created_at: datetime = field(default_factory=utcnow)
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    disabled: bool = False
    revoked_at: datetime | None = None
    #: The key's rate-limit policies, all enforced; None = the configured default, () = none.
    rate_limit: tuple[Rate, ...] | None = None
    allowed_networks: tuple[Network, ...] = ()
    credits: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)
    #: Requests this key has made, as recorded in batches (see ``keysentry.usage``).
    request_count: int = 0
    #: Set when the key was rotated: the id of its successor.
    rotated_to: str | None = None
    #: The key whose credits this one spends (a rotated key's successors share the first
    #: key's balance: rotation moves no money); None: its own ``credits``.
    credits_from: str | None = None
    #: The id of the first key of this key's rotation line; None for a first key (one never
    #: made by a rotation). Every key of a line is charged to one rate-limit state (see
    #: :attr:`line_id`). Fixed at creation.
    line: str | None = None
    #: How :attr:`digest` was made: ``"hmac-sha256"`` (with a server secret) or ``"sha256"``
    #: (without one); None when unknown (a record stored before records carried it). Never
    #: the secret. A key verifies only under the mode, and the secret, it was digested with.
    #: Fixed at creation.
    digest_mode: str | None = None
    #: Tops ``credits`` up each day, week or month (see :mod:`keysentry.accounts`).
    refill: Refill | None = None
    #: When ``refill`` last ran (or was set).
    refilled_at: datetime | None = None

    def __post_init__(self) -> None:
        # Accept friendly inputs (lists, CIDR strings, dicts) but keep the record immutable.
        scopes: Iterable[str] = self.scopes
        if not isinstance(scopes, frozenset):
            object.__setattr__(self, "scopes", frozenset(scopes))
        limits: str | Rate | Iterable[str | Rate] | None = self.rate_limit
        if limits is not None and not (
            isinstance(limits, tuple) and all(isinstance(r, Rate) for r in limits)
        ):
            object.__setattr__(self, "rate_limit", Rate.parse_many(limits))
        networks: Iterable[str | Network] = self.allowed_networks
        if not isinstance(networks, tuple) or not all(
            isinstance(n, ipaddress.IPv4Network | ipaddress.IPv6Network) for n in networks
        ):
            object.__setattr__(self, "allowed_networks", _networks(networks))
        if not isinstance(self.metadata, MappingProxyType):
            object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))
        for name in ("created_at", "expires_at", "last_used_at", "revoked_at", "refilled_at"):
            value = getattr(self, name)
            if value is not None:
                if value.tzinfo is None:
                    raise ValueError(f"{name} must be timezone-aware (UTC)")
                if value.utcoffset():
                    object.__setattr__(self, name, value.astimezone(timezone.utc))
        if self.digest_mode is not None and self.digest_mode not in DIGEST_MODES:
            raise ValueError(f"a digest mode is one of {', '.join(DIGEST_MODES)}, or None")
        if len(self.digest) != 32:
            raise ValueError("a key record's digest is 32 bytes (SHA-256)")
        if self.credits is not None and self.credits < 0:
            raise ValueError("credits cannot be negative")
        if self.request_count < 0:
            raise ValueError("request_count cannot be negative")

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def line_id(self) -> str:
        """The id that names this key's rotation line: its first key's (its own for a first
        key). The successors written before records carried ``line`` (SQL schema version 2)
        name only the key whose credits they spend, a key of the same line: that is the
        best known of their line."""
        return self.line or self.credits_from or self.id

    def identity(
        self, implied: frozenset[str] = frozenset(), all_scopes: bool = False
    ) -> KeyIdentity:
        """What the application sees of this key; ``implied`` and ``all_scopes`` are what
        the guard's scope implications grant it beyond its own scopes."""
        return KeyIdentity(
            id=self.id,
            name=self.name,
            prefix=self.prefix,
            owner=self.owner,
            scopes=self.scopes,
            metadata=self.metadata,
            implied=implied,
            all_scopes=all_scopes,
        )


@dataclass(frozen=True, slots=True)
class KeyIdentity:
    """What the application sees of the key that authenticated a request.

    ASGI: ``scope["state"]["api_key"]`` (``request.state.api_key`` in Starlette and FastAPI);
    WSGI: ``environ["keysentry.api_key"]``.

    ``scopes`` are the key's own, as stored. What the key may do is what the guard's
    ``scope_implications`` make of them: ``effective_scopes`` (its scopes and every scope they
    imply), or every scope when ``all_scopes`` (by default, for a key with ``admin``). Ask
    :meth:`has_scope` / :meth:`has_scopes`, which answer as the route helpers do.
    """

    id: str
    name: str
    prefix: str
    owner: str | None
    scopes: frozenset[str]
    metadata: Mapping[str, Any] = field(hash=False)
    #: Scopes granted by the guard's implications, beyond ``scopes``.
    implied: frozenset[str] = field(default=frozenset(), repr=False)
    #: The key's scopes imply every scope (``"*"``).
    all_scopes: bool = False
    #: ``scopes`` and ``implied``: every scope the key holds by name.
    effective_scopes: frozenset[str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        effective = self.scopes | self.implied if self.implied else self.scopes
        object.__setattr__(self, "effective_scopes", effective)

    def has_scope(self, scope: str) -> bool:
        """Whether the key holds ``scope``, itself or through an implication."""
        return self.all_scopes or scope in self.effective_scopes

    def has_scopes(self, required: Iterable[str]) -> bool:
        """Whether the key holds every one of ``required`` (what a route's scopes ask)."""
        return self.all_scopes or self.effective_scopes.issuperset(required)

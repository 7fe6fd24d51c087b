"""What an account may set on its own keys, read from JSON or a form and checked.

An owner sets a key's ``name``, ``scopes`` (only those the portal lets it grant, see
:class:`Grants`), ``expires_at``, ``allowed_networks`` and ``rate_limit`` (one of the portal's
choices, or the guard's default). The owner, credits and metadata are the host's: a request
that names them is refused. Values go through the lifecycle's own checks (``_fields``), so a
bad one is refused here with the message ``issue()`` would give, before anything is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .. import _fields as check
from ..errors import Denial
from ..records import Rate, utcnow
from .steps import Refusal

__all__ = ["MAX_NAME", "Grants", "changes", "invalid", "not_grantable"]

MAX_NAME = 100

#: What an owner may set (``issue``/``update`` keywords).
SETTABLE = ("name", "scopes", "expires_at", "allowed_networks", "rate_limit")
#: What the host keeps to itself.
_HOSTS = frozenset({"owner", "credits", "metadata", "prefix", "disabled"})


def invalid(message: str, field: str | None = None) -> Refusal:
    details = {"field": field} if field else None
    return Refusal(Denial.of("INVALID_REQUEST", message, details))


def not_grantable(message: str, details: Mapping[str, Any] | None = None) -> Refusal:
    return Refusal(Denial.of("NOT_GRANTABLE", message, details))


@dataclass(frozen=True, slots=True)
class Grants:
    """What one caller may set: the scopes it may grant, the rate limits it may choose."""

    scopes: frozenset[str]
    #: Label (as configured, e.g. ``"60/minute"``) -> the policies it stands for.
    rate_limits: Mapping[str, tuple[Rate, ...]]


def _name(value: object) -> str:
    if not isinstance(value, str):
        raise invalid("name must be a string", "name")
    name = value.strip()
    if not name:
        raise invalid("name must not be empty", "name")
    if len(name) > MAX_NAME or not name.isprintable():
        raise invalid(f"name must be at most {MAX_NAME} printable characters", "name")
    return name


def _expiry(value: object) -> datetime | None:
    """None (never), an ISO 8601 time with its offset, or ``{"days": N}``-like durations given
    by forms as a number of days."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= 3650:
            raise invalid("expires_in_days must be from 1 to 3650", "expires_at")
        return utcnow() + timedelta(days=value)
    if not isinstance(value, str):
        raise invalid("expires_at must be an ISO 8601 time or null", "expires_at")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(
            "expires_at must be an ISO 8601 time with its offset, e.g. 2030-01-01T00:00:00Z",
            "expires_at",
        ) from None
    if when.tzinfo is None:
        raise invalid("expires_at needs a time zone offset, e.g. Z or +02:00", "expires_at")
    if when <= utcnow():
        raise invalid("expires_at must be in the future", "expires_at")
    return when


def _rate(value: object, grants: Grants) -> tuple[Rate, ...] | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid("rate_limit must be one of the offered rate limits, or null", "rate_limit")
    policies = grants.rate_limits.get(value.strip())
    if policies is None:
        raise not_grantable(
            f"rate_limit {value[:40]!r} is not offered here",
            {"field": "rate_limit", "offered": list(grants.rate_limits)},
        )
    return policies


def changes(
    values: Mapping[str, object],
    grants: Grants,
    *,
    creating: bool,
    held: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The lifecycle keywords for ``values`` (names of :data:`SETTABLE`), checked.

    ``held``: the scopes the key already has, which an update may keep even when the caller
    could not grant them (dropping scopes is always allowed).
    """
    hosts = sorted(_HOSTS & values.keys())
    if hosts:
        raise not_grantable(
            f"{', '.join(hosts)} cannot be set here", {"field": hosts[0], "fields": hosts}
        )
    unknown = sorted(values.keys() - set(SETTABLE))
    if unknown:
        raise invalid(
            f"unknown field {unknown[0]!r} (a key's settable fields: {', '.join(SETTABLE)})",
            unknown[0],
        )
    if creating and "name" not in values:
        raise invalid("name is required", "name")
    out: dict[str, Any] = {}
    for field, value in values.items():
        if field == "name":
            out["name"] = _name(value)
        elif field == "expires_at":
            out["expires_at"] = _expiry(value)
        elif field == "rate_limit":
            out["rate_limit"] = _rate(value, grants)
        else:
            out[field] = _checked(field, value)
    scopes: frozenset[str] | None = out.get("scopes")
    if scopes is not None:
        refused = sorted(scopes - grants.scopes - held)
        if refused:
            raise not_grantable(
                f"scopes not grantable here: {' '.join(refused)}",
                {"field": "scopes", "refused": refused, "grantable": sorted(grants.scopes)},
            )
    return out


def _checked(field: str, value: object) -> Any:
    if value is None:
        value = ()  # no scopes, no networks
    try:
        return check.check_fields({field: value})[field]
    except (TypeError, ValueError) as exc:
        raise invalid(str(exc), field) from None

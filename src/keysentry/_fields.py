"""The lifecycle's arguments, checked by type and value before anything is minted or stored.

Each check returns the value as a record holds it, or raises ``TypeError`` (a value of the
wrong kind) or ``ValueError`` (the right kind, a wrong value) whose message starts with the
argument's name. A string where a list is expected (``scopes``, ``allowed_networks``) is read
as the CLI reads its options: words separated by commas or whitespace, so
``scopes="read write"`` is two scopes, never the letters of one.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from ._scopes import check_scope
from .keys import validate_prefix
from .records import Network, Rate, utcnow
from .refills import MAX_CREDITS, Refill

__all__ = [
    "CHANGEABLE",
    "ISSUABLE",
    "MAX_CREDITS",
    "check_fields",
    "credits",
    "expiry",
    "grace_seconds",
    "key_id",
    "optional_text",
    "page_size",
    "prefix",
    "refill",
]

#: Longest duration taken (an expiry, a grace period): beyond it is a typo, not a plan.
_MAX_DURATION = timedelta(days=36525)

_SEPARATORS = re.compile(r"[,\s]+")


def _kind(value: object) -> str:
    return type(value).__name__


def _words(name: str, text: str, example: str) -> list[str]:
    words = [word for word in _SEPARATORS.split(text) if word]
    if not words:
        raise ValueError(f"{name}: {text!r} holds no {example}")
    return words


def _items(name: str, value: object, what: str) -> Iterable[object]:
    """A list-like argument's items: a string split into words, any other iterable as is."""
    if isinstance(value, str):
        return _words(name, value, what)
    if isinstance(value, bytes | bytearray | Mapping) or not isinstance(value, Iterable):
        raise TypeError(
            f"{name} must be a list of {what}s or a string of them separated by commas or "
            f"spaces, not {_kind(value)}"
        )
    return value


def key_id(value: object, name: str = "key_id") -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a key id (str), not {_kind(value)}")
    return value


def text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {_kind(value)}")
    return value


def optional_text(value: object, name: str) -> str | None:
    return None if value is None else text(value, name)


def flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {_kind(value)}")
    return value


def scopes(value: object) -> frozenset[str]:
    """A list of scopes, or one string of them (``"read write"``, ``"read,write"``)."""
    found: set[str] = set()
    for scope in _items("scopes", value, "scope"):
        if not isinstance(scope, str):
            raise TypeError(f"scopes must hold strings, not {_kind(scope)}")
        try:
            found.add(check_scope(scope))
        except ValueError as exc:
            raise ValueError(f"scopes: {exc}") from None
    return frozenset(found)


def networks(value: object) -> tuple[Network, ...]:
    """Networks or addresses (``"10.0.0.0/8"``), as a list or one string of them."""
    found: list[Network] = []
    for item in _items("allowed_networks", value, "network"):
        if not isinstance(item, str | ipaddress.IPv4Network | ipaddress.IPv6Network):
            raise TypeError(
                f"allowed_networks must hold strings or ip_network values, not {_kind(item)}"
            )
        try:
            found.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(
                f"allowed_networks: {item!r} is not an IP network: e.g. 10.0.0.0/8, "
                "2001:db8::/32, 203.0.113.7"
            ) from None
    return tuple(found)


def rates(value: object) -> tuple[Rate, ...] | None:
    """None (the guard's default), ``"none"`` or ``()`` (no limit), a rate or several
    (``"10/second, 1000/day"``, a :class:`~keysentry.Rate`, a list of either)."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() == "none":
        return ()
    spec: str | Rate | list[str | Rate]
    if isinstance(value, str):
        _words("rate_limit", value, "rate: e.g. '60/minute', or 'none' for no limit")
        spec = value
    elif isinstance(value, Rate):
        spec = value
    else:
        spec = []
        for item in _items("rate_limit", value, "rate"):
            if not isinstance(item, str | Rate):
                raise TypeError(f"rate_limit must hold strings or Rate values, not {_kind(item)}")
            spec.append(item)
    try:
        return Rate.parse_many(spec)
    except ValueError as exc:
        raise ValueError(f"rate_limit: {exc}") from None


def _duration(value: timedelta, name: str, *, zero: bool) -> timedelta:
    if value < timedelta(0) or (value == timedelta(0) and not zero):
        raise ValueError(f"{name}: the duration must be {'zero or ' if zero else ''}positive")
    if value > _MAX_DURATION:
        raise ValueError(f"{name}: the duration must be at most 100 years")
    return value


def expiry(value: object, name: str = "expires_at") -> datetime | None:
    """A timezone-aware datetime, a positive timedelta from now, or None for never."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return utcnow() + _duration(value, name, zero=False)
    if not isinstance(value, datetime):
        raise TypeError(
            f"{name} must be a datetime, a timedelta from now or None, not {_kind(value)}"
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware: e.g. datetime.now(timezone.utc)")
    return value


def grace_seconds(value: object) -> float:
    """A rotation's grace period: seconds (a number) or a timedelta, zero or more."""
    if isinstance(value, timedelta):
        return _duration(value, "grace", zero=True).total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"grace must be seconds (a number) or a timedelta, not {_kind(value)}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"grace: the grace period must be zero or more seconds, not {value}")
    if value > _MAX_DURATION.total_seconds():
        raise ValueError("grace: the duration must be at most 100 years")
    return float(value)


def credits(value: object) -> int | None:
    """A whole number from 0 to :data:`MAX_CREDITS`, or None for unmetered."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"credits must be a whole number (int) or None, not {_kind(value)}")
    if not 0 <= value <= MAX_CREDITS:
        raise ValueError(f"credits must be from 0 to {MAX_CREDITS}, not {value}")
    return value


def refill(value: object) -> Refill | None:
    """A :class:`~keysentry.refills.Refill`, its text (``"1000/month"``, ``"+100/day"``), or
    None for none."""
    if value is None or isinstance(value, Refill):
        return value
    if not isinstance(value, str):
        raise TypeError(f"refill must be a Refill or text like '1000/month', not {_kind(value)}")
    if value.strip().lower() == "none":
        return None
    try:
        return Refill.parse(value)
    except ValueError as exc:
        raise ValueError(f"refill: {exc}") from None


def _json(value: object, where: str) -> object:
    """``value`` as JSON reads it back; refuses what JSON would change or cannot hold."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number, not {value}")
        return value
    if isinstance(value, Mapping):
        out: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} must have string keys, not {_kind(key)} ({key!r})")
            out[key] = _json(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, list | tuple):
        return [_json(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(
        f"{where} must hold JSON values (str, int, float, bool, None, lists, dicts), "
        f"not {_kind(value)}"
    )


def metadata(value: object) -> dict[str, Any]:
    """A JSON object (a mapping with string keys), or None for an empty one."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"metadata must be a mapping (a JSON object), not {_kind(value)}")
    checked = _json(value, "metadata")
    json.dumps(checked, allow_nan=False)  # what the stores write: it must not fail there
    return checked  # type: ignore[return-value]


def prefix(value: object) -> str | None:
    return None if value is None else validate_prefix(text(value, "prefix"))


def page_size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"limit must be a whole number (int), not {_kind(value)}")
    if not 1 <= value <= 1000:
        raise ValueError(f"limit: a page holds 1 to 1000 keys, not {value}")
    return value


_CHECKS: dict[str, Callable[[object], object]] = {
    "name": lambda v: text(v, "name"),
    "owner": lambda v: optional_text(v, "owner"),
    "scopes": scopes,
    "expires_at": expiry,
    "rate_limit": rates,
    "allowed_networks": networks,
    "credits": credits,
    "metadata": metadata,
    "prefix": prefix,
    "disabled": lambda v: flag(v, "disabled"),
    "refill": refill,
}

#: What :meth:`~keysentry.Keysentry.issue` takes (``import_key``: the same but ``prefix``).
ISSUABLE = frozenset(_CHECKS) - {"disabled"}
#: What :meth:`~keysentry.Keysentry.update` may change.
CHANGEABLE = frozenset(_CHECKS) - {"prefix"}


def check_fields(values: Mapping[str, object]) -> dict[str, Any]:
    """Each value checked and converted to what the record holds; names not in ``_CHECKS``
    are the caller's to refuse."""
    return {name: _CHECKS[name](value) for name, value in values.items()}

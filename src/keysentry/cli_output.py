"""How ``keysentry keys`` shows records: JSON values for scripts, text for people.

JSON carries every field but the digest, times in UTC ISO 8601. Text is what a terminal shows
well: aligned tables and ``field: value`` lines, compact UTC times (``2025-06-01 12:00:05Z``),
control characters in names escaped so a stored name cannot drive the terminal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from .history import UsageHistory
from .records import KeyRecord

__all__ = [
    "cell",
    "digest_note",
    "history_json",
    "history_table",
    "record_fields",
    "record_json",
    "shown_once",
    "status",
    "table",
    "when",
]


def status(record: KeyRecord, now: datetime) -> str:
    """``active``, ``disabled``, ``revoked``, ``expired`` or ``rotated`` (in its grace
    period), the first that applies in the order revoked, expired, disabled, rotated."""
    if record.revoked_at is not None:
        return "revoked"
    if record.expires_at is not None and record.expires_at <= now:
        return "expired"
    if record.disabled:
        return "disabled"
    if record.rotated_to is not None:
        return "rotated"
    return "active"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(timezone.utc).isoformat()


def record_json(record: KeyRecord, now: datetime) -> dict[str, Any]:
    """Every field of a record but its digest, as JSON values (times in UTC ISO 8601)."""
    return {
        "id": record.id,
        "prefix": record.prefix,
        "name": record.name,
        "owner": record.owner,
        "status": status(record, now),
        "scopes": sorted(record.scopes),
        "rate_limit": None if record.rate_limit is None else [str(r) for r in record.rate_limit],
        "allowed_networks": [str(n) for n in record.allowed_networks],
        "credits": record.credits,
        "refill": None if record.refill is None else str(record.refill),
        "refilled_at": _iso(record.refilled_at),
        "metadata": dict(record.metadata),
        "created_at": _iso(record.created_at),
        "expires_at": _iso(record.expires_at),
        "last_used_at": _iso(record.last_used_at),
        "request_count": record.request_count,
        "disabled": record.disabled,
        "revoked_at": _iso(record.revoked_at),
        "rotated_to": record.rotated_to,
        "credits_from": record.credits_from,
        "line": record.line,
        "digest_mode": record.digest_mode,
    }


#: How each digest mode reads for people (never with the secret itself).
_MODES = {
    "hmac-sha256": "hmac-sha256 (with a secret)",
    "sha256": "sha256 (without a secret)",
    None: "unknown (stored before keys recorded it)",
}


def digest_note(stored: str | None, here: str) -> str | None:
    """A warning when a key's digest mode differs from the one this command digests with
    (``$KEYSENTRY_SECRET`` set or not): apps configured like it will not verify the key."""
    if stored is None or stored == here:
        return None
    if stored == "hmac-sha256":
        return (
            "this key was digested with a secret, and $KEYSENTRY_SECRET is not set here: it "
            "verifies only in apps given the secret it was created with."
        )
    return (
        "this key was digested without a secret, and $KEYSENTRY_SECRET is set here: it "
        "verifies only in apps without one."
    )


def when(value: datetime | None, none: str = "-") -> str:
    if value is None:
        return none
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def cell(text: str, width: int = 0) -> str:
    """``text`` safe for a terminal (control characters escaped), cut to ``width``."""
    if not text.isprintable():
        text = repr(text)[1:-1]
    if width and len(text) > width:
        text = text[: width - 3] + "..."
    return text


def shown_once(key: str) -> str:
    return (
        "The key, shown this once (only its digest is stored; it cannot be shown again):\n\n"
        f"    {key}"
    )


def record_fields(record: KeyRecord, now: datetime) -> str:
    """Every field but the digest, as aligned ``field: value`` lines."""
    rate = record.rate_limit
    values = {
        "id": record.id,
        "prefix": record.prefix,
        "name": record.name or "-",
        "owner": record.owner or "-",
        "status": status(record, now),
        "scopes": ", ".join(sorted(record.scopes)) or "-",
        "rate_limit": "the app's default" if rate is None else ", ".join(map(str, rate)) or "none",
        "allowed_networks": ", ".join(map(str, record.allowed_networks)) or "any",
        "credits": "unmetered" if record.credits is None else str(record.credits),
        "refill": "-" if record.refill is None else str(record.refill),
        "metadata": json.dumps(dict(record.metadata)) if record.metadata else "-",
        "created_at": when(record.created_at),
        "expires_at": when(record.expires_at, "never"),
        "last_used_at": when(record.last_used_at, "never"),
        "request_count": str(record.request_count),
        "disabled": "yes" if record.disabled else "no",
        "revoked_at": when(record.revoked_at),
        "rotated_to": record.rotated_to or "-",
        "line": record.line or "-",
        "digest_mode": _MODES.get(record.digest_mode, str(record.digest_mode)),
    }
    width = max(map(len, values)) + 1
    return "\n".join(f"{name + ':':<{width}} {cell(value)}" for name, value in values.items())


def table(header: Sequence[str], rows: Iterable[Sequence[str]], right: set[int]) -> str:
    """Columns two spaces apart, each as wide as its widest cell; ``right``-aligned numbers."""
    lines = [header, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            text.rjust(width) if i in right else text.ljust(width)
            for i, (text, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    )


def history_json(history: UsageHistory) -> dict[str, Any]:
    """A usage history as JSON values: each day (ISO date) with its requests and routes."""
    return {
        "days": [
            {"day": d.day.isoformat(), "requests": d.requests, "routes": dict(d.routes)}
            for d in history.days
        ],
        "total": history.total,
    }


def history_table(history: UsageHistory) -> str:
    """A usage history as a table of days (oldest first), with the requests per route
    template when any are known, most used first."""
    routed = any(d.routes for d in history.days)
    rows = []
    for d in history.days:
        row = [d.day.isoformat(), str(d.requests)]
        if routed:
            ranked = sorted(d.routes.items(), key=lambda item: (-item[1], item[0]))
            row.append(", ".join(f"{cell(route, 64)} {n}" for route, n in ranked) or "-")
        rows.append(row)
    header = ["DAY", "REQUESTS", *(["ROUTES"] if routed else [])]
    return table(header, rows, right={1})

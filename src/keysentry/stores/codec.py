"""KeyRecord <-> plain values, for stores that keep records outside the process.

One encoding for every backend (Redis hashes, SQL rows, JSON): strings, integers and None
only, so a record written by one release and one backend reads back identically elsewhere.
Timestamps are UTC ISO 8601; the digest is hex; scopes and networks are sorted lists; rates
are ``limit/period[/burst]`` strings; metadata is JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ..accounts import parse_rate, rate_text
from ..records import KeyRecord
from ..refills import Refill

__all__ = ["FIELDS", "decode", "encode"]

FIELDS = (
    "id",
    "digest",
    "prefix",
    "name",
    "owner",
    "scopes",
    "created_at",
    "expires_at",
    "last_used_at",
    "disabled",
    "revoked_at",
    "rate_limit",
    "allowed_networks",
    "credits",
    "metadata",
    "request_count",
    "rotated_to",
    "credits_from",
    "line",
    "digest_mode",
    "refill",
    "refilled_at",
)


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(timezone.utc).isoformat()


def _parse_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def encode(record: KeyRecord) -> dict[str, str | int | None]:
    """The record as strings, integers and None (lists and mappings as JSON text)."""
    return {
        "id": record.id,
        "digest": record.digest.hex(),
        "prefix": record.prefix,
        "name": record.name,
        "owner": record.owner,
        "scopes": json.dumps(sorted(record.scopes)),
        "created_at": _time(record.created_at),
        "expires_at": _time(record.expires_at),
        "last_used_at": _time(record.last_used_at),
        "disabled": int(record.disabled),
        "revoked_at": _time(record.revoked_at),
        "rate_limit": None
        if record.rate_limit is None
        else json.dumps([rate_text(r) for r in record.rate_limit]),
        "allowed_networks": json.dumps([str(n) for n in record.allowed_networks]),
        "credits": record.credits,
        "metadata": json.dumps(dict(record.metadata), separators=(",", ":"), sort_keys=True),
        "request_count": record.request_count,
        "rotated_to": record.rotated_to,
        "credits_from": record.credits_from,
        "line": record.line,
        "digest_mode": record.digest_mode,
        "refill": None if record.refill is None else str(record.refill),
        "refilled_at": _time(record.refilled_at),
    }


def decode(row: Mapping[str, Any]) -> KeyRecord:
    """Inverse of :func:`encode`; also accepts bytes values (Redis) and native types (SQL)."""
    values = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in row.items()}

    def none(name: str) -> Any:
        value = values.get(name)
        return None if value in (None, "") else value

    rate_limit = none("rate_limit")
    credits = none("credits")
    refill = none("refill")
    return KeyRecord(
        id=values["id"],
        digest=bytes.fromhex(values["digest"]),
        prefix=values["prefix"],
        name=values.get("name") or "",
        owner=none("owner"),
        scopes=frozenset(json.loads(values.get("scopes") or "[]")),
        created_at=_parse_time(values["created_at"]) or datetime.now(timezone.utc),
        expires_at=_parse_time(none("expires_at")),
        last_used_at=_parse_time(none("last_used_at")),
        disabled=str(values.get("disabled") or "0") not in ("0", "False", "false"),
        revoked_at=_parse_time(none("revoked_at")),
        rate_limit=None
        if rate_limit is None
        else tuple(parse_rate(r) for r in json.loads(rate_limit)),
        allowed_networks=tuple(json.loads(values.get("allowed_networks") or "[]")),
        credits=None if credits is None else int(credits),
        metadata=json.loads(values.get("metadata") or "{}"),
        request_count=int(values.get("request_count") or 0),
        rotated_to=none("rotated_to"),
        credits_from=none("credits_from"),
        line=none("line"),
        digest_mode=none("digest_mode"),
        refill=None if refill is None else Refill.parse(refill),
        refilled_at=_parse_time(none("refilled_at")),
    )

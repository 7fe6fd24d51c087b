"""``keysentry keys``: create, list, show, disable, enable, revoke and rotate keys on a store.

Each command is a thin layer over the guard's lifecycle API (``Keysentry.issue``, ``rotate``,
...): it reads strict arguments, makes one change, and prints the result for people (aligned
tables, ``field: value`` lines, compact UTC times) or, with ``--json``, for scripts (one JSON
value, UTC ISO 8601 times). The full key appears once, in the output of ``create`` and
``rotate``; no output ever holds a digest.

Arguments are checked by argparse before the store is opened, so bad input costs no
connection and reads as one usage error (exit 2); ``cli.py`` turns what the store says
(unknown id, unreachable) into one line and exit 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TextIO

from .cli_output import cell, record_fields, record_json, shown_once, status, table, when
from .core import Keysentry
from .errors import InvalidKeyFormat
from .keys import validate_prefix
from .records import KeyRecord, Network, Rate, utcnow

__all__ = ["add_keys_parser", "refuse_store", "run"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"([0-9]+)([smhdw])")
#: Longest duration accepted: beyond it is a typo, not a plan (and near datetime's range).
_MAX_DURATION = timedelta(days=36525)
#: Most credits a key may hold: the largest integer every store counts exactly (Redis's Lua
#: numbers are doubles).
MAX_CREDITS = 2**53 - 1
#: Page size of ``keys list`` when it walks all pages, and how many keys it shows at most.
PAGE = 1000
MAX_LISTED = 10_000


# -- argument types: each raises ArgumentTypeError with a message naming the problem -----------


def _duration(text: str, *, zero: bool) -> timedelta:
    example = "use a whole number and a unit (s, m, h, d, w), e.g. 90d, 24h, 30m, 45s, 2w"
    value = text.strip()
    if value.isascii() and value.isdigit() and int(value) == 0:
        if zero:
            return timedelta(0)
        raise argparse.ArgumentTypeError(f"{text!r}: the duration must be more than zero")
    match = _DURATION.fullmatch(value)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: {example}")
    digits = match.group(1).lstrip("0")
    seconds = int(digits[:12] or "0") * _UNITS[match.group(2)]
    if seconds == 0 and not zero:
        raise argparse.ArgumentTypeError(f"{text!r}: the duration must be more than zero")
    if len(digits) > 12 or seconds > _MAX_DURATION.total_seconds():
        raise argparse.ArgumentTypeError(f"{text!r}: the duration must be at most 100 years")
    return timedelta(seconds=seconds)


def _lifetime(text: str) -> timedelta:
    """A positive duration: ``90d``, ``24h``, ``30m``, ``45s``, ``2w``."""
    return _duration(text, zero=False)


def _grace(text: str) -> timedelta:
    """A duration that may be zero (``0``, ``0s``)."""
    return _duration(text, zero=True)


def _words(text: str) -> list[str]:
    return [word for word in re.split(r"[,\s]+", text) if word]


def _scopes(text: str) -> list[str]:
    """Scopes separated by commas or spaces; each an OAuth scope-token (RFC 6749 §3.3)."""
    words = _words(text)
    if not words:
        raise argparse.ArgumentTypeError(f"{text!r} holds no scope: e.g. 'read,write'")
    for word in words:
        if not all(0x21 <= ord(c) <= 0x7E and c not in '"\\' for c in word):
            raise argparse.ArgumentTypeError(
                f"scope {word!r} may hold printable ASCII characters other than '\"' and '\\'"
            )
    return words


def _networks(text: str) -> list[Network]:
    """CIDRs or addresses, separated by commas or spaces."""
    words = _words(text)
    if not words:
        raise argparse.ArgumentTypeError(f"{text!r} holds no network: e.g. 10.0.0.0/8")
    return [_network(word) for word in words]


def _network(text: str) -> Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an IP network: e.g. 10.0.0.0/8, 2001:db8::/32, 203.0.113.7"
        ) from None


def _rates(text: str) -> tuple[Rate, ...]:
    """``60/minute``, ``"10/second, 1000/day"``; ``none`` for no limit at all."""
    if text.strip().lower() == "none":
        return ()
    try:
        parsed = Rate.parse_many(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not parsed:
        raise argparse.ArgumentTypeError(f"{text!r} holds no rate: e.g. 60/minute")
    return parsed


def _credits(text: str) -> int:
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_CREDITS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of credits: a whole number from 0 to {MAX_CREDITS}"
        )
    return int(value)


def _prefix(text: str) -> str:
    try:
        return validate_prefix(text)
    except InvalidKeyFormat as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _metadata(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('metadata is a JSON object, e.g. \'{"plan": "pro"}\'')
    return value


def _page_size(text: str) -> int:
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= PAGE:
        raise argparse.ArgumentTypeError(f"{text!r}: a page holds 1 to {PAGE} keys")
    return int(value)


# -- the parser ----------------------------------------------------------------------------------


def add_keys_parser(commands: Any) -> None:
    """Add ``keys`` and its commands to the ``keysentry`` parser's subcommands."""
    # On ``keys`` and on each of its commands, so ``keys --json list`` and ``keys list --json``
    # both work; SUPPRESS keeps a command's absent option from hiding the one given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="key store: sqlite:///path, postgresql://..., redis://...[?namespace=name] "
        "(default: $KEYSENTRY_STORE or sqlite:///keysentry.db)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print JSON for scripts instead of text for people",
    )
    common.add_argument(
        "--invalidator",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="Redis URL to announce each change on, so apps listening there drop their cached "
        "copy at once (default: $KEYSENTRY_INVALIDATOR; none: apps see it within their "
        "cache TTL)",
    )
    keys = commands.add_parser(
        "keys",
        parents=[common],
        help="create, list, show, disable, enable, revoke and rotate API keys",
        description="Manage the API keys of a store. Keys are digested with $KEYSENTRY_SECRET "
        "when it is set: use the same secret as the apps that verify them.",
    )
    sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)

    create = sub.add_parser(
        "create",
        parents=[common],
        help="create a key and print it, once",
        description="Create a key. The full key is printed once; the store keeps its digest.",
    )
    create.add_argument("--name", default="", help="what the key is for")
    create.add_argument("--owner", help="the account or user the key belongs to")
    create.add_argument(
        "--scopes",
        type=_scopes,
        action="extend",
        metavar="SCOPES",
        help="scopes, separated by commas or spaces; repeatable (e.g. read,write)",
    )
    create.add_argument(
        "--rate-limit",
        type=_rates,
        metavar="RATE",
        help="e.g. 60/minute or '10/second, 1000/day'; 'none' for no limit "
        "(default: the app's own default)",
    )
    create.add_argument(
        "--expires-in",
        type=_lifetime,
        metavar="DURATION",
        help="expire after 90d, 24h, 30m, 45s or 2w (default: never)",
    )
    create.add_argument(
        "--allow-ip",
        type=_networks,
        action="extend",
        metavar="CIDR",
        help="accept requests from this network only (e.g. 10.0.0.0/8); repeatable",
    )
    create.add_argument(
        "--credits",
        type=_credits,
        metavar="N",
        help="requests the key may make; each allowed request costs one (default: unmetered)",
    )
    create.add_argument(
        "--prefix",
        type=_prefix,
        help="what the key starts with, e.g. sk_live (default) or sk_test",
    )
    create.add_argument(
        "--metadata",
        type=_metadata,
        metavar="JSON",
        help='a small JSON object handed to the app, e.g. \'{"plan": "pro"}\'',
    )

    listing = sub.add_parser(
        "list",
        parents=[common],
        help="list keys in id order",
        description=f"List keys in id order: every key (at most {MAX_LISTED}), or one page "
        'with --limit. With --json: {"keys": [...], "next": ID or null}, where next is '
        "the --after of the following page.",
    )
    listing.add_argument("--owner", help="only this owner's keys")
    listing.add_argument(
        "--limit", type=_page_size, metavar="N", help=f"one page of at most N keys (1-{PAGE})"
    )
    listing.add_argument("--after", metavar="ID", help="start after this key id (a cursor)")

    for name, text in (
        ("show", "show every field of a key (never its digest)"),
        ("disable", "refuse a key (403 API_KEY_DISABLED) until it is enabled"),
        ("enable", "accept a disabled key again"),
        ("revoke", "refuse a key from now on, for good"),
    ):
        command = sub.add_parser(name, parents=[common], help=text, description=text + ".")
        command.add_argument("id", metavar="ID", help="the key's id")

    rotate = sub.add_parser(
        "rotate",
        parents=[common],
        help="replace a key by a new one with the same settings",
        description="Replace a key by a new one with the same settings, printed once. The old "
        "key keeps working for the grace period, then is refused as expired.",
    )
    rotate.add_argument("id", metavar="ID", help="the key's id")
    rotate.add_argument(
        "--grace",
        type=_grace,
        default=timedelta(0),
        metavar="DURATION",
        help="how long the old key keeps working, e.g. 24h (default: 0, revoked at once)",
    )


def refuse_store(url: str, command: str) -> tuple[int, str] | None:
    """Why ``command`` should not run on this store at all, with its exit status; or None."""
    scheme = url.partition("://")[0].lower()
    if scheme == "memory":
        return 2, (
            "a memory store lives inside one process, so its keys would vanish when this "
            "command ends: use sqlite:///path, postgresql://... or redis://..."
        )
    if scheme.partition("+")[0] == "sqlite" and command != "create":
        from pathlib import Path

        # sqlite:///keys.db -> keys.db, sqlite:////srv/keys.db -> /srv/keys.db. Opening a file
        # that is not there would create it: a mistyped path would then list no keys.
        path = url.partition("://")[2].partition("?")[0]
        path = path[1:] if path.startswith("/") else path
        if path and not Path(path).exists():
            return 1, f"no database file {path!r} (keysentry keys create makes one)"
    return None


# -- running a command ---------------------------------------------------------------------------

#: What a command prints: the value for --json, and the text for people.
Output = tuple[Any, str]


def run(ks: Keysentry, args: argparse.Namespace, out: TextIO) -> int:
    payload, text = _COMMANDS[args.keys_command](ks, args, utcnow())
    if getattr(args, "json", False):
        out.write(json.dumps(payload, indent=2) + "\n")
    else:
        out.write(text.rstrip("\n") + "\n")
    out.flush()
    return 0


def _create(ks: Keysentry, args: argparse.Namespace, now: datetime) -> Output:
    issued = ks.issue(
        name=args.name,
        owner=args.owner,
        scopes=args.scopes or (),
        prefix=args.prefix,
        expires_at=None if args.expires_in is None else now + args.expires_in,
        rate_limit=args.rate_limit,
        allowed_networks=args.allow_ip or (),
        credits=args.credits,
        metadata=args.metadata,
    )
    record, key = issued.record, issued.key.reveal()
    text = f"Created key {record.id}.\n\n{shown_once(key)}\n\n{record_fields(record, now)}"
    return {"key": key, **record_json(record, now)}, text


def _list(ks: Keysentry, args: argparse.Namespace, now: datetime) -> Output:
    records, cursor = _collect(ks, args.owner, args.after, args.limit or MAX_LISTED)
    records = [_view(ks, r) for r in records]
    payload = {"keys": [record_json(r, now) for r in records], "next": cursor}
    if not records:
        return payload, "No keys."
    rows = [
        [
            r.id,
            cell(r.name or "-", 24),
            cell(r.owner or "-", 24),
            cell(r.prefix),
            cell(",".join(sorted(r.scopes)) or "-", 32),
            status(r, now),
            "-" if r.credits is None else str(r.credits),
            when(r.last_used_at, "never"),
            str(r.request_count),
        ]
        for r in records
    ]
    header = ["ID", "NAME", "OWNER", "PREFIX", "SCOPES", "STATUS", "CREDITS", "LAST USED"]
    text = table([*header, "REQUESTS"], rows, right={6, 8})
    if cursor is not None:
        text += f"\nMore keys: repeat with --after {cursor}"
    return payload, text


def _collect(
    ks: Keysentry, owner: str | None, after: str | None, most: int
) -> tuple[list[KeyRecord], str | None]:
    """Up to ``most`` keys after ``after``, and the cursor of the rest (None: there is none)."""
    records: list[KeyRecord] = []
    cursor = after
    while len(records) < most:
        size = min(PAGE, most - len(records))
        page = ks.list_keys(owner=owner, after=cursor, limit=size)
        records.extend(page)
        if len(page) < size:
            return records, None
        cursor = page[-1].id
    # A full last page may be all there was: look before promising more.
    return records, cursor if ks.list_keys(owner=owner, after=cursor, limit=1) else None


def _view(ks: Keysentry, record: KeyRecord) -> KeyRecord:
    """The record as people should see it: a rotated key's successor shows the balance it
    shares with the first key of its line (``credits_from``), not its own empty field."""
    if record.credits_from is None:
        return record
    return dataclasses.replace(record, credits=ks.credits_of(record))


def _show(ks: Keysentry, args: argparse.Namespace, now: datetime) -> Output:
    record = _view(ks, ks.get(args.id))
    return record_json(record, now), record_fields(record, now)


def _disable(ks: Keysentry, args: argparse.Namespace, now: datetime) -> Output:
    record = _view(ks, ks.disable(args.id))
    return record_json(record, now), (
        f"Disabled key {record.id} ({cell(record.prefix)}): its requests get 403 "
        f"API_KEY_DISABLED until `keysentry keys enable {record.id}`."
    )


def _enable(ks: Keysentry, args: argparse.Namespace, now: datetime) -> Output:
    record = _view(ks, ks.enable(args.id))
    return record_json(record, now), (
        f"Enabled key {record.id} ({cell(record.prefix)}); its status is {status(record, now)}."
    )


def _revoke(ks: Keysentry, args: argparse.Namespace, now: datetime) -> Output:
    record = _view(ks, ks.get(args.id))
    if record.revoked_at is not None:
        # Revoking again would move revoked_at: keep the time it really stopped working.
        return record_json(record, now), (
            f"Key {record.id} ({cell(record.prefix)}) was already revoked, at "
            f"{when(record.revoked_at)}."
        )
    record = _view(ks, ks.revoke(args.id))
    return record_json(record, now), (
        f"Revoked key {record.id} ({cell(record.prefix)}): its requests get 401 from now on."
    )


def _rotate(ks: Keysentry, args: argparse.Namespace, now: datetime) -> Output:
    old = ks.get(args.id)
    if status(old, now) == "expired":
        # The successor inherits the expiry (rotation is not renewal): it would never work.
        raise ValueError(
            f"key {old.id} expired at {when(old.expires_at)}: a rotated key keeps its "
            "expiry, so create a new key instead"
        )
    issued = ks.rotate(args.id, grace=args.grace)
    new, key = _view(ks, issued.record), issued.key.reveal()
    old = _view(ks, ks.get(args.id))
    if old.revoked_at is not None:
        until = f"The old key {old.id} was revoked at once."
    else:
        until = (
            f"The old key {old.id} keeps working until {when(old.expires_at)}, then is "
            "refused as expired."
        )
    text = (
        f"Rotated key {old.id} to {new.id}.\n\n{shown_once(key)}\n\n{until}\n\n"
        f"{record_fields(new, now)}"
    )
    return {"key": key, **record_json(new, now), "old": record_json(old, now)}, text


_COMMANDS: dict[str, Callable[[Keysentry, argparse.Namespace, datetime], Output]] = {
    "create": _create,
    "list": _list,
    "show": _show,
    "disable": _disable,
    "enable": _enable,
    "revoke": _revoke,
    "rotate": _rotate,
}

"""``keysentry keys``: create, list, show, update, disable, enable, revoke, rotate, delete and
verify keys on a store, and show their usage history.

Each command is a thin layer over the guard's lifecycle API (``Keysentry.issue``, ``update``,
``rotate``, ``delete``, ...): it reads strict arguments, makes one change, and prints the
result for people (aligned tables, ``field: value`` lines, compact UTC times) or, with
``--json``, for scripts (one JSON value, UTC ISO 8601 times). The full key appears once, in
the output of ``create`` and ``rotate``; ``verify`` reads one from stdin or a file and never
prints it; no output ever holds a digest. A key is named by its id or by the prefix listings
show (``sk_live_<id>``).

Arguments are checked by argparse (and :func:`prepare`) before the store is opened, so bad
input costs no connection and reads as one usage error (exit 2); ``cli.py`` turns what the
store says (unknown id, unreachable) into one line and exit 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TextIO

from .cli_output import (
    cell,
    digest_note,
    history_json,
    history_table,
    record_fields,
    record_json,
    shown_once,
    status,
    table,
    when,
)
from .core import Keysentry
from .errors import Denial, InvalidKeyFormat, KeyNotFound
from .history import MAX_DAYS
from .keys import KEY_ID_LENGTH, validate_prefix
from .lifecycle import check_deletable
from .records import KeyRecord, Network, Rate, utcnow
from .refills import MAX_CREDITS, Refill

__all__ = [
    "Declined",
    "UsageError",
    "add_keys_parser",
    "common_options",
    "credit_count",
    "empty_listing",
    "missing_database",
    "prepare",
    "refuse_store",
    "run",
]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"([0-9]+)([smhdw])")
#: Longest duration accepted: beyond it is a typo, not a plan (and near datetime's range).
_MAX_DURATION = timedelta(days=36525)
#: Page size of ``keys list`` when it walks all pages, and how many keys it shows at most.
PAGE = 1000
MAX_LISTED = 10_000


# -- argument types: each raises ArgumentTypeError with a message naming the problem -----------


def _duration(text: str, *, zero: bool) -> timedelta:
    example = "use a whole number and a unit (s, m, h, d, w), e.g. 90d, 24h, 30m, 45s, 2w"
    value = text.strip()
    if value.startswith("-"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: it cannot be negative")
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


def expiry_time(text: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time later than ``now``, as UTC: ``2026-12-31``, ``2026-12-31T23:59Z``,
    ``2026-12-31T23:59:59+02:00``. A time without an offset is UTC."""
    value = text.strip()
    if value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"  # Python 3.10's fromisoformat does not read Z
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time: e.g. 2026-12-31, 2026-12-31T23:59:59Z or "
            "2026-12-31T23:59:59+02:00 (without an offset, UTC)"
        ) from None
    try:
        when = (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
    except (OverflowError, ValueError):  # an offset that carries it past year 1 or 9999
        raise argparse.ArgumentTypeError(f"{text!r} is out of range") from None
    if when <= (now or utcnow()):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not later than now: a key's expiry must be in the future "
            "(to stop a key now, use disable or revoke)"
        )
    if when - (now or utcnow()) > _MAX_DURATION:
        raise argparse.ArgumentTypeError(f"{text!r}: the expiry must be at most 100 years ahead")
    return when


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


#: ``--rate-limit default``: the app's default limit (what a record without one gets).
APP_DEFAULT = "default"


def _rates(text: str) -> tuple[Rate, ...] | str:
    """``60/minute``, ``"10/second, 1000/day"``; ``none`` for no limit at all, ``default``
    for the app's default (:data:`APP_DEFAULT`)."""
    word = text.strip().lower()
    if word == "none":
        return ()
    if word == APP_DEFAULT:
        return APP_DEFAULT
    if word.startswith("-"):
        raise argparse.ArgumentTypeError(
            f"{text!r}: a rate cannot be negative: e.g. 60/minute, 'none' or 'default'"
        )
    return rate_list(text)


def rate_list(text: str) -> tuple[Rate, ...]:
    """One rate or more, for an option of the CLI: a bad one is argparse's error, which
    names the option."""
    try:
        parsed = Rate.parse_many(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not parsed:
        raise argparse.ArgumentTypeError(f"{text!r} holds no rate: e.g. 60/minute")
    return parsed


def credit_count(text: str) -> int:
    """A number of credits for an option: a whole number from 0 to :data:`MAX_CREDITS`."""
    value = text.strip()
    if value.startswith("-"):
        raise argparse.ArgumentTypeError(
            f"{text!r}: credits cannot be negative: a whole number from 0 to {MAX_CREDITS}"
        )
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_CREDITS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of credits: a whole number from 0 to {MAX_CREDITS}"
        )
    return int(value)


def refill_spec(text: str) -> Refill | str:
    """A refill (``1000/month``, ``+100/day``), or ``none``."""
    if text.strip().lower() == "none":
        return "none"
    try:
        return Refill.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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


def _days(text: str) -> int:
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of days from 1 to {MAX_DAYS}")
    return int(value)


def _page_size(text: str) -> int:
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= PAGE:
        raise argparse.ArgumentTypeError(f"{text!r}: a page holds 1 to {PAGE} keys")
    return int(value)


# -- the parser ----------------------------------------------------------------------------------


def common_options(connection: bool = True) -> argparse.ArgumentParser:
    """The options every store command takes (``keys`` and ``accounts``): ``--json`` and,
    with ``connection``, ``--store`` and ``--invalidator`` (``manage.py keysentry`` has the
    project's own). A parent parser on the group and on each command, so ``keys --json list``
    and ``keys list --json`` both work; SUPPRESS keeps a command's absent option from hiding
    the one given before it."""
    common = argparse.ArgumentParser(add_help=False)
    if connection:
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
    if connection:
        common.add_argument(
            "--invalidator",
            metavar="URL",
            default=argparse.SUPPRESS,
            help="Redis URL to announce each change on, so apps listening there drop their "
            "cached copy at once (default: $KEYSENTRY_INVALIDATOR; none: apps see it within "
            "their cache TTL)",
        )
    return common


def add_keys_parser(
    commands: Any,
    *,
    connection: bool = True,
    description: str = "Manage the API keys of a store. Keys are digested with "
    "$KEYSENTRY_SECRET when it is set: use the same secret as the apps that verify them.",
) -> None:
    """Add ``keys`` and its commands to the ``keysentry`` parser's subcommands; without
    ``connection``, the options that name a store and an invalidator (``manage.py
    keysentry`` has the project's own)."""
    common = common_options(connection)
    keys = commands.add_parser(
        "keys",
        parents=[common],
        help="create, list, show, update, disable, enable, revoke, rotate, delete, verify "
        "API keys and show their usage",
        description=description,
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
        "(default: the app's own default, also named by 'default')",
    )
    _expiry_options(create.add_mutually_exclusive_group(), never=False)
    create.add_argument(
        "--allow-ip",
        type=_networks,
        action="extend",
        metavar="CIDR",
        help="accept requests from this network only (e.g. 10.0.0.0/8); repeatable",
    )
    create.add_argument(
        "--credits",
        type=credit_count,
        metavar="N",
        help="requests the key may make; each allowed request costs one (default: unmetered)",
    )
    create.add_argument(
        "--refill",
        type=refill_spec,
        metavar="SPEC",
        help="top the credits up each day, week or month: '1000/month' sets them to 1000, "
        "'+100/day' adds 100",
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
        ("enable", "accept a disabled key again (not a revoked one)"),
        ("revoke", "refuse a key from now on, for good (its record stays)"),
    ):
        command = sub.add_parser(name, parents=[common], help=text, description=text + ".")
        _id_argument(command)

    _add_update_parser(sub, common)

    delete = sub.add_parser(
        "delete",
        parents=[common],
        help="remove a key from the store for good",
        description="Remove a key from the store for good: its requests get 401, and "
        "nothing of it is kept (revoke keeps the record). Asks first, unless --yes.",
    )
    _id_argument(delete)
    delete.add_argument("--yes", action="store_true", help="delete without asking")

    verify = sub.add_parser(
        "verify",
        parents=[common],
        help="check a key, read from stdin or a file, as the apps do",
        description="Check a key as an app on this store, with this $KEYSENTRY_SECRET, "
        "decides it: prints 'valid' (exit status 0) or the error code and message a client "
        "would get (exit status 1); never the key. The key is read from standard input "
        "(not echoed at a terminal) or from --key-file, never from the command line, where "
        "it would stay in the shell's history. The client address, rate limit and credits "
        "are checked per request, not here.",
    )
    verify.add_argument(
        "--key-file", metavar="PATH", help="read the key from this file (default: stdin)"
    )

    usage = sub.add_parser(
        "usage",
        parents=[common],
        help="requests per day of a key, or of every key of an owner",
        description="Show the requests of a key (ID) or of every key of an owner (--owner, "
        "revoked keys included) per UTC day, today last, and per route template where the "
        "apps count them (usage_routes). Counts reach the store in batches: the last few "
        "seconds of use may not be there yet.",
    )
    usage.add_argument(
        "id", metavar="ID", nargs="?", help="the key's id, or its prefix as listed (sk_live_<id>)"
    )
    usage.add_argument("--owner", help="every key of this owner, summed, with each key's total")
    usage.add_argument(
        "--days",
        type=_days,
        default=30,
        metavar="N",
        help=f"how many days, today included (default: 30; at most {MAX_DAYS})",
    )

    rotate = sub.add_parser(
        "rotate",
        parents=[common],
        help="replace a key by a new one with the same settings",
        description="Replace a key by a new one with the same settings, printed once. The old "
        "key keeps working for the grace period, then is refused as expired.",
    )
    _id_argument(rotate)
    rotate.add_argument(
        "--grace",
        type=_grace,
        default=timedelta(0),
        metavar="DURATION",
        help="how long the old key keeps working, e.g. 24h (default: 0, revoked at once)",
    )


def _id_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "id", metavar="ID", help="the key's id, or its prefix as listed (sk_live_<id>)"
    )


def _expiry_options(group: Any, *, never: bool) -> None:
    group.add_argument(
        "--expires-in",
        type=_lifetime,
        metavar="DURATION",
        help="expire after 90d, 24h, 30m, 45s or 2w" + ("" if never else " (default: never)"),
    )
    group.add_argument(
        "--expires-at",
        type=expiry_time,
        metavar="TIME",
        help="expire at this ISO 8601 time, e.g. 2026-12-31 or 2026-12-31T23:59:59Z "
        "(without an offset, UTC)",
    )
    if never:
        group.add_argument("--never-expires", action="store_true", help="remove the key's expiry")


def _add_update_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    update = sub.add_parser(
        "update",
        parents=[common],
        help="change a key's name, owner, scopes, limits, credits, networks, metadata, expiry",
        description="Change a key. Only the options given change; lists (--scopes, "
        "--allow-ip) replace the key's. The key itself stays the same.",
    )
    _id_argument(update)
    update.add_argument("--name", help="what the key is for")
    owner = update.add_mutually_exclusive_group()
    owner.add_argument("--owner", help="the account or user the key belongs to")
    owner.add_argument("--no-owner", action="store_true", help="the key belongs to nobody")
    scopes = update.add_mutually_exclusive_group()
    scopes.add_argument(
        "--scopes",
        type=_scopes,
        action="extend",
        metavar="SCOPES",
        help="the key's scopes from now on, separated by commas or spaces; repeatable",
    )
    scopes.add_argument("--no-scopes", action="store_true", help="take every scope away")
    update.add_argument(
        "--rate-limit",
        type=_rates,
        metavar="RATE",
        help="e.g. 60/minute or '10/second, 1000/day'; 'none' for no limit, 'default' for "
        "the app's own default",
    )
    credits = update.add_mutually_exclusive_group()
    credits.add_argument(
        "--credits",
        type=credit_count,
        metavar="N",
        help="the requests the key may make from now on (its balance)",
    )
    credits.add_argument("--unmetered", action="store_true", help="no credit limit")
    update.add_argument(
        "--refill",
        type=refill_spec,
        metavar="SPEC",
        help="top the credits up each day, week or month ('1000/month', '+100/day'); "
        "'none' for no refill",
    )
    networks = update.add_mutually_exclusive_group()
    networks.add_argument(
        "--allow-ip",
        type=_networks,
        action="extend",
        metavar="CIDR",
        help="accept requests from these networks only, from now on; repeatable",
    )
    networks.add_argument("--any-ip", action="store_true", help="accept any client address")
    update.add_argument(
        "--metadata",
        type=_metadata,
        metavar="JSON",
        help="the key's metadata from now on, a JSON object",
    )
    _expiry_options(update.add_mutually_exclusive_group(), never=True)


def refuse_store(url: str, command: str) -> tuple[int, str] | None:
    """Why ``command`` should not run on this store at all, with its exit status; or None.
    (``list`` on a database file not made yet: see :func:`missing_database`.)"""
    scheme = url.partition("://")[0].lower()
    if scheme == "memory":
        return 2, (
            "a memory store lives inside one process, so its keys would vanish when this "
            "command ends: use sqlite:///path, postgresql://... or redis://..."
        )
    path = missing_database(url)
    if path is not None and command not in ("create", "list"):
        return 1, f"no database file {path!r} (keysentry keys create makes one)"
    return None


def missing_database(url: str) -> str | None:
    """The path of a SQLite store's file when it does not exist (yet); else None. Opening it
    would create it: only ``create`` may, so that a mistyped path makes no stray file."""
    if url.partition("://")[0].lower().partition("+")[0] != "sqlite":
        return None
    from pathlib import Path

    # sqlite:///keys.db -> keys.db, sqlite:////srv/keys.db -> /srv/keys.db.
    path = url.partition("://")[2].partition("?")[0]
    path = path[1:] if path.startswith("/") else path
    return path if path and not Path(path).exists() else None


def empty_listing(args: argparse.Namespace, out: TextIO) -> int:
    """What ``list`` prints for a store with no keys (a table with no rows)."""
    payload, text = _listing([], None, utcnow())
    _print(args, out, payload, text)
    return 0


class UsageError(Exception):
    """The command line is wrong in a way argparse cannot tell (exit status 2)."""


def prepare(args: argparse.Namespace, stdin: TextIO) -> None:
    """Check what argparse could not, and read what a command needs from outside, before any
    store is opened; :class:`UsageError` names the problem. ``verify`` reads its key here."""
    command = args.keys_command
    if command == "update" and not any(
        getattr(args, name) not in (None, False) for name in _UPDATE_OPTIONS
    ):
        raise UsageError(
            "nothing to change: give at least one of "
            + ", ".join("--" + name.replace("_", "-") for name in _UPDATE_OPTIONS)
        )
    if command == "verify":
        args.token = _read_key(args.key_file, stdin)
    if command == "usage" and (args.id is None) == (args.owner is None):
        raise UsageError("give a key's ID or --owner OWNER (one of them)")


#: The options of ``update``, each a change.
_UPDATE_OPTIONS = (
    "name", "owner", "no_owner", "scopes", "no_scopes", "rate_limit", "credits", "unmetered",
    "allow_ip", "any_ip", "metadata", "expires_in", "expires_at", "never_expires", "refill",
)  # fmt: skip
#: The most ``verify`` reads: far more than any key (a file of something else is refused).
_MOST_READ = 64 * 1024


def _read_key(path: str | None, stdin: TextIO) -> bytes:
    """The key from a file or from standard input (at a terminal, without echoing it), with
    the whitespace around it taken off. Messages never hold what was read."""
    if path is not None:
        try:
            with open(path, "rb") as file:
                raw = file.read(_MOST_READ + 1)
        except OSError as exc:
            raise UsageError(f"--key-file {path!r}: {exc.strerror or type(exc).__name__}") from None
        where = f"--key-file {path!r}"
    elif stdin.isatty():
        import getpass

        raw = getpass.getpass("Key (not shown): ").encode()
        where = "the terminal"
    else:
        raw = (
            stdin.buffer.read(_MOST_READ + 1)
            if hasattr(stdin, "buffer")
            else stdin.read(_MOST_READ + 1).encode()
        )
        where = "standard input"
    if len(raw) > _MOST_READ:
        raise UsageError(f"{where} holds more than {_MOST_READ} bytes: that is not a key")
    token = raw.strip()
    if not token:
        raise UsageError(
            f"no key on {where}: pipe it in (keysentry keys verify < key.txt) or use --key-file"
        )
    return token


# -- running a command ---------------------------------------------------------------------------

#: What a command prints: the value for --json, the text for people, and optionally its exit
#: status (0 when absent).
Output = tuple[Any, str] | tuple[Any, str, int]


def run(
    ks: Keysentry,
    args: argparse.Namespace,
    out: TextIO,
    stdin: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run one ``keys`` command on ``ks``; ``stdin`` and ``stderr`` serve questions
    (``delete`` asks before it deletes)."""
    args.ask = _asker(stdin, stderr)
    result = _COMMANDS[args.keys_command](ks, args, utcnow())
    _print(args, out, result[0], result[1])
    return result[2] if len(result) == 3 else 0


def _print(args: argparse.Namespace, out: TextIO, payload: Any, text: str) -> None:
    if getattr(args, "json", False):
        out.write(json.dumps(payload, indent=2, default=str) + "\n")
    else:
        out.write(text.rstrip("\n") + "\n")
    out.flush()


def _asker(stdin: TextIO | None, stderr: TextIO | None) -> Callable[[str], bool]:
    def ask(question: str) -> bool:
        if stdin is None or stderr is None:
            return False
        stderr.write(question + " [y/N] ")
        stderr.flush()
        answer = stdin.readline()
        if not stdin.isatty():
            stderr.write("\n")  # the answer was not echoed: end the question's line
        return answer.strip().lower() in ("y", "yes")

    return ask


class Declined(Exception):
    """The operator answered no (or nothing) to a question: nothing was done."""


def key_id(ks: Keysentry, text: str) -> str:
    """The id an ID argument names: the id itself, or the prefix that listings and logs show
    (``sk_live_<id>``, with or without a trailing ``...``), checked against the key's."""
    shown = text.strip().removesuffix("...")
    head, sep, tail = shown.rpartition("_")
    if not (sep and head and len(tail) == KEY_ID_LENGTH and tail.isascii() and tail.isalnum()):
        return text
    try:
        record = ks.get(tail)
    except KeyNotFound:
        record = None
    if record is None or record.prefix != shown:
        raise KeyNotFound(f"no key with prefix {cell(shown, 64)!r}")
    return record.id


def _create(ks: Keysentry, args: argparse.Namespace, now: datetime) -> Output:
    issued = ks.issue(
        name=args.name,
        owner=args.owner,
        scopes=args.scopes or (),
        prefix=args.prefix,
        expires_at=_expiry(args, now),
        rate_limit=None if args.rate_limit == APP_DEFAULT else args.rate_limit,
        allowed_networks=args.allow_ip or (),
        credits=args.credits,
        metadata=args.metadata,
        refill=None if args.refill in (None, "none") else args.refill,
    )
    record, key = issued.record, issued.key.reveal()
    text = f"Created key {record.id}.\n\n{shown_once(key)}\n\n{record_fields(record, now)}"
    return {"key": key, **record_json(record, now)}, text


def _expiry(args: argparse.Namespace, now: datetime) -> datetime | None:
    if args.expires_in is not None:
        return now + args.expires_in  # type: ignore[no-any-return]
    return args.expires_at  # type: ignore[no-any-return]


def _list(ks: Keysentry, args: argparse.Namespace, now: datetime) -> Output:
    records, cursor = _collect(ks, args.owner, args.after, args.limit or MAX_LISTED)
    return _listing([_view(ks, r) for r in records], cursor, now)


def _listing(records: list[KeyRecord], cursor: str | None, now: datetime) -> tuple[Any, str]:
    payload = {"keys": [record_json(r, now) for r in records], "next": cursor}
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
    record = _view(ks, ks.get(key_id(ks, args.id)))
    text = record_fields(record, now)
    note = digest_note(record.digest_mode, ks.digest.mode)
    return record_json(record, now), text if note is None else f"{text}\n\nNote: {note}"


def _disable(ks: Keysentry, args: argparse.Namespace, now: datetime) -> Output:
    record = _view(ks, ks.disable(key_id(ks, args.id)))
    return record_json(record, now), (
        f"Disabled key {record.id} ({cell(record.prefix)}): its requests get 403 "
        f"API_KEY_DISABLED until `keysentry keys enable {record.id}`."
    )


def _enable(ks: Keysentry, args: argparse.Namespace, now: datetime) -> Output:
    record = _view(ks, ks.enable(key_id(ks, args.id)))
    return record_json(record, now), (
        f"Enabled key {record.id} ({cell(record.prefix)}); its status is {status(record, now)}."
    )


def _revoke(ks: Keysentry, args: argparse.Namespace, now: datetime) -> Output:
    record = _view(ks, ks.get(key_id(ks, args.id)))
    if record.revoked_at is not None:
        # Revoking again would move revoked_at: keep the time it really stopped working.
        return record_json(record, now), (
            f"Key {record.id} ({cell(record.prefix)}) was already revoked, at "
            f"{when(record.revoked_at)}."
        )
    record = _view(ks, ks.revoke(record.id))
    return record_json(record, now), (
        f"Revoked key {record.id} ({cell(record.prefix)}): its requests get 401 from now on."
    )


def _rotate(ks: Keysentry, args: argparse.Namespace, now: datetime) -> Output:
    old = ks.get(key_id(ks, args.id))
    if status(old, now) == "expired":
        # The successor inherits the expiry (rotation is not renewal): it would never work.
        raise ValueError(
            f"key {old.id} expired at {when(old.expires_at)}: a rotated key keeps its "
            "expiry, so create a new key instead"
        )
    issued = ks.rotate(old.id, grace=args.grace)
    new, key = _view(ks, issued.record), issued.key.reveal()
    old = _view(ks, ks.get(old.id))
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


def _update(ks: Keysentry, args: argparse.Namespace, now: datetime) -> Output:
    changes: dict[str, Any] = {}
    if args.name is not None:
        changes["name"] = args.name
    if args.owner is not None or args.no_owner:
        changes["owner"] = args.owner
    if args.scopes is not None or args.no_scopes:
        changes["scopes"] = args.scopes or ()
    if args.rate_limit is not None:
        changes["rate_limit"] = None if args.rate_limit == APP_DEFAULT else args.rate_limit
    if args.credits is not None or args.unmetered:
        changes["credits"] = args.credits
    if args.refill is not None:
        changes["refill"] = None if args.refill == "none" else args.refill
    if args.allow_ip is not None or args.any_ip:
        changes["allowed_networks"] = args.allow_ip or ()
    if args.metadata is not None:
        changes["metadata"] = args.metadata
    if args.expires_in is not None or args.expires_at is not None or args.never_expires:
        changes["expires_at"] = _expiry(args, now)
    record = _view(ks, ks.update(key_id(ks, args.id), **changes))
    named = ", ".join(sorted(changes)).replace("allowed_networks", "allowed networks")
    text = (
        f"Updated key {record.id} ({cell(record.prefix)}): {named.replace('_', ' ')}.\n\n"
        f"{record_fields(record, now)}"
    )
    return record_json(record, now), text


def _delete(ks: Keysentry, args: argparse.Namespace, now: datetime) -> Output:
    record = check_deletable(ks.get(key_id(ks, args.id)))  # before asking: refused anyway
    shown = f"{record.id} ({cell(record.prefix)}" + (
        f", {cell(record.name, 40)!r})" if record.name else ")"
    )
    if not args.yes and not args.ask(
        f"Delete key {shown} for good? Its requests get 401 and it cannot be restored."
    ):
        raise Declined(f"key {record.id} was not deleted (--yes deletes without asking)")
    record = _view(ks, ks.delete(record.id))
    return {**record_json(record, now), "status": "deleted"}, (
        f"Deleted key {shown}: it is gone from the store, and its requests get 401 from now on."
    )


def _verify(ks: Keysentry, args: argparse.Namespace, now: datetime) -> Output:
    # As an app reads an X-API-Key header, then decides as the middleware does.
    token = ks.settings.reader.bare(args.token)
    result = token if isinstance(token, Denial) else ks.authenticate(token)
    if isinstance(result, Denial):
        payload = {
            "valid": False,
            "code": result.code,
            "status": result.status,
            "message": result.message,
            "details": dict(result.details),
        }
        return payload, f"{result.code}: {result.message}", 1
    record = result.record
    identity = result.identity
    payload = {
        "valid": True,
        "id": identity.id,
        "prefix": identity.prefix,
        "name": identity.name,
        "owner": identity.owner,
        "scopes": sorted(identity.scopes),
        "expires_at": None if record.expires_at is None else record.expires_at.isoformat(),
    }
    text = f"valid: key {identity.id} ({cell(identity.prefix)})"
    later = per_request(record)
    if later:
        text += f"\nEach request is also checked for: {'; '.join(later)}."
    return payload, text


def _usage(ks: Keysentry, args: argparse.Namespace, now: datetime) -> Output:
    days = args.days
    if args.owner is not None:
        return _account_usage(ks, args.owner, days, now)
    record = ks.get(key_id(ks, args.id))
    history = ks.usage(record.id, days=days)
    payload = {"id": record.id, "prefix": record.prefix, **history_json(history)}
    text = (
        f"Requests of key {record.id} ({cell(record.prefix)}) per UTC day, the last {days}:"
        f"\n\n{history_table(history)}\n\nTotal: {history.total}"
    )
    return payload, text


def _account_usage(ks: Keysentry, owner: str, days: int, now: datetime) -> Output:
    history = ks.account_usage(owner, days=days)
    records, _ = _collect(ks, owner, None, MAX_LISTED)
    payload = {"owner": owner, **history_json(history), "keys": dict(history.keys)}
    if not history.keys:
        return payload, f"Owner {cell(owner, 64)!r} has no keys."
    shown = {r.id: r for r in records}
    rows = [
        [
            key,
            cell(shown[key].prefix) if key in shown else "-",
            cell(shown[key].name or "-", 24) if key in shown else "-",
            status(shown[key], now) if key in shown else "-",
            str(total),
        ]
        for key, total in history.keys.items()
    ]
    keys = table(["ID", "PREFIX", "NAME", "STATUS", "REQUESTS"], rows, right={4})
    text = (
        f"Requests of the {len(history.keys)} keys of owner {cell(owner, 64)!r} per UTC day, "
        f"the last {days}:\n\n{history_table(history)}\n\nTotal: {history.total}\n\n"
        f"Per key:\n\n{keys}"
    )
    return payload, text


def per_request(record: KeyRecord) -> list[str]:
    """What an app checks per request of this key beyond the key itself."""
    checks = []
    if record.allowed_networks:
        checks.append("its client address (" + ", ".join(map(str, record.allowed_networks)) + ")")
    if record.rate_limit:
        checks.append("its rate limit (" + ", ".join(map(str, record.rate_limit)) + ")")
    if record.credits is not None or record.credits_from is not None:
        checks.append("its credits")
    return checks


_COMMANDS: dict[str, Callable[[Keysentry, argparse.Namespace, datetime], Output]] = {
    "create": _create,
    "list": _list,
    "show": _show,
    "update": _update,
    "disable": _disable,
    "enable": _enable,
    "revoke": _revoke,
    "rotate": _rotate,
    "delete": _delete,
    "verify": _verify,
    "usage": _usage,
}

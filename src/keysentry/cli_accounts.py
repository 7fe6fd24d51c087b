"""``keysentry accounts``: show an account and change what it holds for all its keys.

A key's owner is its account (see :mod:`keysentry.accounts`). ``show`` prints the account (and
how many keys it has); ``disable``/``enable`` refuse or admit all its keys; ``credits`` sets
(or with ``--add`` raises) the balance its keys share and optionally its refill; ``limit``
sets the rate limit its keys share. Each is one call of the guard's account API, announced
like a key change; ``--json`` prints the account as one JSON object.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO

from .accounts import AccountRecord
from .cli_keys import UsageError, common_options, credit_count, rate_list, refill_spec
from .cli_output import cell, table, when
from .core import Keysentry

__all__ = ["account_json", "add_accounts_parser", "prepare", "run"]

#: The most keys ``show`` counts (it reads them page by page).
_COUNTED = 10_000


def _owner(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("an account's owner cannot be empty")
    return text


def _balance(text: str) -> int | None:
    """A number of credits as ``keys`` reads one, or ``none`` for no account balance."""
    return None if text.strip().lower() == "none" else credit_count(text)


def _limit(text: str) -> str:
    if text.strip().lower() != "none":
        rate_list(text)
    return text


def add_accounts_parser(commands: Any) -> None:
    """Add ``accounts`` and its commands to the ``keysentry`` parser's subcommands."""
    common = common_options()
    accounts = commands.add_parser(
        "accounts",
        parents=[common],
        help="show, disable, enable an account (a key's owner); set its credits and rate limit",
        description="Manage accounts: the owners of keys. An account's state applies to all "
        "its keys at once: disabled (403 ACCOUNT_DISABLED), a credit balance they share, "
        "a rate limit they share.",
    )
    sub = accounts.add_subparsers(dest="accounts_command", metavar="COMMAND", required=True)
    for name, text in (
        ("show", "show an account and how many keys it has"),
        ("disable", "refuse every key of the account (403 ACCOUNT_DISABLED)"),
        ("enable", "admit the account's keys again"),
    ):
        command = sub.add_parser(name, parents=[common], help=text, description=text + ".")
        command.add_argument("owner", metavar="OWNER", type=_owner, help="the keys' owner")
    credits = sub.add_parser(
        "credits",
        parents=[common],
        help="set the credit balance all the account's keys spend",
        description="Set the credit balance all the account's keys spend, instead of their "
        "own (each request costs 1, or its route's cost); 'none' gives each key its own "
        "balance back.",
    )
    credits.add_argument("owner", metavar="OWNER", type=_owner, help="the keys' owner")
    credits.add_argument(
        "credits", metavar="CREDITS", type=_balance, help="a whole number, or 'none'"
    )
    credits.add_argument(
        "--add",
        action="store_true",
        help="add CREDITS to the balance (atomically) instead of setting it",
    )
    credits.add_argument(
        "--refill",
        metavar="SPEC",
        type=refill_spec,
        default=argparse.SUPPRESS,
        help="top the balance up each day, week or month: '1000/month' sets it to 1000, "
        "'+100/day' adds 100; 'none' for no refill",
    )
    limit = sub.add_parser(
        "limit",
        parents=[common],
        help="set the rate limit all the account's keys share",
        description="Set the rate limit all the account's keys share, on top of each key's "
        "own: e.g. 100/minute or '10/second, 10000/day'; 'none' for no account limit.",
    )
    limit.add_argument("owner", metavar="OWNER", type=_owner, help="the keys' owner")
    limit.add_argument("rate_limit", metavar="RATE", type=_limit, help="e.g. 100/minute, or none")


def prepare(args: argparse.Namespace, stdin: TextIO) -> None:
    """What argparse cannot check, before the store is opened."""
    if args.accounts_command == "credits" and args.add and args.credits is None:
        raise UsageError("--add needs a number of credits, not 'none'")
    if args.accounts_command == "credits" and args.add and args.credits == 0:
        raise UsageError("--add needs at least 1 credit")


def account_json(owner: str, account: AccountRecord | None, keys: int | None) -> dict[str, Any]:
    """An account as ``--json`` prints it (``exists``: whether it has a record)."""
    found = account or AccountRecord(owner)
    return {
        "owner": owner,
        "exists": account is not None,
        "status": "disabled" if found.disabled else "active",
        "credits": found.credits,
        "rate_limit": [str(r) for r in found.rate_limit or ()],
        "refill": None if found.refill is None else str(found.refill),
        "refilled_at": None if found.refilled_at is None else found.refilled_at.isoformat(),
        "keys": keys,
    }


def _text(payload: dict[str, Any], note: str = "") -> str:
    refilled = payload["refilled_at"]
    rows = [
        ("owner", payload["owner"]),
        ("status", payload["status"] + ("" if payload["exists"] else " (no account record)")),
        ("credits", "the keys' own" if payload["credits"] is None else str(payload["credits"])),
        ("rate limit", ", ".join(payload["rate_limit"]) or "none (each key's own)"),
        ("refill", payload["refill"] or "none"),
        ("refilled at", when(None if refilled is None else datetime.fromisoformat(refilled))),
    ]
    if payload["keys"] is not None:
        rows.append(("keys", str(payload["keys"])))
    text = table(("", ""), [(name, cell(value)) for name, value in rows], set())
    text = text.split("\n", 1)[-1]  # the rows alone
    return (note + "\n" if note else "") + text


def _count(ks: Keysentry, owner: str) -> int:
    count, after = 0, None
    while count < _COUNTED:
        page = ks.list_keys(owner=owner, after=after, limit=1000)
        count += len(page)
        if len(page) < 1000:
            break
        after = page[-1].id
    return count


Output = tuple[dict[str, Any], str]


def _show(ks: Keysentry, args: argparse.Namespace) -> Output:
    payload = account_json(args.owner, ks.account(args.owner), _count(ks, args.owner))
    return payload, _text(payload)


def _disable(ks: Keysentry, args: argparse.Namespace) -> Output:
    payload = account_json(args.owner, ks.disable_account(args.owner), None)
    return payload, _text(payload, f"disabled account {args.owner!r}: its keys now get 403")


def _enable(ks: Keysentry, args: argparse.Namespace) -> Output:
    payload = account_json(args.owner, ks.enable_account(args.owner), None)
    return payload, _text(payload, f"enabled account {args.owner!r}")


def _credits(ks: Keysentry, args: argparse.Namespace) -> Output:
    changes: dict[str, Any] = {}
    if hasattr(args, "refill"):
        changes["refill"] = None if args.refill == "none" else args.refill
    if args.add:
        account = ks.add_account_credits(args.owner, args.credits)
        if changes:
            account = ks.update_account(args.owner, **changes)
        note = f"added {args.credits} credits to account {args.owner!r}"
    else:
        account = ks.update_account(args.owner, credits=args.credits, **changes)
        note = f"set the credits of account {args.owner!r}"
    payload = account_json(args.owner, account, None)
    return payload, _text(payload, note)


def _set_limit(ks: Keysentry, args: argparse.Namespace) -> Output:
    account = ks.update_account(args.owner, rate_limit=args.rate_limit)
    payload = account_json(args.owner, account, None)
    return payload, _text(payload, f"set the rate limit of account {args.owner!r}")


_COMMANDS: dict[str, Callable[[Keysentry, argparse.Namespace], Output]] = {
    "show": _show,
    "disable": _disable,
    "enable": _enable,
    "credits": _credits,
    "limit": _set_limit,
}


def run(ks: Keysentry, args: argparse.Namespace, out: TextIO) -> int:
    """Run one ``accounts`` command on ``ks``."""
    import json

    payload, text = _COMMANDS[args.accounts_command](ks, args)
    if getattr(args, "json", False):
        out.write(json.dumps(payload, indent=2) + "\n")
    else:
        out.write(text.rstrip("\n") + "\n")
    out.flush()
    return 0

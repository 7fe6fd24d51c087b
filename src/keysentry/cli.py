"""The ``keysentry`` command: its arguments, the guard it builds, and one-line errors.

``keysentry demo`` serves an example API (``demo.py``); ``keysentry keys ...`` manages keys on a
store (``cli_keys.py``), ``keysentry accounts ...`` their owners' accounts (``cli_accounts.py``).
Both build their guard with :func:`guard_from_env` (``cli_env.py``, re-exported here), so a key
created by the CLI verifies in the demo, or in any app that follows the same rule, on the same
store.

Exit status: 0 done, 1 the store or the key said no (unknown id, store unreachable, a change
the key's state forbids), 2 the command line itself was wrong. Errors are one line on stderr,
never a traceback.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from . import __version__
from ._urls import safe_url, scrub
from .cli_env import DEFAULT_STORE, INVALIDATOR_ENV, STORE_ENV, default_store, guard_from_env
from .core import Keysentry
from .errors import KeyNotFound, KeysentryError, StoreUnavailable
from .stores.base import KeyStore

__all__ = ["DEFAULT_STORE", "guard_from_env", "main"]

#: Seconds a store call of the CLI may take. Longer than an app's request-path default: an
#: operator may be far from the store, and nobody is waiting on a response.
CLI_TIMEOUT = 3.0


class _Parser(argparse.ArgumentParser):
    """argparse with errors on one line: ``keysentry keys create: error: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    from .cli_accounts import add_accounts_parser
    from .cli_keys import add_keys_parser

    parser = _Parser(
        prog="keysentry",
        description="API-key authentication for ASGI and WSGI apps: serve a demo, manage keys.",
    )
    parser.add_argument("--version", action="version", version=f"keysentry {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="serve a protected example API on 127.0.0.1 and print a key to try it"
    )
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    demo.add_argument("--port", type=int, default=8000, help="port to listen on, 0 for any (8000)")
    demo.add_argument(
        "--store",
        default=argparse.SUPPRESS,
        metavar="URL",
        help=f"key store URL: sqlite:///path, postgresql://..., redis://..., memory:// "
        f"(default: ${STORE_ENV} or {DEFAULT_STORE})",
    )
    demo.add_argument(
        "--rate-limit",
        metavar="RATE",
        type=_demo_rate,
        help="rate limit of the printed key, e.g. 5/minute or '10/second, 1000/day'",
    )
    demo.add_argument(
        "--invalidator",
        metavar="URL",
        help=f"Redis URL to hear key changes on (from `keysentry keys --invalidator`) at once "
        f"(default: ${INVALIDATOR_ENV})",
    )
    demo.add_argument(
        "--limiter",
        default="memory://",
        metavar="URL",
        help="rate-limit backend: memory://, redis://host:port/db, "
        "redis+cluster://host:port[,host:port...], redis+sentinel://host:port/service (memory://)",
    )
    add_keys_parser(commands)
    add_accounts_parser(commands)
    return parser


def _fail(status: int, message: str) -> int:
    print(f"keysentry: {message}", file=sys.stderr)
    return status


def _demo(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from .demo import run

    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    store_url = getattr(args, "store", None) or default_store()
    urls = [store_url, args.limiter, args.invalidator or os.environ.get(INVALIDATOR_ENV) or ""]
    try:
        run(
            host=args.host,
            port=args.port,
            store_url=store_url,
            rate_limit=args.rate_limit,
            limiter_url=args.limiter,
            invalidator_url=args.invalidator,
        )
    except (ValueError, ImportError) as exc:
        print(f"keysentry demo: {_masked(str(exc), *urls)}", file=sys.stderr)
        return 2
    except KeysentryError as exc:
        print(f"keysentry demo: {_masked(str(exc), *urls)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _demo_rate(text: str) -> str:
    """The demo key's rate limit, checked while parsing so that the message names the option."""
    from .cli_keys import rate_list

    rate_list(text)
    return text


def _keys(args: argparse.Namespace) -> int:
    from . import cli_accounts, cli_keys
    from .cli_keys import Declined, UsageError, empty_listing, missing_database, refuse_store

    group = args.command  # keys or accounts
    command = args.keys_command if group == "keys" else args.accounts_command
    stdin = sys.stdin if sys.stdin is not None else io.StringIO()
    try:
        if group == "keys":
            cli_keys.prepare(args, stdin)
        else:
            cli_accounts.prepare(args, stdin)
    except UsageError as exc:
        prog = f"keysentry {group} {command}"
        print(f"{prog}: error: {exc} (see {prog} --help)", file=sys.stderr)
        return 2
    url = getattr(args, "store", None) or default_store()
    invalidator = getattr(args, "invalidator", None) or os.environ.get(INVALIDATOR_ENV) or ""
    shown = safe_url(url)
    refused = refuse_store(url, command)
    if refused is not None:
        status, reason = refused
        return _fail(status, f"store {shown}: {_masked(reason, url)}")
    missing = missing_database(url)
    if group == "keys" and command == "list" and missing is not None:
        # A new directory has no keys yet: an empty table, and no file made by listing.
        print(
            f"keysentry: note: store {shown}: no database file {missing!r} yet "
            "(keysentry keys create makes one)",
            file=sys.stderr,
        )
        return empty_listing(args, sys.stdout)
    _one_line_logs()
    try:
        ks = guard_from_env(
            url,
            store_options={"timeout": CLI_TIMEOUT},
            invalidator_url=invalidator or None,
            usage_interval=None,
        )
    except (ValueError, ImportError) as exc:
        return _fail(2, _masked(str(exc), url, invalidator))
    try:
        if group == "accounts":
            return cli_accounts.run(ks, args, sys.stdout)
        return cli_keys.run(ks, args, sys.stdout, stdin, sys.stderr)
    except (KeyNotFound, Declined) as exc:
        return _fail(1, str(exc))
    except StoreUnavailable as exc:
        return _fail(1, f"store {shown} is unavailable: {_masked(str(exc), url, invalidator)}")
    except (KeysentryError, ValueError) as exc:
        # The store is fine, the key's state forbids the change (rotating a revoked key...).
        return _fail(1, _masked(str(exc), url, invalidator))
    finally:
        _close(ks)


class _OneLine(logging.Formatter):
    """The library's warnings (a change that could not be announced) as one line, no trace."""

    def format(self, record: logging.LogRecord) -> str:
        return f"keysentry: warning: {record.getMessage()}"


def _one_line_logs() -> None:
    logger = logging.getLogger("keysentry")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_OneLine())
        logger.addHandler(handler)
        logger.propagate = False


def _close(ks: Keysentry) -> None:
    if ks.invalidator is not None:
        ks.invalidator.close()
    store = ks.store
    try:
        if isinstance(store, KeyStore):
            store.close()
    except KeysentryError:
        pass  # nothing was pending: every command's writes are done, or failed and said so


def _masked(message: str, *urls: str) -> str:
    """``message`` on one line, without the URLs' secrets should a driver or parser quote
    them (whole, or the part of a password it took for a port)."""
    lines = message.strip().splitlines()
    message = lines[0] if lines else ""
    for url in urls:
        message = scrub(message, url)
    return message


def _with_values(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """``argv`` with each option's value that starts with ``-`` and a digit joined to it
    (``--rate-limit -5/minute`` -> ``--rate-limit=-5/minute``): argparse would take the value
    for an option and answer "expected one argument"; joined, the option's own check names
    what is wrong with it."""
    takes_value: set[str] = set()
    parsers = [parser]
    while parsers:
        for action in parsers.pop()._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
            elif action.nargs != 0:
                takes_value.update(o for o in action.option_strings if o.startswith("--"))
    joined: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--":
            joined += [word, *words]
            break
        joined.append(word)
        if word in takes_value:
            value = next(words, None)
            if value is None:
                break
            if len(value) > 1 and value[0] == "-" and (value[1].isdigit() or value[1] == "."):
                joined[-1] = f"{word}={value}"
            else:
                joined.append(value)
    return joined


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(_with_values(parser, sys.argv[1:] if argv is None else argv))
    try:
        if args.command == "demo":
            return _demo(parser, args)
        if args.command in ("keys", "accounts"):
            return _keys(args)
    except BrokenPipeError:
        # `keysentry keys list | head`: the reader left; say nothing more, on a closed stdout.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())

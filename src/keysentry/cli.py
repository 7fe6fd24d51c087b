"""The ``keysentry`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import __version__
from .demo import DEFAULT_STORE
from .errors import KeysentryError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keysentry", description="API-key authentication for ASGI and WSGI apps."
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
        default=os.environ.get("KEYSENTRY_STORE", DEFAULT_STORE),
        metavar="URL",
        help=f"key store URL: sqlite:///path, postgresql://..., redis://..., memory:// "
        f"(default: $KEYSENTRY_STORE or {DEFAULT_STORE})",
    )
    demo.add_argument(
        "--rate-limit",
        metavar="RATE",
        help="rate limit of the printed key, e.g. 5/minute or '10/second, 1000/day'",
    )
    demo.add_argument(
        "--limiter",
        default="memory://",
        metavar="URL",
        help="rate-limit backend: memory:// or redis://host:port/db (memory://)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run

        if not 0 <= args.port <= 65535:
            parser.error("--port must be between 0 and 65535")
        try:
            run(
                host=args.host,
                port=args.port,
                store_url=args.store,
                rate_limit=args.rate_limit,
                limiter_url=args.limiter,
            )
        except (ValueError, ImportError) as exc:
            print(f"keysentry demo: {exc}", file=sys.stderr)
            return 2
        except KeysentryError as exc:
            print(f"keysentry demo: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            pass
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""``python manage.py keysentry``: the ``keysentry keys`` commands on the project's keys, and
the import of djangorestframework-api-key's.

``keys create|list|show|update|disable|enable|revoke|rotate|delete|verify`` take the options
and print what the ``keysentry`` command does (``cli_keys.py``: the same parser, the same
lifecycle calls, the same ``--json``), on the guard of ``settings.KEYSENTRY``: its database,
its secret, its invalidator (so every change is announced to the running processes).

``import-drf-api-keys`` copies djangorestframework-api-key's rows so that the keys clients
hold keep working (see ``keysentry/django/drf_api_key.py``); running it again skips the rows
it imported before.

Exit status: 0 done, 1 the store or the key said no, 2 the command line was wrong.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ....cli_keys import Declined, UsageError, add_keys_parser, prepare, run
from ....cli_output import record_json, table
from ....errors import KeyNotFound, KeysentryError, StoreUnavailable
from ....records import utcnow
from ...conf import SETTING, integration
from ...drf_api_key import DEFAULT_MODEL, import_keys

IMPORT = "import-drf-api-keys"


class Command(BaseCommand):
    help = "Manage the project's API keys (keysentry), or import djangorestframework-api-key's."

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
        add_keys_parser(
            commands,
            connection=False,
            description=f"Manage the project's API keys, in the database and with the secret "
            f"of settings.{SETTING}.",
        )
        imports = commands.add_parser(
            IMPORT,
            help="import djangorestframework-api-key's keys, so that clients keep theirs",
            description="Copy the rows of djangorestframework-api-key (name, prefix, stored "
            "hash, revoked, expiry). Each key keeps working: it is verified against its stored "
            "hash on first use and then digested as keysentry digests keys. Rows imported "
            f"before are skipped. Needs settings.{SETTING}['DRF_API_KEYS'] = True.",
        )
        imports.add_argument(
            "--model",
            default=DEFAULT_MODEL,
            metavar="APP_LABEL.MODEL",
            help=f"the API key model to read, a subclass of AbstractAPIKey ({DEFAULT_MODEL})",
        )
        imports.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args: Any, **options: Any) -> None:
        namespace = argparse.Namespace(**options)
        if options["command"] == IMPORT:
            self._import(namespace)
            return
        stdin = sys.stdin if sys.stdin is not None else io.StringIO()
        try:
            prepare(namespace, stdin)
        except UsageError as exc:
            raise CommandError(str(exc), returncode=2) from None
        ks = integration().keysentry
        try:
            status = run(ks, namespace, self.stdout, stdin, self.stderr)  # type: ignore[arg-type]
        except (KeyNotFound, Declined) as exc:
            raise CommandError(str(exc), returncode=1) from None
        except StoreUnavailable as exc:
            raise CommandError(f"the key store is unavailable: {exc}", returncode=1) from None
        except (KeysentryError, ValueError) as exc:
            raise CommandError(str(exc), returncode=1) from None
        if status:
            raise SystemExit(status)

    def _import(self, args: argparse.Namespace) -> None:
        found = integration()
        if found.drf_keys is None:
            raise CommandError(
                f"set settings.{SETTING}['DRF_API_KEYS'] = True first: without it the "
                "imported keys would be refused as malformed",
                returncode=2,
            )
        try:
            result = import_keys(found.store, args.model)
        except LookupError as exc:
            raise CommandError(
                f"{exc}: add rest_framework_api_key to INSTALLED_APPS while importing", returncode=2
            ) from None
        except StoreUnavailable as exc:
            raise CommandError(f"the key store is unavailable: {exc}", returncode=1) from None
        now = utcnow()
        if args.json:
            payload = {
                "imported": [record_json(r, now) for r in result.imported],
                "skipped": result.skipped,
            }
            self.stdout.write(json.dumps(payload, indent=2))
            return
        rows = [[r.id, r.prefix, r.name or "-"] for r in result.imported]
        if rows:
            self.stdout.write(table(["ID", "PREFIX", "NAME"], rows, right=set()))
        self.stdout.write(
            f"Imported {len(result.imported)} key(s) from {args.model}; "
            f"{len(result.skipped)} imported before, skipped. Each verifies against its "
            "stored hash on first use, then as keysentry's."
        )

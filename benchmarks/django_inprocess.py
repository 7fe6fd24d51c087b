"""Per-request cost of keysentry's Django middleware and of the Django API-key setups it
replaces, in process, no sockets.

Each variant is Django's own WSGI handler (its middleware chain built from the variant's
``MIDDLEWARE``) called with a prebuilt environ, one route per variant, timed round-robin as
``inprocess.py`` times its variants (whose helpers this script uses). Overheads are medians
minus the median of the bare view they wrap:

* ``django-bare``: a plain Django view, no middleware; ``drf-bare``: a DRF ``APIView`` with
  no authentication and ``AllowAny``;
* ``drf-apikey``: djangorestframework-api-key's ``HasAPIKey`` (a query by prefix and a SHA-512
  per request, on a SQLite file with a persistent connection);
* ``drf-apikey-throttle``: the same and a ``SimpleRateThrottle`` keyed by the key's prefix
  (DRF's ``UserRateThrottle`` pattern), on Django's local-memory cache;
* ``drf-keysentry-memory``: keysentry's middleware, ``APIKeyAuthentication`` and ``HasAPIKey``
  with the memory limiter (RateLimit fields on every response);
* ``django-keysentry`` / ``django-keysentry-memory``: the middleware alone over a plain view,
  without and with the memory limiter.

    uv run python benchmarks/django_inprocess.py [--rounds 20] [--batch 2000] [--json out.json]
"""

import argparse
import asyncio
import io
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import django
from django.conf import settings

from inprocess import Variant, environment, measure

WORKDIR = Path(tempfile.mkdtemp(prefix="keysentry-django-bench-"))
SECRET = "benchmark-secret-0123456789abcdef"
HIGH_LIMIT = "1000000/minute"
KEYSENTRY_MIDDLEWARE = "keysentry.django.middleware.KeysentryMiddleware"
#: keysentry's overhead against each alternative's, in the same run.
VERSUS = [
    ("drf-keysentry-memory", "drf-apikey"),
    ("drf-keysentry-memory", "drf-apikey-throttle"),
    ("django-keysentry-memory", "drf-apikey"),
    ("django-keysentry-memory", "drf-apikey-throttle"),
]
PACKAGES = ["django", "djangorestframework", "djangorestframework-api-key"]

settings.configure(
    DEBUG=False,
    SECRET_KEY="benchmark-only",
    ALLOWED_HOSTS=["*"],
    USE_TZ=True,
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "rest_framework",
        "rest_framework_api_key",
        "keysentry.django",
    ],
    MIDDLEWARE=[],
    DATABASES={
        # Persistent connections: no new one per request (the default, CONN_MAX_AGE=0,
        # would cost djangorestframework-api-key's query a connection each time).
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(WORKDIR / "db.sqlite3"),
            "CONN_MAX_AGE": None,
        }
    },
    CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
    REST_FRAMEWORK={
        "DEFAULT_AUTHENTICATION_CLASSES": [],
        "DEFAULT_PERMISSION_CLASSES": [],
        "UNAUTHENTICATED_USER": None,
        "DEFAULT_THROTTLE_RATES": {"apikey": HIGH_LIMIT},
    },
    KEYSENTRY={"SECRET": SECRET, "LIMITER": "memory://"},
)
django.setup()

from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from rest_framework.permissions import AllowAny  # noqa: E402
from rest_framework.request import Request  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.throttling import SimpleRateThrottle  # noqa: E402
from rest_framework.views import APIView  # noqa: E402
from rest_framework_api_key.models import APIKey as DRFAPIKey  # noqa: E402
from rest_framework_api_key.permissions import HasAPIKey as DRFHasAPIKey  # noqa: E402

from keysentry.django import drf as keysentry_drf  # noqa: E402
from keysentry.django.conf import guard  # noqa: E402

# -- the views -----------------------------------------------------------------------------------


def bare(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


class DRFBare(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


class DRFAPIKeyView(DRFBare):
    permission_classes = [DRFHasAPIKey]


class KeyPrefixThrottle(SimpleRateThrottle):
    """DRF's UserRateThrottle pattern, keyed by the API key's public prefix."""

    scope = "apikey"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        prefix = header.partition(" ")[2].partition(".")[0]
        return self.cache_format % {"scope": self.scope, "ident": prefix} if prefix else None


class DRFAPIKeyThrottled(DRFAPIKeyView):
    throttle_classes = [KeyPrefixThrottle]


class DRFKeysentry(DRFBare):
    authentication_classes = [keysentry_drf.APIKeyAuthentication]
    permission_classes = [keysentry_drf.HasAPIKey]


urlpatterns = [
    path("bare", bare),
    path("drf-bare", DRFBare.as_view()),
    path("drf-apikey", DRFAPIKeyView.as_view()),
    path("drf-apikey-throttle", DRFAPIKeyThrottled.as_view()),
    path("drf-keysentry", DRFKeysentry.as_view()),
]

# -- the variants --------------------------------------------------------------------------------


def environ(route: str, authorization: str | None) -> dict[str, Any]:
    found = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": f"/{route}",
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
    }
    if authorization is not None:
        found["HTTP_AUTHORIZATION"] = authorization
    return found


def handler(*middleware: str) -> WSGIHandler:
    """Django's WSGI handler with this middleware chain (read when the handler is made)."""
    settings.MIDDLEWARE = list(middleware)
    return WSGIHandler()


def build() -> list[Variant]:
    call_command("migrate", verbosity=0)
    _, drf_key = DRFAPIKey.objects.create_key(name="bench")
    ks = guard()
    limited = ks.issue(name="bench", rate_limit=HIGH_LIMIT).key.reveal()
    unlimited = ks.issue(name="bench-auth-only").key.reveal()
    plain, protected = handler(), handler(KEYSENTRY_MIDDLEWARE)

    def variant(name: str, app: Any, route: str, auth: str | None, base: str | None) -> Variant:
        return Variant(name, "wsgi", app, environ(route, auth), 200, base)

    return [
        variant("django-bare", plain, "bare", None, None),
        variant("drf-bare", plain, "drf-bare", None, None),
        variant("drf-apikey", plain, "drf-apikey", f"Api-Key {drf_key}", "drf-bare"),
        variant(
            "drf-apikey-throttle", plain, "drf-apikey-throttle", f"Api-Key {drf_key}", "drf-bare"
        ),
        variant(
            "drf-keysentry-memory", protected, "drf-keysentry", f"Bearer {limited}", "drf-bare"
        ),
        variant("django-keysentry", protected, "bare", f"Bearer {unlimited}", "django-bare"),
        variant("django-keysentry-memory", protected, "bare", f"Bearer {limited}", "django-bare"),
    ]


def check(variants: list[Variant]) -> None:
    """Every variant answers as it must, before anything is timed."""
    from inprocess import wsgi_status

    for v in variants:
        got = wsgi_status(v.app, v.request)
        if got != v.status:
            raise SystemExit(f"{v.name} answered {got}, not {v.status}")


def overhead(by_name: dict[str, Variant], name: str) -> float:
    v = by_name[name]
    assert v.bare is not None
    return v.median - by_name[v.bare].median


def report(variants: list[Variant], args: argparse.Namespace) -> dict[str, Any]:
    by_name = {v.name: v for v in variants}
    print("| variant | median µs/req | p25-p75 µs | overhead µs |")
    print("|---|---:|---:|---:|")
    rows = []
    for v in variants:
        p25, _, p75 = statistics.quantiles(v.samples, n=4) if len(v.samples) > 1 else (0, 0, 0)
        extra = overhead(by_name, v.name) if v.bare else None
        shown = "—" if extra is None else f"{extra:+.2f} vs {v.bare}"
        print(f"| {v.name} | {v.median:.2f} | {p25:.2f}-{p75:.2f} | {shown} |")
        rows.append({"name": v.name, "bare": v.bare, "median_us": v.median, "overhead_us": extra})
    found = {f"overhead {a} / {b}": overhead(by_name, a) / overhead(by_name, b) for a, b in VERSUS}
    print("\n| ratio | value |\n|---|---:|")
    for label, value in found.items():
        print(f"| {label} | {value:.2f} |")
    return {"settings": vars(args), "variants": rows, "ratios": found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds (default 20)")
    parser.add_argument("--batch", type=int, default=2000, help="requests per batch (2000)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()

    variants = build()
    check(variants)
    versions = environment(PACKAGES)
    print(f"{args.rounds} rounds x {args.batch} requests per variant, round-robin\n")
    loop = asyncio.new_event_loop()
    measure(loop, variants, args.rounds, lambda v: args.batch, gc_off=True)
    loop.close()
    results = report(variants, args)
    guard().close()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"versions": versions, **results}, f, indent=2)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()

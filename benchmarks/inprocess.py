"""Per-request cost of keysentry and of the API-key setups it replaces, in process, no sockets.

Every variant is one app with one route, ``GET /``, called directly: ASGI apps with a prebuilt
scope and trivial ``receive``/``send`` inside one event loop, WSGI apps with a prebuilt environ
and a no-op ``start_response``. Variants are timed round-robin, one batch each per round; the
result is the median over rounds of µs per request, and the overhead of a protected variant is
its median minus the median of the bare app it wraps.

    uv run python benchmarks/inprocess.py [--rounds 20] [--batch 2000] [--json out.json]
    uv run python benchmarks/inprocess.py --profile starlette-keysentry
"""

import argparse
import asyncio
import cProfile
import gc
import hashlib
import json
import os
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, Security
from fastapi.security import APIKeyHeader
from flask import Flask
from flask import request as flask_request
from flask_limiter import Limiter as FlaskLimiter
from flask_limiter.util import get_remote_address as flask_remote_address
from slowapi import Limiter as SlowLimiter
from slowapi import _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from slowapi.util import get_remote_address
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    SimpleUser,
)
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from werkzeug.test import EnvironBuilder

from keysentry import ASGIMiddleware, Keysentry, MemoryStore, WSGIMiddleware
from keysentry.ratelimit import MemoryLimiter

SECRET = "benchmark-secret-0123456789abcdef"
HIGH_LIMIT = "1000000/minute"
#: Pairs whose overheads (median minus the bare app's) are compared.
VERSUS = [
    ("starlette-keysentry", "starlette-authmw"),
    ("starlette-keysentry-memory", "starlette-authmw"),
    ("starlette-keysentry", "fastapi-apikey-slowapi"),
    ("starlette-keysentry-memory", "fastapi-apikey-slowapi"),
    ("flask-keysentry", "flask-before"),
    ("flask-keysentry-memory", "flask-before"),
    ("flask-keysentry", "flask-before-limiter"),
    ("flask-keysentry-memory", "flask-before-limiter"),
]
#: Pairs whose whole per-request costs are compared: a rejected request against a valid one.
REJECTED = [
    ("starlette-keysentry-garbage", "starlette-keysentry"),
    ("flask-keysentry-garbage", "flask-keysentry"),
    ("starlette-authmw-unknown", "starlette-authmw"),
    ("fastapi-apikey-slowapi-unknown", "fastapi-apikey-slowapi"),
    ("flask-before-limiter-unknown", "flask-before-limiter"),
]
PACKAGES = ["starlette", "fastapi", "slowapi", "flask", "werkzeug", "flask-limiter", "limits"]

# -- the apps ------------------------------------------------------------------------------------


def sha256_hex(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class DigestBackend(AuthenticationBackend):
    """The hand-rolled Starlette check: ``Bearer <key>``, SHA-256 hex digest, dict lookup."""

    def __init__(self, digests: dict[str, str]) -> None:
        self.digests = digests

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser]:
        scheme, _, key = conn.headers.get("authorization", "").partition(" ")
        name = self.digests.get(sha256_hex(key)) if scheme.lower() == "bearer" else None
        if name is None:
            raise AuthenticationError("invalid API key")
        return AuthCredentials(["authenticated"]), SimpleUser(name)


def unauthorized(conn: HTTPConnection, exc: AuthenticationError) -> PlainTextResponse:
    return PlainTextResponse(str(exc), status_code=401)


def starlette_app(*middleware: Middleware) -> Starlette:
    async def root(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/", root)], middleware=list(middleware))


def fastapi_bare() -> FastAPI:
    app = FastAPI()

    @app.get("/")
    async def root() -> dict[str, bool]:
        return {"ok": True}

    return app


def fastapi_protected(
    digests: dict[str, str],
    limit: str,
    storage_uri: str = "memory://",
    storage_options: dict[str, Any] | None = None,
) -> tuple[FastAPI, SlowLimiter]:
    """APIKeyHeader dependency plus slowapi's route decorator, as the slowapi docs show.

    ``storage_options`` go to the ``limits`` storage, e.g. ``{"key_prefix": ...}`` for Redis.
    """
    limiter = SlowLimiter(
        key_func=get_remote_address,
        storage_uri=storage_uri,
        storage_options=storage_options or {},
    )
    app = FastAPI()
    app.state.limiter = limiter
    app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
    header = APIKeyHeader(name="X-API-Key", auto_error=False)

    async def api_key(key: str | None = Security(header)) -> str:
        name = digests.get(sha256_hex(key)) if key else None
        if name is None:
            raise HTTPException(status_code=401, detail="invalid API key")
        return name

    @app.get("/")
    @limiter.limit(limit)
    async def root(request: Request, owner: str = Depends(api_key)) -> dict[str, bool]:
        return {"ok": True}

    return app, limiter


def flask_bare() -> Flask:
    app = Flask(__name__)

    @app.get("/")
    def root() -> dict[str, bool]:
        return {"ok": True}

    return app


def require_key(app: Flask, digests: dict[str, str]) -> None:
    """The hand-rolled Flask check: a ``before_request`` hook, SHA-256 digest in a dict."""

    @app.before_request
    def check_key() -> tuple[dict[str, str], int] | None:
        scheme, _, key = flask_request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or sha256_hex(key) not in digests:
            return {"error": "invalid API key"}, 401
        return None


def flask_before(digests: dict[str, str]) -> Flask:
    """The hand-rolled Flask check alone, no limiter."""
    app = Flask(__name__)
    require_key(app, digests)

    @app.get("/")
    def root() -> dict[str, bool]:
        return {"ok": True}

    return app


def flask_protected(
    digests: dict[str, str],
    limit: str,
    storage_uri: str = "memory://",
    storage_options: dict[str, Any] | None = None,
) -> tuple[Flask, FlaskLimiter]:
    """A ``before_request`` key check (registered first, so it runs first) plus Flask-Limiter."""
    app = Flask(__name__)
    require_key(app, digests)

    limiter = FlaskLimiter(
        flask_remote_address,
        app=app,
        storage_uri=storage_uri,
        storage_options=storage_options or {},
    )

    @app.get("/")
    @limiter.limit(limit)
    def root() -> dict[str, bool]:
        return {"ok": True}

    return app, limiter


# -- calling them --------------------------------------------------------------------------------


def asgi_scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    # No "state" key: a shared state dict would leak between the per-call copies of the scope.
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"api.example.com"), (b"accept", b"*/*"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


def wsgi_environ(headers: dict[str, str]) -> dict[str, Any]:
    builder = EnvironBuilder(
        path="/",
        headers={"Host": "api.example.com", "Accept": "*/*", **headers},
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )
    return builder.get_environ()


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: dict[str, Any]) -> None:
    pass


async def asgi_batch(app: Any, scope: dict[str, Any], n: int) -> None:
    for _ in range(n):
        await app(dict(scope), receive, send)


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
    pass


def wsgi_batch(app: Any, environ: dict[str, Any], n: int) -> None:
    for _ in range(n):
        body = app(environ.copy(), start_response)
        for _chunk in body:
            pass
        if hasattr(body, "close"):
            body.close()


async def asgi_status(app: Any, scope: dict[str, Any]) -> int:
    seen: list[int] = []

    async def capture(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            seen.append(message["status"])

    await app(dict(scope), receive, capture)
    return seen[0]


def wsgi_status(app: Any, environ: dict[str, Any]) -> int:
    seen: list[int] = []

    def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen.append(int(status.split()[0]))

    body = app(environ.copy(), capture)
    for _chunk in body:
        pass
    if hasattr(body, "close"):
        body.close()
    return seen[0]


# -- the variants --------------------------------------------------------------------------------


@dataclass
class Variant:
    name: str
    kind: str  # "asgi" or "wsgi"
    app: Any
    request: dict[str, Any]  # the scope or the environ
    status: int  # what it must answer
    bare: str | None = None  # the variant whose median is subtracted
    samples: list[float] = field(default_factory=list)  # µs per request, one per round

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def make(
    name: str, app: Any, header: str, value: str, status: int = 200, bare: str | None = None
) -> Variant:
    """A variant sending ``header: value``; Flask apps are called as WSGI, the rest as ASGI."""
    if isinstance(app, Flask):
        return Variant(name, "wsgi", app, wsgi_environ({header: value}), status, bare)
    scope = asgi_scope([(header.lower().encode(), value.encode())])
    return Variant(name, "asgi", app, scope, status, bare)


def build(loop: asyncio.AbstractEventLoop) -> list[Variant]:
    ks = Keysentry(MemoryStore(), secret=SECRET)
    key = ks.issue(name="bench").key.reveal()
    # One character of the secret part changed: well-formed, but the checksum no longer matches.
    i = len(key) - 12
    garbage = key[:i] + ("A" if key[i] != "A" else "B") + key[i + 1 :]
    digests = {sha256_hex(key): "bench"}

    auth_mw = Middleware(
        AuthenticationMiddleware, backend=DigestBackend(digests), on_error=unauthorized
    )
    starlette_auth = starlette_app(auth_mw)
    starlette_ks = starlette_app(Middleware(ASGIMiddleware, keysentry=ks))
    fastapi_slow, slow = fastapi_protected(digests, HIGH_LIMIT)
    flask_limited, flimiter = flask_protected(digests, HIGH_LIMIT)
    flask_ks = flask_bare()
    flask_ks.wsgi_app = WSGIMiddleware(flask_ks.wsgi_app, ks)  # type: ignore[method-assign]
    # The same key on a guard with the memory limiter (a limit never reached, RateLimit fields
    # on every response).
    limited = Keysentry(ks.store, secret=SECRET, limiter=MemoryLimiter(), rate_limit=HIGH_LIMIT)
    starlette_ks_memory = starlette_app(Middleware(ASGIMiddleware, keysentry=limited))
    flask_ks_memory = flask_bare()
    flask_ks_memory.wsgi_app = WSGIMiddleware(flask_ks_memory.wsgi_app, limited)  # type: ignore[method-assign]

    auth, x_key = "Authorization", "X-API-Key"
    ok, bad = f"Bearer {key}", f"Bearer {garbage}"
    variants = [
        make("starlette", starlette_app(), auth, ok),
        make("starlette-authmw", starlette_auth, auth, ok, 200, "starlette"),
        make("starlette-authmw-unknown", starlette_auth, auth, bad, 401, "starlette"),
        make("starlette-keysentry", starlette_ks, auth, ok, 200, "starlette"),
        make("starlette-keysentry-garbage", starlette_ks, auth, bad, 401, "starlette"),
        make("starlette-keysentry-memory", starlette_ks_memory, auth, ok, 200, "starlette"),
        make("fastapi", fastapi_bare(), x_key, key),
        make("fastapi-apikey-slowapi", fastapi_slow, x_key, key, 200, "fastapi"),
        make("fastapi-apikey-slowapi-unknown", fastapi_slow, x_key, garbage, 401, "fastapi"),
        make("flask", flask_bare(), auth, ok),
        make("flask-before", flask_before(digests), auth, ok, 200, "flask"),
        make("flask-before-limiter", flask_limited, auth, ok, 200, "flask"),
        make("flask-before-limiter-unknown", flask_limited, auth, bad, 401, "flask"),
        make("flask-keysentry", flask_ks, auth, ok, 200, "flask"),
        make("flask-keysentry-garbage", flask_ks, auth, bad, 401, "flask"),
        make("flask-keysentry-memory", flask_ks_memory, auth, ok, 200, "flask"),
    ]
    check(loop, variants, slow, flimiter, digests, key)
    return variants


def check(
    loop: asyncio.AbstractEventLoop,
    variants: list[Variant],
    slow: SlowLimiter,
    flimiter: FlaskLimiter,
    digests: dict[str, str],
    key: str,
) -> None:
    """Refuse to time a setup that does not answer as it should, or whose limiter is idle."""
    for v in variants:
        got = status_of(loop, v)
        assert got == v.status, f"{v.name}: expected {v.status}, got {got}"

    # The limiters count every request of the timed apps...
    counted = {"fastapi-apikey-slowapi": slow._storage, "flask-before-limiter": flimiter.storage}
    for v in variants:
        if v.name in counted:
            counter = counted[v.name].storage  # type: ignore[attr-defined]
            before = sum(counter.values())
            for _ in range(3):
                status_of(loop, v)
            assert sum(counter.values()) == before + 3, f"{v.name}: the limiter did not count"
    # ...and the same wiring with a tiny limit refuses the third request.
    tiny_fastapi, _ = fastapi_protected(digests, "2/minute")
    tiny_flask, _ = flask_protected(digests, "2/minute")
    tiny = [
        make("fastapi, limit 2/minute", tiny_fastapi, "X-API-Key", key),
        make("flask, limit 2/minute", tiny_flask, "Authorization", f"Bearer {key}"),
    ]
    for v in tiny:
        statuses = [status_of(loop, v) for _ in range(3)]
        assert statuses == [200, 200, 429], f"{v.name} answered {statuses}"
    # keysentry's limited variants send RateLimit fields, and its own tiny limit refuses too.
    for v in variants:
        if v.name.endswith("keysentry-memory"):
            assert "ratelimit" in headers_of(loop, v), f"{v.name}: no RateLimit fields"
    tiny_ks = Keysentry(
        MemoryStore(), secret=SECRET, limiter=MemoryLimiter(), rate_limit="2/minute"
    )
    tiny_key = tiny_ks.issue(name="tiny").key.reveal()
    app = starlette_app(Middleware(ASGIMiddleware, keysentry=tiny_ks))
    v = make("keysentry, limit 2/minute", app, "Authorization", f"Bearer {tiny_key}")
    statuses = [status_of(loop, v) for _ in range(3)]
    assert statuses == [200, 200, 429], f"{v.name} answered {statuses}"


def headers_of(loop: asyncio.AbstractEventLoop, v: Variant) -> set[str]:
    """Names of the response headers, lowercase."""
    if v.kind == "wsgi":
        seen_wsgi: list[str] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            seen_wsgi.extend(k.lower() for k, _ in headers)

        body = v.app(v.request.copy(), capture)
        for _chunk in body:
            pass
        if hasattr(body, "close"):
            body.close()
        return set(seen_wsgi)
    seen: list[str] = []

    async def collect(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            seen.extend(k.decode().lower() for k, _ in message["headers"])

    loop.run_until_complete(v.app(dict(v.request), receive, collect))
    return set(seen)


def status_of(loop: asyncio.AbstractEventLoop, v: Variant) -> int:
    if v.kind == "asgi":
        return loop.run_until_complete(asgi_status(v.app, v.request))
    return wsgi_status(v.app, v.request)


def run_batch(loop: asyncio.AbstractEventLoop, v: Variant, n: int, gc_off: bool) -> float:
    """µs per request over ``n`` requests."""
    gc.collect()
    if gc_off:
        gc.disable()
    try:
        start = time.perf_counter_ns()
        if v.kind == "asgi":
            loop.run_until_complete(asgi_batch(v.app, v.request, n))
        else:
            wsgi_batch(v.app, v.request, n)
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()
    return elapsed / n / 1000 if n else 0.0


def measure(
    loop: asyncio.AbstractEventLoop,
    variants: list[Variant],
    rounds: int,
    batch: Callable[[Variant], int],
    gc_off: bool,
) -> None:
    """A warm-up batch each, then ``rounds`` rounds of one batch each, the order rotating."""
    for v in variants:  # warm-up: imports, caches, the keysentry cache entry
        run_batch(loop, v, batch(v) // 4, gc_off=gc_off)
    for r in range(rounds):
        for v in variants[r % len(variants) :] + variants[: r % len(variants)]:
            v.samples.append(run_batch(loop, v, batch(v), gc_off=gc_off))


# -- reporting -----------------------------------------------------------------------------------


def overhead(by_name: dict[str, Variant], name: str) -> float:
    v = by_name[name]
    assert v.bare is not None
    return v.median - by_name[v.bare].median


def ratios(by_name: dict[str, Variant]) -> dict[str, float]:
    """keysentry's overhead against each alternative's, and rejected against valid requests."""
    found = {f"overhead {a} / {b}": overhead(by_name, a) / overhead(by_name, b) for a, b in VERSUS}
    for a, b in REJECTED:
        found[f"µs/request {a} / {b}"] = by_name[a].median / by_name[b].median
    return found


def report(variants: list[Variant], args: argparse.Namespace) -> dict[str, Any]:
    by_name = {v.name: v for v in variants}
    print("| variant | status | median µs/req | p25-p75 µs | overhead µs |")
    print("|---|---:|---:|---:|---:|")
    rows = []
    for v in variants:
        p25, _, p75 = statistics.quantiles(v.samples, n=4)
        extra = overhead(by_name, v.name) if v.bare else None
        shown = "—" if extra is None else f"{extra:+.2f} vs {v.bare}"
        print(f"| {v.name} | {v.status} | {v.median:.2f} | {p25:.2f}-{p75:.2f} | {shown} |")
        row = {"name": v.name, "bare": v.bare, "median_us": v.median, "overhead_us": extra}
        rows.append({**row, "samples_us": v.samples})
    found = ratios(by_name)
    print("\n| ratio | value |\n|---|---:|")
    for label, value in found.items():
        print(f"| {label} | {value:.2f} |")
    return {"settings": vars(args), "variants": rows, "ratios": found}


def environment(packages: list[str]) -> dict[str, str]:
    """Print the interpreter, the machine and the packages' versions; return the versions."""
    versions = {"python": platform.python_version(), "keysentry": version("keysentry")}
    versions.update({p: version(p) for p in packages})
    impl, machine = platform.python_implementation(), platform.machine()
    print(f"Python {sys.version.split()[0]} ({impl}, {machine}, {os.cpu_count()} CPUs)")
    print(", ".join(f"{p} {v}" for p, v in versions.items() if p != "python"))
    return versions


def header(args: argparse.Namespace) -> dict[str, str]:
    versions = environment(PACKAGES)
    gc_note = "enabled" if args.gc else "disabled"
    print(
        f"{args.rounds} rounds x {args.batch} requests per variant, round-robin; "
        f"gc.collect() before each batch, GC {gc_note} during batches\n"
    )
    return versions


def profile(loop: asyncio.AbstractEventLoop, v: Variant, n: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    if v.kind == "asgi":
        loop.run_until_complete(asgi_batch(v.app, v.request, n))
    else:
        wsgi_batch(v.app, v.request, n)
    profiler.disable()
    pstats.Stats(profiler).strip_dirs().sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds (default 20)")
    parser.add_argument("--batch", type=int, default=2000, help="requests per batch (2000)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--gc", action="store_true", help="keep the GC enabled during batches")
    parser.add_argument("--profile", metavar="VARIANT", help="cProfile one variant instead")
    args = parser.parse_args()

    loop = asyncio.new_event_loop()
    variants = build(loop)
    if args.profile:
        chosen = {v.name: v for v in variants}.get(args.profile)
        if chosen is None:
            parser.error(f"--profile takes one of: {', '.join(v.name for v in variants)}")
        run_batch(loop, chosen, args.batch, gc_off=True)  # warm up
        profile(loop, chosen, args.batch * 5)
        return

    versions = header(args)
    measure(loop, variants, args.rounds, lambda v: args.batch, gc_off=not args.gc)
    results = report(variants, args)
    loop.close()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"versions": versions, **results}, f, indent=2)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()

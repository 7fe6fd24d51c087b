"""``keysentry demo``: a small protected API, served on 127.0.0.1, with a key to try it.

The app is an ordinary Starlette app behind :class:`~keysentry.ASGIMiddleware`; it is also what
the README's quickstart shows, so what the demo does is what a user's app does. With
``prometheus_client`` installed (extra ``prometheus``) it also serves the guard's metrics on
``/metrics``, without a key: the demo listens on 127.0.0.1, and a scraper has no API key
(in production, serve them on another port, or behind your network's own access control).

The demo also mounts the self-service portal (``keysentry.portal``) at ``/dashboard`` for the
demo account, and prints a sign-in link for it: a random token, good once, in this process
only, that sets a session cookie (the demo's stand-in for a host's own sign-in).
"""

from __future__ import annotations

import importlib.util
import secrets
import socket
import sys
from typing import TYPE_CHECKING, TextIO

from ._urls import safe_url
from .asgi import ASGIMiddleware
from .cli_env import DEFAULT_STORE, guard_from_env
from .core import Keysentry
from .ratelimit.url import limiter_from_url
from .records import Rate

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import BaseRoute, Route

__all__ = [
    "COSTS",
    "DASHBOARD_PATH",
    "DEFAULT_STORE",
    "METRICS_PATH",
    "SIGN_IN_PATH",
    "DemoSignIn",
    "build_app",
    "run",
    "serves_metrics",
]

#: Where the demo serves Prometheus metrics, when it can.
METRICS_PATH = "/metrics"
#: What a request costs on the demo's paths (others cost 1): an image generation is dearer
#: than a lookup, in rate limit and in credits.
COSTS = {"/v1/generate": 5}
#: Where the demo mounts the key portal, and where its one-time link signs a browser in.
DASHBOARD_PATH = "/dashboard"
SIGN_IN_PATH = "/sign-in"
#: The demo's account: the owner of the printed key, and the one the dashboard manages.
DEMO_ACCOUNT = "demo"
_SESSION_COOKIE = "keysentry_demo_session"


class DemoSignIn:
    """The demo's sign-in: one random token, good once, that opens a session (a random
    cookie value this process remembers) for the demo account."""

    def __init__(self) -> None:
        self._token: str | None = secrets.token_urlsafe(32)
        self._sessions: set[str] = set()

    def __repr__(self) -> str:
        return f"DemoSignIn(sessions={len(self._sessions)})"

    @property
    def token(self) -> str:
        if self._token is None:
            raise RuntimeError("the sign-in token was used already")
        return self._token

    def sign_in(self, presented: str) -> str | None:
        """A new session's cookie value, if ``presented`` is the unused token; else None."""
        token = self._token
        if token is None or not secrets.compare_digest(presented.encode(), token.encode()):
            return None
        self._token = None
        session = secrets.token_urlsafe(32)
        self._sessions.add(session)
        return session

    def owner_of(self, request: Request) -> str | None:
        """The portal's ``owner_of``: the demo account for a browser signed in here."""
        session = request.cookies.get(_SESSION_COOKIE)
        return DEMO_ACCOUNT if session in self._sessions else None


def serves_metrics() -> bool:
    """Whether the demo serves ``/metrics``: ``prometheus_client`` can be imported."""
    return importlib.util.find_spec("prometheus_client") is not None


def _metrics_route(ks: Keysentry) -> Route:
    """``/metrics``: the guard's metrics in the Prometheus text format, from a registry of
    this app's own (so that building the app twice does not register them twice)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from starlette.responses import Response
    from starlette.routing import Route

    from .metrics.prometheus import PrometheusMetrics

    registry = CollectorRegistry()
    PrometheusMetrics(ks, registry=registry)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Route(METRICS_PATH, metrics)


def _dashboard_routes(ks: Keysentry, sign_in: DemoSignIn) -> list[BaseRoute]:
    """The key portal at ``/dashboard``, and the one-time sign-in link that leads to it."""
    from starlette.responses import HTMLResponse, RedirectResponse, Response
    from starlette.routing import Mount, Route

    from .portal import portal

    async def enter(request: Request) -> Response:
        session = sign_in.sign_in(request.query_params.get("token", ""))
        if session is None:
            response: Response = HTMLResponse(
                "<!doctype html><title>Sign-in link used</title><p>This sign-in link was used "
                "already, or is wrong. Restart <code>keysentry demo</code> for a new one.</p>",
                status_code=403,
            )
        else:
            response = RedirectResponse(f"{DASHBOARD_PATH}/", status_code=303)
            response.set_cookie(_SESSION_COOKIE, session, httponly=True, samesite="lax")
        response.headers["cache-control"] = "no-store"
        response.headers["referrer-policy"] = "no-referrer"  # the token is in the address
        return response

    dashboard = portal(
        ks,
        owner_of=sign_in.owner_of,
        grantable=["read", "generate"],
        rate_limits=["5/minute", "60/minute", "10/second, 10000/day"],
        title="keysentry demo: API keys",
    )
    return [Route(SIGN_IN_PATH, enter), Mount(DASHBOARD_PATH, dashboard)]


def build_app(ks: Keysentry, sign_in: DemoSignIn | None = None) -> Starlette:
    """The demo API on ``ks``; with ``/metrics`` when :func:`serves_metrics` (exempt it from
    ``ks`` to scrape without a key, as :func:`run` does), and with ``sign_in``, the key
    portal at ``/dashboard`` and its sign-in link (exempt both: they sign browsers in)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def me(request: Request) -> JSONResponse:
        key = request.state.api_key
        return JSONResponse(
            {
                "id": key.id,
                "name": key.name,
                "prefix": key.prefix,
                "owner": key.owner,
                "scopes": sorted(key.scopes),
            }
        )

    async def generate(request: Request) -> JSONResponse:
        prompt = request.query_params.get("prompt", "a lighthouse at dawn")
        return JSONResponse(
            {"object": "generation", "prompt": prompt, "key": request.state.api_key.prefix}
        )

    routes: list[BaseRoute] = [
        Route("/health", health),
        Route("/v1/me", me),
        Route("/v1/generate", generate, methods=["GET", "POST"]),
    ]
    if serves_metrics():
        routes.append(_metrics_route(ks))
    if sign_in is not None:
        routes.extend(_dashboard_routes(ks, sign_in))
    app = Starlette(routes=routes)
    app.add_middleware(ASGIMiddleware, keysentry=ks)
    return app


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SystemExit(
            f"keysentry demo: cannot listen on {host}:{port}: {exc.strerror}"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _rate_limited(rates: tuple[Rate, ...] | None, key: str, base: str) -> str:
    """The banner's lines that show a 429: as many quick requests as the key may send at
    once, and one more, counted by status. Nothing without a rate limit."""
    if not rates:
        return ""
    burst = min(rate.limit if rate.burst is None else rate.burst for rate in rates)
    return f"""
    # 429 RATE_LIMITED past the burst: from idle, {burst} quick requests get 200, the next 429
    for i in $(seq {burst + 1}); do curl -s -o /dev/null -w "%{{http_code}}\\n" \\
        -H "Authorization: Bearer {key}" {base}/v1/me; done | sort | uniq -c
"""


def run(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    store_url: str = DEFAULT_STORE,
    rate_limit: str | None = None,
    limiter_url: str = "memory://",
    invalidator_url: str | None = None,
    out: TextIO | None = None,
) -> None:
    try:
        import uvicorn
    except ImportError:
        raise SystemExit(
            "keysentry demo needs uvicorn and starlette: pip install 'keysentry[demo]'"
        ) from None
    out = out or sys.stdout
    rates = Rate.parse_many(rate_limit) if rate_limit else None
    # Built as `keysentry keys` builds it, so keys the CLI creates on this store work here.
    metrics = serves_metrics()
    exempt = ["/health", SIGN_IN_PATH, f"{DASHBOARD_PATH}/*"]
    ks = guard_from_env(
        store_url,
        exempt=[*exempt, METRICS_PATH] if metrics else exempt,
        costs=COSTS,
        limiter=limiter_from_url(limiter_url),
        invalidator_url=invalidator_url,
    )
    issued = ks.issue(
        name="demo", owner=DEMO_ACCOUNT, scopes=["read", "generate"], rate_limit=rates
    )
    sign_in = DemoSignIn()
    key = issued.key.reveal()
    sock = _bind(host, port)
    port = sock.getsockname()[1]
    base = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    scrape = (
        f"""
    # Prometheus metrics of the guard (no key needed here): decisions by code, latency, cache
    curl {base}{METRICS_PATH}
"""
        if metrics
        else ""
    )
    print(
        f"""keysentry demo: a protected API on {base} (store: {safe_url(store_url)})
Rate limit of the key: {", ".join(map(str, rates)) if rates else "none"} \
(limiter: {safe_url(limiter_url)})

Your API key, shown once (only its digest is stored):

    {key}

Try it:

    # 200, with the key's identity
    curl -H "Authorization: Bearer {key}" {base}/v1/me
    # 200; /v1/generate costs {COSTS["/v1/generate"]} (requests of the rate limit, and credits)
    curl -H "X-API-Key: {key}" "{base}/v1/generate?prompt=hello"

    # 401 MISSING_API_KEY, with WWW-Authenticate: Bearer realm="api"
    curl -i {base}/v1/me

    # 401 INVALID_API_KEY: the 'Bearer ' prefix is missing
    curl -i -H "Authorization: {key}" {base}/v1/me

    # exempt path: no key needed
    curl {base}/health
{scrape}
Your dashboard: the demo account's keys (create, copy, rotate, revoke). This link signs
one browser in, once (a new demo run prints a new one):

    {base}{SIGN_IN_PATH}?token={sign_in.token}
{_rate_limited(rates, key, base)}
Ctrl-C stops the server.
""",
        file=out,
        flush=True,
    )
    config = uvicorn.Config(build_app(ks, sign_in), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()

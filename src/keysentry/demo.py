"""``keysentry demo``: a small protected API, served on 127.0.0.1, with a key to try it.

The app is an ordinary Starlette app behind :class:`~keysentry.ASGIMiddleware`; it is also what
the README's quickstart shows, so what the demo does is what a user's app does. With
``prometheus_client`` installed (extra ``prometheus``) it also serves the guard's metrics on
``/metrics``, without a key: the demo listens on 127.0.0.1, and a scraper has no API key
(in production, serve them on another port, or behind your network's own access control).
"""

from __future__ import annotations

import importlib.util
import socket
import sys
from typing import TYPE_CHECKING, TextIO

from ._urls import REDIS_SCHEMES, safe_url, take_query_param
from .asgi import ASGIMiddleware
from .cli_env import DEFAULT_STORE, guard_from_env
from .core import Keysentry
from .ratelimit import Limiter, MemoryLimiter
from .records import Rate

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.routing import Route

__all__ = ["COSTS", "DEFAULT_STORE", "METRICS_PATH", "build_app", "run", "serves_metrics"]

#: Where the demo serves Prometheus metrics, when it can.
METRICS_PATH = "/metrics"
#: What a request costs on the demo's paths (others cost 1): an image generation is dearer
#: than a lookup, in rate limit and in credits.
COSTS = {"/v1/generate": 5}


def serves_metrics() -> bool:
    """Whether the demo serves ``/metrics``: ``prometheus_client`` can be imported."""
    return importlib.util.find_spec("prometheus_client") is not None


def _metrics_route(ks: Keysentry) -> Route:
    """``/metrics``: the guard's metrics in the Prometheus text format, from a registry of
    this app's own (so that building the app twice does not register them twice)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from .metrics.prometheus import PrometheusMetrics

    registry = CollectorRegistry()
    PrometheusMetrics(ks, registry=registry)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Route(METRICS_PATH, metrics)


def build_app(ks: Keysentry) -> Starlette:
    """The demo API on ``ks``; with ``/metrics`` when :func:`serves_metrics` (exempt it from
    ``ks`` to scrape without a key, as :func:`run` does)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
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

    routes = [
        Route("/health", health),
        Route("/v1/me", me),
        Route("/v1/generate", generate, methods=["GET", "POST"]),
    ]
    if serves_metrics():
        routes.append(_metrics_route(ks))
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


def limiter_from_url(url: str) -> Limiter:
    """``memory://`` or ``redis://...`` (also ``rediss://``, ``unix://``,
    ``redis+cluster://``, ``redis+sentinel://``); ``?lease=N`` (slices of at most N
    requests) and ``?lease_time=S`` make it a :class:`~keysentry.ratelimit.leased.LeasedLimiter`."""
    scheme = url.partition("://")[0].lower()
    if scheme == "memory":
        return MemoryLimiter()
    if scheme in REDIS_SCHEMES:
        url, lease = take_query_param(url, "lease")
        url, lease_time = take_query_param(url, "lease_time")
        if lease is None and lease_time is None:
            from .ratelimit.redis import RedisLimiter

            return RedisLimiter(url)
        from .ratelimit.leased import LeasedLimiter

        try:
            size = 16 if lease is None else int(lease)
            seconds = 1.0 if lease_time is None else float(lease_time)
        except ValueError:
            raise ValueError("?lease= takes a whole number, ?lease_time= seconds") from None
        return LeasedLimiter(url, lease=size, lease_time=seconds)
    raise ValueError(f"unsupported limiter URL {safe_url(url)!r}: use 'memory://' or 'redis://'")


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
    ks = guard_from_env(
        store_url,
        exempt=["/health", METRICS_PATH] if metrics else ["/health"],
        costs=COSTS,
        limiter=limiter_from_url(limiter_url),
        invalidator_url=invalidator_url,
    )
    issued = ks.issue(name="demo", owner="demo", scopes=["read", "generate"], rate_limit=rates)
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
{scrape}{_rate_limited(rates, key, base)}
Ctrl-C stops the server.
""",
        file=out,
        flush=True,
    )
    config = uvicorn.Config(build_app(ks), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()

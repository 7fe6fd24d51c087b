"""Per-request cost of rate limiting: keysentry's limiters against slowapi and Flask-Limiter.

In process, no sockets to the app (Redis is a real server on 127.0.0.1:6379): the helpers, the
apps and the timing loop of ``inprocess.py``. Every request presents a valid key on a warm cache
under a limit so high that it never refuses (10,000,000/minute), so every request pays for the
whole limiter: the state read, the decision, the write and the headers.

    uv run python benchmarks/ratelimit.py [--rounds 20] [--batch 2000] [--redis-batch 500]
    uv run python benchmarks/ratelimit.py --json out.json
    uv run python benchmarks/ratelimit.py --profile starlette-keysentry-redis

Redis keys are written under a prefix of this run's own (``ksbench-rl:<pid>-<hex>:``) and
deleted at the end, whatever happens.
"""

import argparse
import asyncio
import json
import os
import secrets
import statistics
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry
from slowapi import Limiter as SlowLimiter
from starlette.middleware import Middleware

# The sibling script: `python benchmarks/ratelimit.py` puts benchmarks/ first on sys.path.
from inprocess import (
    PACKAGES,
    SECRET,
    Variant,
    environment,
    fastapi_bare,
    fastapi_protected,
    flask_bare,
    flask_protected,
    make,
    measure,
    overhead,
    profile,
    receive,
    run_batch,
    sha256_hex,
    starlette_app,
)
from keysentry import ASGIMiddleware, Keysentry, MemoryStore, Rate, WSGIMiddleware
from keysentry.ratelimit import Limiter, MemoryLimiter
from keysentry.ratelimit.gcra import Policy
from keysentry.ratelimit.leased import LeasedLimiter
from keysentry.ratelimit.redis import GCRA, RedisLimiter

REDIS_URL = "redis://127.0.0.1:6379/0"
#: Everything this run writes to Redis starts with this; the cleanup deletes ``PREFIX*``.
PREFIX = f"ksbench-rl:{os.getpid()}-{secrets.token_hex(3)}:"
HIGH_LIMIT = "10000000/minute"
TINY_LIMIT = "2/minute"
#: Pairs whose overheads (median minus the bare app's) are divided: (a, b, budget or None).
VERSUS = [
    ("starlette-keysentry-redis", "fastapi-apikey-slowapi-redis", 1.0),
    ("flask-keysentry-redis", "flask-before-limiter-redis", None),
    ("starlette-keysentry-memory", "fastapi-apikey-slowapi-memory", None),
    ("starlette-keysentry-leased", "fastapi-apikey-slowapi-redis", 0.1),
    ("flask-keysentry-leased", "flask-before-limiter-redis", None),
]
#: Pairs whose overheads are subtracted: what the second wiring adds to the first.
DIFFERENCES = [
    ("starlette-keysentry-memory", "starlette-keysentry", "the memory limiter itself, ASGI"),
    ("flask-keysentry-memory", "flask-keysentry", "the memory limiter itself, WSGI"),
    ("starlette-keysentry-redis", "starlette-keysentry-memory", "Redis over memory, ASGI"),
    ("flask-keysentry-redis", "flask-keysentry-memory", "Redis over memory, WSGI"),
    ("fastapi-apikey-slowapi-redis", "fastapi-apikey-slowapi-memory", "slowapi Redis over memory"),
    ("starlette-keysentry-redis", "starlette-evalsha", "keysentry on Redis beyond 1 EVALSHA, ASGI"),
    ("flask-keysentry-redis", "flask-evalsha", "keysentry on Redis beyond 1 EVALSHA, WSGI"),
]
#: The bare apps behind one raw EVALSHA of keysentry's script: the round trip inside a request.
ROUND_TRIPS = ["starlette-evalsha", "flask-evalsha"]

# -- Redis -----------------------------------------------------------------------------------


def client_options() -> dict[str, Any]:
    """The options RedisLimiter gives its clients, so the bare round trips pay the same."""
    return {
        "socket_timeout": 0.1,
        "socket_connect_timeout": 0.1,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
    }


def limits_storage(part: str) -> tuple[str, dict[str, Any]]:
    """``storage_uri`` and ``storage_options`` for slowapi/Flask-Limiter on Redis, namespaced."""
    return REDIS_URL, {"key_prefix": f"{PREFIX}{part}"}


def our_keys(r: redis.Redis, part: str = "") -> list[str]:
    return sorted(r.scan_iter(match=f"{PREFIX}{part}*", count=1000))


def cleanup(r: redis.Redis) -> int:
    names = our_keys(r)
    for i in range(0, len(names), 500):
        r.delete(*names[i : i + 500])
    return len(names)


#: EVALSHA arguments for one policy of HIGH_LIMIT: cost 1, interval 6 µs, burst 10,000,000.
# The arguments keysentry itself sends for one 10 000 000/minute policy.
EVALSHA_ARGS = tuple(RedisLimiter._args((Policy.of(Rate(10_000_000, 60.0)),), 1))


class EvalshaASGI:
    """One EVALSHA of keysentry's GCRA script on redis.asyncio, then the app: no keysentry."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.client = redis.asyncio.Redis.from_url(REDIS_URL, **client_options())
        self.key = f"{PREFIX}evalsha-asgi:{{bench}}"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.client.evalsha(GCRA.sha, 1, self.key, *EVALSHA_ARGS)
        await self.app(scope, receive, send)


class EvalshaWSGI:
    """One EVALSHA of keysentry's GCRA script on blocking redis-py, then the app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.client = redis.Redis.from_url(REDIS_URL, **client_options())
        self.key = f"{PREFIX}evalsha-wsgi:{{bench}}"

    def __call__(self, environ: Any, start_response: Any) -> Any:
        self.client.evalsha(GCRA.sha, 1, self.key, *EVALSHA_ARGS)
        return self.app(environ, start_response)


# -- the variants ----------------------------------------------------------------------------


class Setup:
    """The variants, the objects the checks look into, and what has to be closed at the end."""

    def __init__(self) -> None:
        self.variants: list[Variant] = []
        self.redis_names: set[str] = set()
        self.guards: dict[str, tuple[Keysentry, str]] = {}  # variant -> (keysentry, key id)
        self.slowapi: dict[str, SlowLimiter] = {}
        self.flask_limiters: dict[str, Any] = {}
        self.redis_limiters: list[RedisLimiter] = []
        self.evalsha: tuple[EvalshaASGI, EvalshaWSGI] | None = None

    def guard(self, limiter: Limiter | None, limit: str | None) -> tuple[Keysentry, str, str]:
        """A keysentry (fail_open, the default: failures are counted) and a key: the key, its id."""
        ks = Keysentry(
            MemoryStore(),
            secret=SECRET,
            limiter=limiter,
            rate_limit=limit if limiter is not None else None,  # no limiter: nothing to limit
        )
        issued = ks.issue(name="bench")
        return ks, issued.key.reveal(), issued.record.id

    def redis_limiter(self, part: str, lease: int | None = None) -> RedisLimiter:
        namespace = f"{PREFIX}{part}"
        limiter = (
            RedisLimiter(REDIS_URL, namespace=namespace)
            if lease is None
            else LeasedLimiter(REDIS_URL, namespace=namespace, lease=lease)
        )
        self.redis_limiters.append(limiter)
        return limiter

    def keysentry_variant(
        self, name: str, limiter: Limiter | None, limit: str | None, framework: str
    ) -> Variant:
        ks, key, key_id = self.guard(limiter, limit)
        if framework == "starlette":
            app: Any = starlette_app(Middleware(ASGIMiddleware, keysentry=ks))
        else:
            app = flask_bare()
            app.wsgi_app = WSGIMiddleware(app.wsgi_app, ks)
        self.guards[name] = (ks, key_id)
        return make(name, app, "Authorization", f"Bearer {key}", 200, framework)


def build(s: Setup) -> None:
    """Fill ``s`` (filled as it goes, so that a failure half-way still closes what it opened)."""
    _, key, _ = s.guard(None, None)  # the hand-rolled setups only need a well-formed key
    digests = {sha256_hex(key): "bench"}
    x_key, auth = "X-API-Key", "Authorization"

    slow_mem_app, s.slowapi["fastapi-apikey-slowapi-memory"] = fastapi_protected(
        digests, HIGH_LIMIT
    )
    slow_redis_app, s.slowapi["fastapi-apikey-slowapi-redis"] = fastapi_protected(
        digests, HIGH_LIMIT, *limits_storage("slowapi")
    )
    flim_app, s.flask_limiters["flask-before-limiter-redis"] = flask_protected(
        digests, HIGH_LIMIT, *limits_storage("flask-limiter")
    )
    ks = s.keysentry_variant
    s.variants = [
        make("starlette", starlette_app(), auth, f"Bearer {key}"),
        ks("starlette-keysentry", None, None, "starlette"),
        ks("starlette-keysentry-memory", MemoryLimiter(), HIGH_LIMIT, "starlette"),
        ks("starlette-keysentry-redis", s.redis_limiter("ks-asgi"), HIGH_LIMIT, "starlette"),
        ks(
            "starlette-keysentry-leased",
            s.redis_limiter("ks-asgi-leased", 16),
            HIGH_LIMIT,
            "starlette",
        ),
        make("fastapi", fastapi_bare(), x_key, key),
        make("fastapi-apikey-slowapi-memory", slow_mem_app, x_key, key, 200, "fastapi"),
        make("fastapi-apikey-slowapi-redis", slow_redis_app, x_key, key, 200, "fastapi"),
        make("flask", flask_bare(), auth, f"Bearer {key}"),
        make("flask-before-limiter-redis", flim_app, auth, f"Bearer {key}", 200, "flask"),
        ks("flask-keysentry", None, None, "flask"),
        ks("flask-keysentry-memory", MemoryLimiter(), HIGH_LIMIT, "flask"),
        ks("flask-keysentry-redis", s.redis_limiter("ks-wsgi"), HIGH_LIMIT, "flask"),
        ks("flask-keysentry-leased", s.redis_limiter("ks-wsgi-leased", 16), HIGH_LIMIT, "flask"),
    ]
    flask_evalsha = flask_bare()
    s.evalsha = EvalshaASGI(starlette_app()), EvalshaWSGI(flask_evalsha.wsgi_app)
    flask_evalsha.wsgi_app = s.evalsha[1]  # type: ignore[method-assign]
    s.evalsha[1].client.script_load(GCRA.text)  # so EVALSHA finds it
    s.variants += [
        make("starlette-evalsha", s.evalsha[0], auth, f"Bearer {key}", 200, "starlette"),
        make("flask-evalsha", flask_evalsha, auth, f"Bearer {key}", 200, "flask"),
    ]
    s.redis_names = {v.name for v in s.variants if "redis" in v.name} | set(ROUND_TRIPS)


# -- checks ----------------------------------------------------------------------------------


def respond(loop: asyncio.AbstractEventLoop, v: Variant) -> tuple[int, dict[str, str]]:
    """Status and headers (lower-cased names) of one request."""
    seen: dict[str, Any] = {}
    if v.kind == "asgi":

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                seen["headers"] = {k.decode(): x.decode() for k, x in message.get("headers", [])}

        loop.run_until_complete(v.app(dict(v.request), receive, capture))
    else:

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            seen["status"] = int(status.split()[0])
            seen["headers"] = {k.lower(): x for k, x in headers}

        body = v.app(v.request.copy(), start)
        for _chunk in body:
            pass
        if hasattr(body, "close"):
            body.close()
    return seen["status"], seen["headers"]


def check(loop: asyncio.AbstractEventLoop, s: Setup, r: redis.Redis) -> list[str]:
    """Refuse to time a setup that answers wrongly or whose limiter does not do its work."""
    lines: list[str] = []

    def ok(text: str) -> None:
        lines.append(text)
        print(f"  ok  {text}")

    for v in s.variants:
        status, headers = respond(loop, v)
        assert status == v.status, f"{v.name}: expected {v.status}, got {status}"
        if v.name in s.guards:
            ks, key_id = s.guards[v.name]
            field = headers.get("ratelimit")
            if ks.limiter is None:
                assert field is None, f"{v.name}: RateLimit header without a limiter"
                ok(f"{v.name}: {status}, no limiter, no RateLimit header")
                continue
            assert field is not None, f"{v.name}: no RateLimit header, the limiter did not run"
            assert ks.limiter_failures == 0, f"{v.name}: the limiter failed and failed open"
            note = f"RateLimit: {field}"
            if isinstance(ks.limiter, LeasedLimiter):
                # Served from slices: the key's leaseholders are on record for a while.
                name = ks.limiter._holders_key(key_id)
                ttl = r.pttl(name)
                assert ttl > 0, f"{v.name}: no lease under {name}"
                note += f"; Redis {name} exists, PTTL {ttl} ms"
            elif isinstance(ks.limiter, RedisLimiter):
                name = ks.limiter.state_key(key_id)
                # The state of an idle key expires a millisecond after the request: look at once.
                for _ in range(5):
                    respond(loop, v)
                    ttl = r.pttl(name)
                    if ttl > 0:
                        break
                assert ttl > 0, f"{v.name}: no Redis state under {name}"
                note += f"; Redis {name} exists, PTTL {ttl} ms"
            ok(f"{v.name}: {status}, {note}")
        elif v.name in s.slowapi or v.name in s.flask_limiters:
            ok(f"{v.name}: {status}, {count_hits(loop, s, v, r)}")
        else:
            ok(f"{v.name}: {status}")

    for name, statuses, extra in tiny(loop, r):
        ok(f"{name}, limit {TINY_LIMIT}: {' '.join(map(str, statuses))}{extra}")
    return lines


def count_hits(loop: asyncio.AbstractEventLoop, s: Setup, v: Variant, r: redis.Redis) -> str:
    """slowapi and Flask-Limiter count every request: three requests add three."""
    limiter = s.slowapi.get(v.name) or s.flask_limiters[v.name]
    storage: Any = limiter._storage if isinstance(limiter, SlowLimiter) else limiter.storage
    if "redis" not in v.name:
        counter = storage.storage
        before = sum(counter.values())
        for _ in range(3):
            respond(loop, v)
        after = sum(counter.values())
        assert after == before + 3, f"{v.name}: the limiter did not count"
        return f"in-memory counters {before} -> {after} after 3 requests"
    prefix = storage.key_prefix
    assert prefix.startswith(PREFIX), f"{v.name}: storage prefix {prefix!r} is not ours"
    names = our_keys(r, prefix[len(PREFIX) :])
    assert len(names) == 1, f"{v.name}: expected one counter under {prefix}, found {names}"
    before = int(r.get(names[0]) or 0)
    for _ in range(3):
        respond(loop, v)
    after = int(r.get(names[0]) or 0)
    assert after == before + 3, f"{v.name}: the Redis counter went {before} -> {after}"
    return f"Redis {names[0]} {before} -> {after} after 3 requests"


def tiny(loop: asyncio.AbstractEventLoop, r: redis.Redis) -> list[tuple[str, list[int], str]]:
    """The same wirings with a limit of 2/minute: the third request is refused (429)."""
    t = Setup()
    _, key, _ = t.guard(None, None)
    digests = {sha256_hex(key): "bench"}
    slow_mem, _ = fastapi_protected(digests, TINY_LIMIT)
    slow_redis, _ = fastapi_protected(digests, TINY_LIMIT, *limits_storage("tiny-slowapi"))
    flim_redis, _ = flask_protected(digests, TINY_LIMIT, *limits_storage("tiny-flask-limiter"))
    ks, lim = t.keysentry_variant, t.redis_limiter
    # (variant, the part of PREFIX its Redis keys are under, what its three requests answer)
    refused, unlimited = [200, 200, 429], [200, 200, 200]
    cases = [
        (ks("starlette-keysentry", None, TINY_LIMIT, "starlette"), None, unlimited),
        (ks("starlette-keysentry-memory", MemoryLimiter(), TINY_LIMIT, "starlette"), None, refused),
        (ks("starlette-keysentry-redis", lim("tiny-ks-asgi"), TINY_LIMIT, "starlette"), "tiny-ks-asgi", refused),  # noqa: E501
        (make("fastapi-apikey-slowapi-memory", slow_mem, "X-API-Key", key), None, refused),
        (make("fastapi-apikey-slowapi-redis", slow_redis, "X-API-Key", key), "tiny-slowapi", refused),  # noqa: E501
        (make("flask-before-limiter-redis", flim_redis, "Authorization", f"Bearer {key}"), "tiny-flask-limiter", refused),  # noqa: E501
        (ks("flask-keysentry", None, TINY_LIMIT, "flask"), None, unlimited),
        (ks("flask-keysentry-memory", MemoryLimiter(), TINY_LIMIT, "flask"), None, refused),
        (ks("flask-keysentry-redis", lim("tiny-ks-wsgi"), TINY_LIMIT, "flask"), "tiny-ks-wsgi", refused),  # noqa: E501
    ]  # fmt: skip
    found = []
    try:
        for v, part, expected in cases:
            statuses = [respond(loop, v)[0] for _ in range(3)]
            assert statuses == expected, f"{v.name}, {TINY_LIMIT}: answered {statuses}"
            extra = " (no limiter configured)" if expected is unlimited else ""
            if part is not None:
                names = our_keys(r, part)
                assert names, f"{v.name}: nothing written under {PREFIX}{part}"
                extra += f"; Redis keys: {', '.join(names)}"
            found.append((v.name, statuses, extra))
    finally:
        close(loop, t)
    return found


def close(loop: asyncio.AbstractEventLoop, s: Setup) -> None:
    for limiter in s.redis_limiters:
        limiter.close()
        loop.run_until_complete(limiter.aclose())
    if s.evalsha is not None:
        loop.run_until_complete(s.evalsha[0].client.aclose())
        s.evalsha[1].client.close()


# -- reporting -------------------------------------------------------------------------------


def report(s: Setup, args: argparse.Namespace, checks: list[str]) -> dict[str, Any]:
    by_name = {v.name: v for v in s.variants}
    print("| variant | batch | median µs/req | p25-p75 µs | overhead µs |")
    print("|---|---:|---:|---:|---:|")
    rows = []
    for v in s.variants:
        p25, _, p75 = statistics.quantiles(v.samples, n=4)
        extra = overhead(by_name, v.name) if v.bare else None
        shown = "—" if extra is None else f"{extra:+.2f} vs {v.bare}"
        if v.name in ROUND_TRIPS:
            shown += " (1 raw EVALSHA, no keysentry)"
        batch = batch_for(s, args)(v)
        print(f"| {v.name} | {batch} | {v.median:.2f} | {p25:.2f}-{p75:.2f} | {shown} |")
        row: dict[str, Any] = {"name": v.name, "kind": v.kind, "bare": v.bare, "batch": batch}
        row |= {"median_us": v.median, "p25_us": p25, "p75_us": p75, "overhead_us": extra}
        rows.append({**row, "samples_us": v.samples})

    ratios: dict[str, float] = {}
    print("\n| overhead ratio | value | budget |\n|---|---:|---|")
    for a, b, budget in VERSUS:
        label = f"{a} / {b}"
        ratios[label] = value = overhead(by_name, a) / overhead(by_name, b)
        met = budget is not None and value < budget
        verdict = "—" if budget is None else f"< {budget:g}: {'met' if met else 'MISSED'}"
        print(f"| {label} | {value:.2f} | {verdict} |")

    differences: dict[str, float] = {}
    print("\n| overhead difference | µs | ratio of overheads | what it is |\n|---|---:|---:|---|")
    for a, b, what in DIFFERENCES:
        label = f"{a} - {b}"
        over_a, over_b = overhead(by_name, a), overhead(by_name, b)
        differences[label] = diff = over_a - over_b
        # A ratio of overheads means something only when both are above the noise.
        ratio = f"{over_a / over_b:.2f}" if over_a > 0 and over_b > 0 else "—"
        print(f"| {label} | {diff:+.2f} | {ratio} | {what} |")
    trips = ", ".join(f"{overhead(by_name, n):+.2f} µs over {by_name[n].bare}" for n in ROUND_TRIPS)
    print(f"\nOne raw EVALSHA of keysentry's script inside the bare apps (the round trip): {trips}")
    return {
        "settings": vars(args),
        "redis_prefix": PREFIX,
        "checks": checks,
        "variants": rows,
        "ratios": ratios,
        "differences_us": differences,
    }


def batch_for(s: Setup, args: argparse.Namespace) -> Callable[[Variant], int]:
    return lambda v: args.redis_batch if v.name in s.redis_names else args.batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds (default 20)")
    parser.add_argument("--batch", type=int, default=2000, help="requests per batch (2000)")
    parser.add_argument(
        "--redis-batch", type=int, help="requests per batch for variants on Redis (batch / 4)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--gc", action="store_true", help="keep the GC enabled during batches")
    parser.add_argument("--profile", metavar="VARIANT", help="cProfile one variant instead")
    args = parser.parse_args()
    if args.redis_batch is None:
        args.redis_batch = max(1, args.batch // 4)

    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    loop = asyncio.new_event_loop()
    s = Setup()
    try:
        build(s)
        if args.profile:
            chosen = {v.name: v for v in s.variants}.get(args.profile)
            if chosen is None:
                parser.error(f"--profile takes one of: {', '.join(v.name for v in s.variants)}")
            n = batch_for(s, args)(chosen)
            run_batch(loop, chosen, n, gc_off=True)  # warm up
            profile(loop, chosen, n * 5)
            return

        versions = environment([*PACKAGES, "redis", "hiredis"])
        server = r.info("server")
        print(f"Redis server {server['redis_version']} at {REDIS_URL}, key prefix {PREFIX}")
        print(
            f"{args.rounds} rounds, round-robin; {args.batch} requests per batch, "
            f"{args.redis_batch} for the variants on Redis (a round trip each: slower); "
            f"gc.collect() before each batch, GC {'enabled' if args.gc else 'disabled'} during "
            f"batches; limit {HIGH_LIMIT} (never refuses)\n"
        )
        print("Checks before timing:")
        checks = check(loop, s, r)
        print()
        measure(loop, s.variants, args.rounds, batch_for(s, args), gc_off=not args.gc)
        for name, (ks, _) in s.guards.items():
            assert ks.limiter_failures == 0, f"{name}: the limiter failed while timed"
        results = report(s, args, checks)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"versions": versions, **results}, f, indent=2)
            print(f"\nwrote {args.json}")
    finally:
        close(loop, s)
        loop.close()
        print(f"\ncleanup: deleted {cleanup(r)} Redis keys under {PREFIX}")
        r.close()


if __name__ == "__main__":
    main()

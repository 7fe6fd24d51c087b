"""End to end: keysentry and the API-key setups it replaces, served by uvicorn, loaded by wrk.

Each variant is one app with one route, ``GET /`` (the apps of ``inprocess.py`` and
``ratelimit.py``), served by uvicorn in a process of its own (httptools, uvloop when installed,
one worker, no access log) pinned to one core, and driven over loopback by wrk pinned to
another (``wrk -t1 -c32 --latency``, the key in a header). Every round starts a fresh server for
each variant, in rotating order: it is checked with a few requests, warmed up, then measured.
The table gives the median over rounds of req/s, of wrk's p50 and p99 latency and of the
server's CPU time per request, and two ratios to bare Starlette in the same run: by req/s, and
by CPU time per request (which other work on the machine disturbs far less); the chart shows
both.

    uv run python benchmarks/e2e.py [--rounds 3] [--duration 5] [--warmup 1]
    uv run python benchmarks/e2e.py --json e2e.json --chart benchmarks/e2e.png
    uv run python benchmarks/e2e.py --variants starlette,starlette-keysentry --rounds 1

Needs wrk (installed with apt-get when missing), taskset and the Redis server on
127.0.0.1:6379. Redis keys are written under a prefix of this run's own
(``ksbench-e2e:<pid>-<hex>:``) and deleted at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware

# The sibling scripts: `python benchmarks/e2e.py` puts benchmarks/ first on sys.path.
from inprocess import (
    PACKAGES,
    DigestBackend,
    environment,
    fastapi_bare,
    fastapi_protected,
    sha256_hex,
    starlette_app,
    unauthorized,
)
from keysentry import ASGIMiddleware
from keysentry.ratelimit import Limiter, MemoryLimiter
from keysentry.ratelimit.leased import LeasedLimiter
from keysentry.ratelimit.redis import RedisLimiter
from ratelimit import HIGH_LIMIT, REDIS_URL, Setup

#: Everything this run writes to Redis starts with this; the cleanup deletes ``PREFIX*``.
PREFIX = f"ksbench-e2e:{os.getpid()}-{secrets.token_hex(3)}:"
BASELINE = "starlette"
CONNECTIONS = 32
#: A server answers its first request within this many seconds of being started, or is broken.
STARTUP_TIMEOUT = 60.0
#: Fixed-window counters (slowapi's default strategy) restart every minute: compare counts
#: only when the server has lived less than this.
WINDOW_SAFE = 50.0


# -- the variants ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    name: str
    label: str  # for the chart
    header: str  # the header carrying the key
    guard: str  # "none", "authmw", "slowapi" or "keysentry"
    limiter: str | None = None  # None, "memory", "redis" or "leased" (Redis, slices of 16)

    @property
    def protected(self) -> bool:
        """Answers 401 to a request without the key."""
        return self.guard != "none"


AUTH, X_KEY = "Authorization", "X-API-Key"
VARIANTS = [
    Spec("starlette", "Starlette, no auth", AUTH, "none"),
    Spec("starlette-authmw", "Starlette + AuthenticationMiddleware", AUTH, "authmw"),
    Spec("fastapi-apikey-slowapi-memory", "FastAPI + APIKeyHeader + slowapi, memory", X_KEY, "slowapi", "memory"),  # noqa: E501
    Spec("fastapi-apikey-slowapi-redis", "FastAPI + APIKeyHeader + slowapi, Redis", X_KEY, "slowapi", "redis"),  # noqa: E501
    Spec("starlette-keysentry", "Starlette + keysentry, auth only", AUTH, "keysentry"),
    Spec("starlette-keysentry-memory", "Starlette + keysentry + MemoryLimiter", AUTH, "keysentry", "memory"),  # noqa: E501
    Spec("starlette-keysentry-redis", "Starlette + keysentry + RedisLimiter", AUTH, "keysentry", "redis"),  # noqa: E501
    Spec("starlette-keysentry-leased", "Starlette + keysentry + LeasedLimiter (16)", AUTH, "keysentry", "leased"),  # noqa: E501
]  # fmt: skip
#: Not run unless asked for with ``--variants``.
EXTRA = [Spec("fastapi", "FastAPI, no auth", X_KEY, "none")]
SPECS = {s.name: s for s in VARIANTS + EXTRA}


@dataclass
class Served:
    """What a server process serves: the app, the header a client sends, and its counters."""

    app: Any
    header: str
    value: str
    key_id: str
    stats: Callable[[], dict[str, int]]
    redis_limiters: list[RedisLimiter] = field(default_factory=list)


def build(spec: Spec, prefix: str) -> Served:
    """The app of ``spec``, with a freshly minted key; Redis keys go under ``prefix``."""
    limiter: Limiter | None = None
    redis_limiters = []
    if spec.guard == "keysentry" and spec.limiter == "memory":
        limiter = MemoryLimiter()
    elif spec.guard == "keysentry" and spec.limiter == "redis":
        limiter = RedisLimiter(REDIS_URL, namespace=f"{prefix}keysentry")
        redis_limiters.append(limiter)
    elif spec.guard == "keysentry" and spec.limiter == "leased":
        limiter = LeasedLimiter(REDIS_URL, namespace=f"{prefix}keysentry", lease=16)
        redis_limiters.append(limiter)
    # A keysentry guard, or only a well-formed key for the other setups to accept.
    ks, key, key_id = Setup().guard(limiter, HIGH_LIMIT)
    digests = {sha256_hex(key): "bench"}
    stats: Callable[[], dict[str, int]] = dict

    if spec.guard == "none":
        app = fastapi_bare() if spec.name.startswith("fastapi") else starlette_app()
    elif spec.guard == "authmw":
        backend = DigestBackend(digests)
        app = starlette_app(
            Middleware(AuthenticationMiddleware, backend=backend, on_error=unauthorized)
        )
    elif spec.guard == "slowapi":
        if spec.limiter == "redis":
            app, _ = fastapi_protected(
                digests, HIGH_LIMIT, REDIS_URL, {"key_prefix": f"{prefix}slowapi"}
            )
        else:
            app, slow = fastapi_protected(digests, HIGH_LIMIT)
            counters = slow._storage.storage  # type: ignore[attr-defined]

            def stats() -> dict[str, int]:
                return {"slowapi_hits": sum(list(counters.values()))}

    else:
        app = starlette_app(Middleware(ASGIMiddleware, keysentry=ks))

        def stats() -> dict[str, int]:
            return {"limiter_failures": ks.limiter_failures}

    value = f"Bearer {key}" if spec.header == AUTH else key
    return Served(app, spec.header, value, key_id, stats, redis_limiters)


# -- the server process ----------------------------------------------------------------------


def uvicorn_loop() -> str:
    return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def listening_socket() -> socket.socket:
    """A socket listening on a free port of 127.0.0.1, for uvicorn to serve on.

    Made with ``IPPROTO_TCP`` named, as ``loop.create_server`` makes its own: asyncio turns
    Nagle's algorithm off (``TCP_NODELAY``) only on connections whose socket says so, and with
    it on, a response written in two pieces waits for the client's delayed ACK, 40 ms each.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    return sock


def serve(variant: str, prefix: str) -> None:
    """Serve one variant on a free port of 127.0.0.1 until terminated (or the parent goes).

    The first line on stdout is JSON: the port, and the header and value that get a 200. Each
    ``stats`` line on stdin is answered with a JSON line of the app's counters.
    """
    import uvicorn

    if importlib.util.find_spec("httptools") is None:
        sys.exit("httptools is not installed: run `uv sync` (it is in the bench group)")
    served = build(SPECS[variant], prefix)
    sock = listening_socket()
    config = uvicorn.Config(
        served.app,
        http="httptools",
        loop=uvicorn_loop(),
        access_log=False,
        log_level="warning",
        workers=1,
    )
    hello = {
        "port": sock.getsockname()[1],
        "header": served.header,
        "value": served.value,
        "key_id": served.key_id,
        "loop": config.loop,
    }
    print(json.dumps(hello), flush=True)

    def control() -> None:
        while line := sys.stdin.readline():
            if line.strip() == "stats":
                print(json.dumps(served.stats()), flush=True)
        os._exit(0)  # stdin closed: the parent is gone, do not outlive it

    threading.Thread(target=control, daemon=True).start()
    uvicorn.Server(config).run(sockets=[sock])


class Server:
    """One variant's server process, pinned to ``cpu``; stopped (terminate, then kill) on exit."""

    def __init__(self, spec: Spec, prefix: str, cpu: int) -> None:
        self.spec = spec
        self.prefix = prefix
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed by stop())
        command = [sys.executable, str(Path(__file__).resolve()), "serve", spec.name, prefix]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(cpu), *command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        try:
            hello = json.loads(self._line(STARTUP_TIMEOUT))
        except BaseException:
            self.stop()
            raise
        self.port: int = hello["port"]
        self.header: str = hello["header"]
        self.value: str = hello["value"]
        self.key_id: str = hello["key_id"]
        self.loop: str = hello["loop"]
        self.url = f"http://127.0.0.1:{self.port}/"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _line(self, timeout: float) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        if line is None:
            raise RuntimeError(f"{self.spec.name}: the server did not answer\n{self.errors()}")
        return line

    def stats(self) -> dict[str, int]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return json.loads(self._line(10.0))  # type: ignore[no-any-return]

    def cpu(self) -> float:
        """CPU seconds the server process has used, all threads, user and system."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            # Fields 3 onwards (the name, field 2, may hold spaces); 14 and 15: utime, stime.
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.spec.name}: the server exited\n{self.errors()}")

    def errors(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self.stderr.close()


@contextlib.contextmanager
def running(spec: Spec, prefix: str, cpu: int) -> Iterator[Server]:
    server: Server | None = None
    try:
        server = Server(spec, prefix, cpu)
        yield server
    finally:
        if server is not None:
            server.stop()


# -- wrk -------------------------------------------------------------------------------------

_TIME = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(number: str, unit: str) -> float:
    return float(number) * _TIME[unit]


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/sec, the latency percentiles of ``--latency`` (ms) and the error counts."""
    found: dict[str, Any] = {"non_2xx": 0, "socket_errors": {}}
    rps = re.search(r"^Requests/sec:\s+([\d.]+)\s*$", output, re.M)
    total = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", output, re.M)
    if rps is None or total is None:
        raise ValueError(f"not wrk output:\n{output}")
    found["requests_per_sec"] = float(rps[1])
    found["requests"] = int(total[1])
    found["duration_s"] = _ms(total[2], total[3]) / 1000
    distribution = output.partition("Latency Distribution")[2]
    latency = {
        f"p{m[1]}": _ms(m[2], m[3])
        for m in re.finditer(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", distribution, re.M)
    }
    if not {"p50", "p99"} <= latency.keys():
        raise ValueError(f"no latency distribution (was --latency given?):\n{output}")
    found["latency_ms"] = latency
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output):
        found["non_2xx"] = int(m[1])
    errors = r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
    if m := re.search(errors, output):
        names = ["connect", "read", "write", "timeout"]
        found["socket_errors"] = dict(zip(names, map(int, m.groups()), strict=True))
    return found


def core_busy(cpu: int) -> float:
    """Seconds core ``cpu`` has spent running anything (user, nice, system) since boot."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                user, nice, system = map(int, line.split()[1:4])
                return (user + nice + system) / os.sysconf("SC_CLK_TCK")
    raise ValueError(f"no cpu{cpu} in /proc/stat")


def wrk_command(server: Server, duration: int, cpu: int) -> list[str]:
    header = f"{server.header}: {server.value}"
    return [
        *("taskset", "-c", str(cpu), "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{duration}s"),
        *("--latency", "-H", header, server.url),
    ]


def run_wrk(server: Server, duration: int, cpu: int) -> dict[str, Any]:
    """One wrk run; refuses a run in which anything but a 2xx came back."""
    done = subprocess.run(
        wrk_command(server, duration, cpu),
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    found = parse_wrk(done.stdout)
    if found["non_2xx"]:
        raise RuntimeError(f"{server.spec.name}: {found['non_2xx']} non-2xx responses under load")
    server.alive()
    return {**found, "output": done.stdout}


def ensure_tools() -> str:
    """wrk (installed from Debian's package when missing) and taskset; wrk's version line."""
    if shutil.which("taskset") is None:
        sys.exit("taskset is missing: it is in util-linux (apt-get install util-linux)")
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install -y wrk", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        apt = ["apt-get", "install", "-y", "-q", "wrk"]
        if subprocess.run(apt, env=env, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
            subprocess.run(apt, env=env, check=False)
        if shutil.which("wrk") is None:
            sys.exit("could not install wrk: install it (Debian's package `wrk`) and run again")
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return (out.stdout + out.stderr).splitlines()[0].strip()


# -- checks ----------------------------------------------------------------------------------


def get(url: str, headers: dict[str, str], timeout: float = 10.0) -> tuple[int, Any, bytes]:
    """Status, headers (lower-cased names) and body of one request; HTTP errors included."""
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (http://127.0.0.1 only)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status, found, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        status, found, body = e.code, e.headers, e.read()
    return status, {k.lower(): v for k, v in found.items()}, body


class Redis:
    """The parent's view of Redis: this run's keys and the server's command count."""

    def __init__(self) -> None:
        import redis

        self.client = redis.Redis.from_url(REDIS_URL, decode_responses=True)

    def keys(self, prefix: str = PREFIX) -> list[str]:
        return sorted(self.client.scan_iter(match=f"{prefix}*", count=1000))

    def reads(self) -> int:
        """Read events the server has processed: one per round trip of a client (of any
        client: other traffic only adds). Not ``total_commands_processed``, which also counts
        the commands a Lua script runs."""
        return int(self.client.info("stats")["total_reads_processed"])

    def slowapi_hits(self, prefix: str) -> int:
        names = self.keys(f"{prefix}slowapi")
        assert len(names) <= 1, f"expected one slowapi counter under {prefix}, found {names}"
        return int(self.client.get(names[0]) or 0) if names else 0

    def cleanup(self) -> int:
        names = self.keys()
        for i in range(0, len(names), 500):
            self.client.delete(*names[i : i + 500])
        return len(names)

    def close(self) -> None:
        self.client.close()


def hits(server: Server, r: Redis | None) -> int | None:
    """Requests slowapi has counted (None: not a slowapi variant)."""
    if server.spec.guard != "slowapi":
        return None
    if server.spec.limiter == "redis":
        assert r is not None
        return r.slowapi_hits(server.prefix)
    return server.stats()["slowapi_hits"]


def check(server: Server, r: Redis | None) -> str:
    """Refuse to measure a server that answers wrongly or whose limiter does not do its work."""
    spec, name = server.spec, server.spec.name
    # The first request also fills keysentry's cache: the measured requests find it warm.
    status, headers, body = get(server.url, {server.header: server.value}, STARTUP_TIMEOUT)
    assert status == 200, f"{name}: {status} with the key: {body[:200]!r}"
    assert json.loads(body) == {"ok": True}, f"{name}: body {body[:200]!r}"
    status, _, body = get(server.url, {})
    expected = 401 if spec.protected else 200
    assert status == expected, f"{name}: {status} without the key (expected {expected})"
    notes = [f"200 with the key, {status} without"]
    if spec.guard == "keysentry":
        field = headers.get("ratelimit")
        if spec.limiter is None:
            assert field is None, f"{name}: a RateLimit header without a limiter"
        else:
            assert field is not None, f"{name}: no RateLimit header: the limiter did not run"
            assert "ratelimit-policy" in headers, f"{name}: no RateLimit-Policy header"
            notes.append(f"RateLimit: {field}")
        failures = server.stats()["limiter_failures"]
        assert failures == 0, f"{name}: the limiter failed {failures} times (and failed open)"
    before = hits(server, r)
    if before is not None:
        for _ in range(3):
            get(server.url, {server.header: server.value})
        after = hits(server, r)
        assert after == before + 3, f"{name}: slowapi counted {before} -> {after} for 3 requests"
        where = "Redis" if spec.limiter == "redis" else "memory"
        notes.append(f"slowapi's {where} counter {before} -> {after} after 3 requests")
    return "; ".join(notes)


def check_measured(
    server: Server, r: Redis | None, result: dict[str, Any], before: dict[str, Any]
) -> list[str]:
    """After a measurement: what the server counted agrees with what wrk sent."""
    spec, name, requests = server.spec, server.spec.name, result["requests"]
    notes = []
    if spec.guard == "keysentry":
        failures = server.stats()["limiter_failures"]
        assert failures == 0, f"{name}: the limiter failed {failures} times under load"
    if before["hits"] is not None:
        counted = hits(server, r) - before["hits"]  # type: ignore[operator]
        if time.monotonic() - server.started < WINDOW_SAFE:
            # wrk counts the responses it read; requests cut off at the end are counted too.
            assert counted >= requests, f"{name}: slowapi counted {counted} of {requests}"
            notes.append(f"slowapi counted {counted} for wrk's {requests}")
    if before["reads"] is not None:
        assert r is not None
        reads = r.reads() - before["reads"]
        if spec.limiter == "redis":
            assert reads >= requests, f"{name}: {reads} Redis round trips for {requests} requests"
        result["redis_round_trips_per_request"] = per = reads / requests
        notes.append(f"{per:.2f} Redis round trips per request (other clients' included)")
    return notes


# -- the run ---------------------------------------------------------------------------------


def measure_once(
    spec: Spec, round_: int, args: argparse.Namespace, r: Redis | None
) -> dict[str, Any]:
    """Start a server, check it, warm it up, measure it, stop it."""
    prefix = f"{PREFIX}r{round_}-"
    with running(spec, prefix, args.server_cpu) as server:
        checked = check(server, r)
        if args.warmup:
            run_wrk(server, args.warmup, args.wrk_cpu)
        before = {
            "hits": hits(server, r),
            "reads": r.reads() if r is not None and spec.limiter in ("redis", "leased") else None,
        }
        cpu, core, start = server.cpu(), core_busy(args.server_cpu), time.monotonic()
        result = run_wrk(server, args.duration, args.wrk_cpu)
        used, elapsed = server.cpu() - cpu, time.monotonic() - start
        result["server_cpu_us_per_request"] = used / result["requests"] * 1e6
        # Below 100 %, something held the server back: other work on its core (the next
        # figure), or on wrk's, which then sent fewer requests. The noise in req/s.
        result["server_busy_pct"] = 100 * used / elapsed
        others = max(0.0, core_busy(args.server_cpu) - core - used)
        result["server_core_others_pct"] = 100 * others / elapsed
        notes = [checked, *check_measured(server, r, result, before)]
        result |= {"round": round_, "loop": server.loop, "checks": notes}
        errors = server.errors().strip()
    if errors:
        print(f"  {spec.name} said on stderr:\n{errors}", file=sys.stderr)
    return result


Results = dict[str, list[dict[str, Any]]]  # variant -> one result per round


def run(specs: list[Spec], args: argparse.Namespace, r: Redis | None) -> Results:
    """``args.rounds`` rounds, each variant once per round, the order rotating."""
    results: Results = {s.name: [] for s in specs}
    for round_ in range(args.rounds):
        shift = round_ % len(specs)
        for spec in specs[shift:] + specs[:shift]:
            result = measure_once(spec, round_, args, r)
            results[spec.name].append(result)
            latency = result["latency_ms"]
            print(
                f"  round {round_ + 1}/{args.rounds}  {spec.name:<30} "
                f"{result['requests_per_sec']:>9.0f} req/s  p50 {latency['p50']:.2f} ms  "
                f"p99 {latency['p99']:.2f} ms  "
                f"server {result['server_cpu_us_per_request']:.1f} CPU µs/req, "
                f"busy {result['server_busy_pct']:.0f} %, "
                f"others {result['server_core_others_pct']:.0f} % of its core",
                flush=True,
            )
            if round_ == 0:
                for note in result["checks"]:
                    print(f"      ok  {note}")
    return results


def summarize(specs: list[Spec], results: Results) -> list[dict[str, Any]]:
    rows = []
    for spec in specs:
        rounds = results[spec.name]
        rps = [x["requests_per_sec"] for x in rounds]
        rows.append(
            {
                "name": spec.name,
                "label": spec.label,
                "median_rps": statistics.median(rps),
                "min_rps": min(rps),
                "max_rps": max(rps),
                "p50_ms": statistics.median(x["latency_ms"]["p50"] for x in rounds),
                "p99_ms": statistics.median(x["latency_ms"]["p99"] for x in rounds),
                "cpu_us": statistics.median(x["server_cpu_us_per_request"] for x in rounds),
                "rounds": rounds,
            }
        )
    base = next(row["median_rps"] for row in rows if row["name"] == BASELINE)
    base_cpu = next(row["cpu_us"] for row in rows if row["name"] == BASELINE)
    for row in rows:
        row["ratio"] = row["median_rps"] / base
        row["cpu_ratio"] = base_cpu / row["cpu_us"]
        row["min_ratio"], row["max_ratio"] = row["min_rps"] / base, row["max_rps"] / base
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| variant | req/s (median) | req/s min-max | vs bare Starlette | p50 ms | p99 ms "
        "| server CPU µs/req | vs bare, by CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {x['name']} | {x['median_rps']:,.0f} | {x['min_rps']:,.0f}-{x['max_rps']:,.0f} "
        f"| {x['ratio']:.2f} | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {x['cpu_us']:.1f} "
        f"| {x['cpu_ratio']:.2f} |"
        for x in rows
    ]
    return "\n".join(lines)


def chart(rows: list[dict[str, Any]], path: str, subtitle: str) -> None:
    """Horizontal bars per variant: req/s relative to bare Starlette (whiskers: min-max over
    rounds), and the same ratio by the server's CPU time per request; p99 annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = rows[::-1]  # the first variant on top
    y = list(range(len(rows)))
    colors = [
        "#2a7ab0" if "keysentry" in x["name"] else "#7d7d7d" if x["name"] == BASELINE else "#a8a8a8"
        for x in rows
    ]
    fig, ax = plt.subplots(figsize=(10.5, 0.62 * len(rows) + 1.9), dpi=110)
    spread = [
        [x["ratio"] - x["min_ratio"] for x in rows],
        [x["max_ratio"] - x["ratio"] for x in rows],
    ]
    ax.barh(
        [i + 0.19 for i in y], [x["ratio"] for x in rows], height=0.36, color=colors,
        xerr=spread, error_kw={"ecolor": "#333333", "capsize": 2.5, "lw": 0.9},
    )  # fmt: skip
    ax.barh(
        [i - 0.19 for i in y], [x["cpu_ratio"] for x in rows], height=0.36, color=colors,
        alpha=0.45, hatch="///", edgecolor="white", lw=0,
    )  # fmt: skip
    right = max(max(x["max_ratio"], x["cpu_ratio"]) for x in rows)
    for i, x in enumerate(rows):
        ax.text(
            max(x["max_ratio"], x["cpu_ratio"]) + right * 0.015, i,
            f"{x['ratio']:.2f} ({x['median_rps']:,.0f} req/s), by CPU {x['cpu_ratio']:.2f}\n"
            f"p99 {x['p99_ms']:.1f} ms",
            va="center", fontsize=8.5, linespacing=1.3,
        )  # fmt: skip
    ax.set_yticks(y, [x["label"] for x in rows])
    ax.axvline(1.0, color="#555555", lw=0.8, ls="--")
    ax.set_xlim(0, right * 1.6)
    ax.set_xlabel("relative to bare Starlette (1.0 = as fast; higher is faster)")
    ax.set_title(f"End to end, uvicorn + wrk over loopback\n{subtitle}", fontsize=10)
    ax.legend(
        handles=[
            Patch(color="#7d7d7d", label="req/s (median over rounds; whiskers: min-max)"),
            Patch(facecolor="#7d7d7d", alpha=0.45, hatch="///", edgecolor="white",
                  label="by CPU: bare Starlette's server CPU µs/request ÷ the variant's"),
        ],
        loc="lower right", fontsize=8, frameon=False,
    )  # fmt: skip
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def versions_of(packages: list[str]) -> list[str]:
    found = []
    for p in packages:
        try:
            version(p)
        except PackageNotFoundError:
            continue
        found.append(p)
    return found


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "serve":  # the server process
        serve(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--duration", type=int, default=5, help="seconds measured (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up (default 1)")
    parser.add_argument(
        "--variants",
        help=f"comma-separated, out of: {', '.join(SPECS)} ({BASELINE} is always run)",
    )
    parser.add_argument("--server-cpu", type=int, default=0, help="core of the server (0)")
    parser.add_argument("--wrk-cpu", type=int, default=1, help="core of wrk (1)")
    parser.add_argument("--json", metavar="FILE", help="also write the raw results as JSON")
    default_chart = str(Path(__file__).with_suffix(".png"))
    parser.add_argument("--chart", metavar="PNG", default=default_chart, help="(e2e.png)")
    parser.add_argument("--no-chart", action="store_true", help="draw no chart")
    args = parser.parse_args()

    specs = VARIANTS
    if args.variants:
        names = [n.strip() for n in args.variants.split(",") if n.strip()]
        if unknown := [n for n in names if n not in SPECS]:
            parser.error(f"unknown variants {unknown}; known: {', '.join(SPECS)}")
        specs = [SPECS[n] for n in dict.fromkeys([BASELINE, *names])]
    cpus = os.sched_getaffinity(0)
    if args.server_cpu == args.wrk_cpu or not {args.server_cpu, args.wrk_cpu} <= cpus:
        parser.error(f"--server-cpu and --wrk-cpu must be two different cores of {sorted(cpus)}")
    if args.rounds < 1 or args.duration < 1 or args.warmup < 0:
        parser.error("--rounds and --duration must be at least 1, --warmup at least 0")
    # SIGTERM ends the run like Ctrl-C: through the finally blocks that stop and clean up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    wrk_version = ensure_tools()
    packages = [*PACKAGES, "uvicorn", "httptools", "uvloop", "redis", "hiredis", "limits"]
    versions = environment(versions_of(packages))
    print(f"{wrk_version}; uvicorn --http httptools --loop {uvicorn_loop()}, one worker")
    print(
        f"server on core {args.server_cpu}, wrk on core {args.wrk_cpu} (-t1 -c{CONNECTIONS}); "
        f"{args.rounds} rounds x {len(specs)} variants, each a fresh server: checks, "
        f"{args.warmup} s warm-up, {args.duration} s measured; limit {HIGH_LIMIT} (never "
        f"refuses)\n"
    )
    r = Redis() if any(s.limiter in ("redis", "leased") for s in specs) else None
    try:
        if r is not None:
            print(f"Redis at {REDIS_URL}, key prefix {PREFIX}")
        results = run(specs, args, r)
    finally:
        if r is not None:
            print(f"cleanup: deleted {r.cleanup()} Redis keys under {PREFIX}")
            r.close()
    rows = summarize(specs, results)
    print()
    print(table(rows))
    settings = {
        "rounds": args.rounds,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "connections": CONNECTIONS,
        "wrk_threads": 1,
        "server_cpu": args.server_cpu,
        "wrk_cpu": args.wrk_cpu,
        "loop": uvicorn_loop(),
        "http": "httptools",
        "limit": HIGH_LIMIT,
    }
    if not args.no_chart:
        subtitle = (
            f"1 uvicorn worker (httptools, {uvicorn_loop()}) on one core, wrk -t1 -c{CONNECTIONS} "
            f"on another; {args.rounds} rounds x {args.duration} s"
        )
        chart(rows, args.chart, subtitle)
        print(f"\nwrote {args.chart}")
    if args.json:
        with open(args.json, "w") as f:
            data = {"versions": versions, "wrk": wrk_version, "settings": settings}
            json.dump({**data, "redis_prefix": PREFIX, "variants": rows}, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

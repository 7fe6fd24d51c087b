"""benchmarks/e2e.py, without wrk: its parser of wrk's output, its variants' wiring, its server.

The benchmark is only worth its numbers if every variant answers as it should and the numbers
are read right: the parser is fed wrk's real output (captured from wrk 4.1.0), each variant's
app is called in process through httpx, and one variant is served by uvicorn in a subprocess
the way the benchmark serves it, and checked over the socket.
"""

from __future__ import annotations

import importlib
import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from .services import REDIS_URL, delete_namespace, namespace, redis_or_skip

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"

# `wrk -t1 -c32 -d2s --latency -H 'Authorization: Bearer ...'` against starlette-keysentry-redis.
WRK_OUTPUT = """\
Running 2s test @ http://127.0.0.1:54453/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    10.93ms   13.65ms 113.90ms   94.74%
    Req/Sec     3.67k     0.91k    4.97k    65.00%
  Latency Distribution
     50%    7.98ms
     75%   11.07ms
     90%   14.41ms
     99%   90.64ms
  7373 requests in 2.02s, 1.57MB read
Requests/sec:   3655.79
Transfer/sec:    796.13KB
"""

# Without the key (every answer a 401), microseconds in the distribution; the socket errors
# line is the one wrk prints when any error occurred.
WRK_OUTPUT_ERRORS = """\
Running 1s test @ http://127.0.0.1:54005/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   816.77us    1.09ms   7.91ms   81.91%
    Req/Sec    13.05k     1.62k   16.32k    80.00%
  Latency Distribution
     50%  149.00us
     75%    1.34ms
     90%    2.62ms
     99%    4.10ms
  13012 requests in 1.00s, 4.12MB read
  Socket errors: connect 0, read 2, write 0, timeout 7
  Non-2xx or 3xx responses: 13012
Requests/sec:  12972.15
Transfer/sec:      4.11MB
"""


@pytest.fixture(scope="module")
def e2e() -> Iterator[ModuleType]:
    """The script as a module; it imports its siblings, as a script run from benchmarks/ does."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("e2e")
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_parse_wrk(e2e: ModuleType) -> None:
    found = e2e.parse_wrk(WRK_OUTPUT)
    assert found["requests_per_sec"] == 3655.79
    assert found["requests"] == 7373
    assert found["duration_s"] == pytest.approx(2.02)
    assert found["latency_ms"] == {"p50": 7.98, "p75": 11.07, "p90": 14.41, "p99": 90.64}
    assert found["non_2xx"] == 0
    assert found["socket_errors"] == {}


def test_parse_wrk_units_and_errors(e2e: ModuleType) -> None:
    found = e2e.parse_wrk(WRK_OUTPUT_ERRORS)
    assert found["requests_per_sec"] == 12972.15
    assert found["latency_ms"]["p50"] == pytest.approx(0.149)
    assert found["latency_ms"]["p99"] == pytest.approx(4.10)
    assert found["non_2xx"] == 13012
    assert found["socket_errors"] == {"connect": 0, "read": 2, "write": 0, "timeout": 7}


def test_parse_wrk_refuses_other_output(e2e: ModuleType) -> None:
    with pytest.raises(ValueError, match="not wrk output"):
        e2e.parse_wrk("Usage: wrk <options> <url>\n")
    without_latency = WRK_OUTPUT.replace("Latency Distribution", "Something else")
    with pytest.raises(ValueError, match="--latency"):
        e2e.parse_wrk(without_latency)


def test_wrk_command(e2e: ModuleType) -> None:
    server: Any = type("S", (), {"header": "X-API-Key", "value": "k", "url": "http://h/"})()
    assert e2e.wrk_command(server, 5, 1) == [
        *("taskset", "-c", "1", "wrk", "-t1", "-c32", "-d5s", "--latency"),
        *("-H", "X-API-Key: k", "http://h/"),
    ]


def test_variants(e2e: ModuleType) -> None:
    """The variants the issue asks for, the baseline first, each with the header it reads."""
    names = [s.name for s in e2e.VARIANTS]
    assert names[0] == e2e.BASELINE == "starlette"
    assert names == [
        "starlette",
        "starlette-authmw",
        "fastapi-apikey-slowapi-memory",
        "fastapi-apikey-slowapi-redis",
        "starlette-keysentry",
        "starlette-keysentry-memory",
        "starlette-keysentry-redis",
        "starlette-keysentry-leased",
    ]
    assert sorted(e2e.SPECS) == sorted(NAMES)
    for spec in e2e.SPECS.values():
        assert spec.header == ("X-API-Key" if spec.name.startswith("fastapi") else "Authorization")


#: Every variant, the optional bare FastAPI app included.
NAMES = [
    "starlette",
    "starlette-authmw",
    "fastapi",
    "fastapi-apikey-slowapi-memory",
    "fastapi-apikey-slowapi-redis",
    "starlette-keysentry",
    "starlette-keysentry-memory",
    "starlette-keysentry-redis",
    "starlette-keysentry-leased",
]


@pytest.fixture(params=NAMES)
def variant(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """A variant's name and the Redis prefix it may write under (deleted afterwards)."""
    ns = namespace()
    if "redis" in request.param:
        redis_or_skip()
    try:
        yield request.param, f"{ns}:"
    finally:
        if "redis" in request.param:
            delete_namespace(REDIS_URL, ns)


async def test_variant_wiring(e2e: ModuleType, variant: tuple[str, str]) -> None:
    """200 with the key and 401 without (200 for the bare apps); the limiters do their work."""
    name, prefix = variant
    spec = e2e.SPECS[name]
    served = e2e.build(spec, prefix)
    transport = httpx.ASGITransport(app=served.app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            ok = await client.get("/", headers={served.header: served.value})
            assert ok.status_code == 200
            assert ok.json() == {"ok": True}
            missing = await client.get("/")
            assert missing.status_code == (401 if spec.protected else 200)
            if spec.guard == "keysentry":
                assert ("ratelimit" in ok.headers) == (spec.limiter is not None)
                assert served.stats() == {"limiter_failures": 0}
            if spec.guard == "slowapi" and spec.limiter == "memory":
                before = served.stats()["slowapi_hits"]
                await client.get("/", headers={served.header: served.value})
                assert served.stats()["slowapi_hits"] == before + 1
    finally:
        for limiter in served.redis_limiters:
            await limiter.aclose()
    if spec.guard == "slowapi" and spec.limiter == "redis":
        # (keysentry's state under this limit expires a millisecond after each request)
        import redis

        r = redis.Redis.from_url(REDIS_URL)
        try:
            assert list(r.scan_iter(match=f"{prefix}slowapi*")), "no counter under the prefix"
        finally:
            r.close()


def test_server(e2e: ModuleType) -> None:
    """A variant served as the benchmark serves it: uvicorn in a subprocess, checked over the
    socket (keysentry with its memory limiter: 200, 401, RateLimit headers), then stopped."""
    spec = e2e.SPECS["starlette-keysentry-memory"]
    with e2e.running(spec, "unused:", 0) as server:
        assert server.loop == e2e.uvicorn_loop()
        notes = e2e.check(server, None)
        assert "RateLimit:" in notes
        assert server.stats() == {"limiter_failures": 0}
        assert 0 < server.cpu() < 60  # the interpreter's start-up at least
        proc = server.proc
    assert proc.returncode is not None


def test_listening_socket_is_tcp(e2e: ModuleType) -> None:
    """The server's socket names TCP, or asyncio leaves Nagle on: 44 ms per request."""
    sock = e2e.listening_socket()
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockname()[0] == "127.0.0.1"
        assert sock.getsockname()[1] > 0
    finally:
        sock.close()


def test_report(e2e: ModuleType, tmp_path: Path) -> None:
    """Medians over rounds, ratios to bare Starlette, the table and the chart."""

    def result(rps: float, p50: float, p99: float, cpu: float = 10.0) -> dict[str, Any]:
        latency = {"p50": p50, "p99": p99}
        return {"requests_per_sec": rps, "latency_ms": latency, "server_cpu_us_per_request": cpu}

    specs = [e2e.SPECS["starlette"], e2e.SPECS["starlette-keysentry"]]
    results = {
        "starlette": [result(1000, 1.0, 3.0), result(900, 1.2, 2.0), result(1100, 0.9, 9.0)],
        "starlette-keysentry": [result(500, 2, 4, 20), result(450, 2.5, 5, 21), result(800, 1, 6)],
    }
    rows = e2e.summarize(specs, results)
    found = [(x["median_rps"], x["ratio"], x["p50_ms"], x["p99_ms"], x["cpu_us"]) for x in rows]
    assert found == [(1000, 1.0, 1.0, 3.0, 10.0), (500, 0.5, 2.0, 5.0, 20.0)]
    assert rows[1]["min_ratio"] == 0.45
    assert rows[1]["max_ratio"] == 0.8
    assert rows[1]["cpu_ratio"] == 0.5  # bare Starlette's CPU time per request over its own
    lines = e2e.table(rows).splitlines()
    assert lines[2] == "| starlette | 1,000 | 900-1,100 | 1.00 | 1.00 | 3.00 | 10.0 | 1.00 |"
    assert lines[3] == "| starlette-keysentry | 500 | 450-800 | 0.50 | 2.00 | 5.00 | 20.0 | 0.50 |"
    chart = tmp_path / "e2e.png"
    e2e.chart(rows, str(chart), "test")
    assert chart.read_bytes().startswith(b"\x89PNG")
    json.dumps(rows)  # what --json writes


def test_instructions_reads_callgrind_and_counts_only_the_measured_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """benchmarks/instructions.py: each default variant exists in the in-process benchmark,
    a child run serves it, and per_request is the difference of two totals over N."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        instructions = importlib.import_module("instructions")
        inprocess = importlib.import_module("inprocess")
    finally:
        sys.path.remove(str(BENCHMARKS))
    import asyncio

    names = {v.name for v in inprocess.build(asyncio.new_event_loop())}
    assert set(instructions.VARIANTS) <= names
    instructions.child("starlette-keysentry-memory", 5)  # serves, without valgrind
    instructions.child("starlette-keysentry-memory", 0)  # the empty run makes the same calls
    totals = {0: 1_000_000, 400: 1_800_000}
    monkeypatch.setattr(instructions, "count", lambda name, n: totals[n])
    assert instructions.per_request("starlette", 400) == 2000
    # The head of a thread's file, as callgrind 3.19 writes it with --separate-threads=yes.
    head = b"version: 1\ncreator: callgrind-3.19.0\npid: 7\nthread: 1\npart: 1\n\n"
    head += b"events: Ir\nsummary: 123456789\n\nfl=(1) ???\n"
    assert instructions.SUMMARY.search(head).group(1) == b"123456789"  # type: ignore[union-attr]


def _run_script(name: str, *args: str) -> str:
    """A benchmark script run as a process of its own, from benchmarks/: what it printed."""
    import subprocess

    ran = subprocess.run(
        [sys.executable, name, *args],
        cwd=BENCHMARKS,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    return ran.stdout


def test_the_django_benchmark_runs_and_every_variant_answers_200() -> None:
    """benchmarks/django_inprocess.py configures Django for its own process: run it as one,
    with few iterations (its check refuses a variant that does not answer 200)."""
    out = _run_script("django_inprocess.py", "--rounds", "2", "--batch", "5")
    for name in ("drf-apikey-throttle", "drf-keysentry-memory", "django-keysentry-memory"):
        assert f"| {name} |" in out
    assert "| overhead drf-keysentry-memory / drf-apikey |" in out


def test_the_timing_benchmark_runs_both_cases() -> None:
    """benchmarks/timing.py, with few calls: a row per case and run, every refusal a refusal
    (the script asserts the warm case's keys are answered as they should be)."""
    out = _run_script("timing.py", "--calls", "200", "--runs", "1")
    assert "| cold | 1 |" in out
    assert "| warm | 1 |" in out

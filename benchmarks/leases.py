"""What leasing saves Redis, and what it costs in admissions: several processes, one key.

    uv run python benchmarks/leases.py
    uv run python benchmarks/leases.py --processes 4 --load 3 --seconds 10 --lease 16

Needs the Redis server on 127.0.0.1:6379. Two scenarios, each run with the plain
``RedisLimiter`` (one round trip per request) and the ``LeasedLimiter`` in the same run:

* **far from the limit**: every process sends as fast as it can under a limit it never reaches;
  the table gives Redis round trips per request (counted by the limiter, and checked against
  Redis's own command count).
* **over the limit**: ``--processes`` processes together send ``--load`` times the limit
  (``--rate``, burst ``--burst``), each at an even pace, for ``--seconds``. The table gives round
  trips per request, the requests admitted as a share of what GCRA admits over the run
  (``B + duration / T``), and the largest excess over GCRA's own bound in any window (0 means
  never one request above it).

Every key is under ``ksbench-lease:<pid>-<random>:`` and deleted at the end.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import secrets
import time
from typing import Any

import redis

from keysentry.ratelimit import MemoryLimiter
from keysentry.ratelimit.gcra import US, policies_of
from keysentry.ratelimit.leased import LeasedLimiter
from keysentry.ratelimit.redis import RedisLimiter
from keysentry.records import Rate

URL = "redis://127.0.0.1:6379/0"


def worker(args: tuple[str, str, Rate, float, float, int, int, float]) -> dict[str, Any]:
    kind, ns, rate, pace, seconds, count, lease, lease_time = args
    if kind == "leased":
        limiter: Any = LeasedLimiter(URL, namespace=ns, lease=lease, lease_time=lease_time)
    else:
        limiter = RedisLimiter(URL, namespace=ns)
    policies = policies_of([rate])
    admitted: list[float] = []
    sent = 0
    start = time.perf_counter()
    end = start + seconds
    try:
        while (count and sent < count) or (not count and time.perf_counter() < end):
            if pace:
                due = start + sent / pace
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            sent += 1
            if limiter.hit("bench", policies).allowed:
                admitted.append(time.time())
    finally:
        limiter.close()
    trips = limiter.round_trips if kind == "leased" else sent
    return {"sent": sent, "admitted": admitted, "trips": trips}


def run(kind: str, args: argparse.Namespace, over: bool) -> dict[str, Any]:
    ns = f"ksbench-lease:{os.getpid()}-{secrets.token_hex(4)}"
    if over:
        parsed = Rate.parse(args.rate)
        rate = Rate(parsed.limit, parsed.period, args.burst or None)
    else:
        rate = Rate.parse("100000000/minute")
    (policy,) = policies_of([rate])
    per_second = policy.limit / policy.window
    pace = per_second * args.load / args.processes if over else 0.0
    count = 0 if over else args.far
    client = redis.Redis.from_url(URL)
    before = int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
    jobs = [(kind, ns, rate, pace, args.seconds, count, args.lease, args.lease_time)] * (
        args.processes
    )
    with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
        results = pool.map(worker, jobs)
    after = int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
    for key in client.scan_iter(match=f"{ns}:*"):
        client.delete(key)
    client.close()
    sent = sum(r["sent"] for r in results)
    times = sorted(t for r in results for t in r["admitted"])
    trips = sum(r["trips"] for r in results)
    row: dict[str, Any] = {
        "kind": kind,
        "sent": sent,
        "admitted": len(times),
        "trips_per_request": trips / sent,
        "evalsha_per_request": (after - before) / sent,
    }
    if over and times:
        interval = policy.interval / US
        duration = times[-1] - times[0]
        row["share_of_bound"] = len(times) / (policy.burst + duration / interval)
        row["max_excess"] = max_excess(times, policy.burst, interval)
    return row


def max_excess(times: list[float], burst: int, interval: float) -> int:
    """The most requests any window held above GCRA's bound for it, B + floor(w / T)."""
    worst = -(10**9)
    n = len(times)
    for i in range(n):
        # Windows starting at times[i]: the count grows faster than the bound only at
        # admissions, so checking each end point is enough.
        for j in range(i, n):
            allowed = burst + math.floor((times[j] - times[i]) / interval)
            worst = max(worst, (j - i + 1) - allowed)
            if j - i > burst + 4 * (times[j] - times[i]) / interval + 50:
                break
    return max(worst, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--load", type=float, default=3.0, help="times the limit, all together")
    parser.add_argument("--rate", default="6000/minute")
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--far", type=int, default=4000, help="requests per process, far case")
    parser.add_argument("--lease", type=int, default=16)
    parser.add_argument("--lease-time", type=float, default=1.0)
    args = parser.parse_args()
    MemoryLimiter()  # the package imports cleanly before forking anything
    print(f"{args.processes} processes, lease {args.lease}, lease_time {args.lease_time}s")
    print("\n| scenario | limiter | sent | admitted | round trips/request | EVALSHA/request |"
          " admitted / GCRA bound | max excess in a window |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for over in (False, True):
        for kind in ("plain", "leased"):
            row = run(kind, args, over)
            share = f"{row['share_of_bound']:.3f}" if "share_of_bound" in row else "—"
            excess = str(row["max_excess"]) if "max_excess" in row else "—"
            scenario = f"{args.load:g}x the limit" if over else "far from the limit"
            print(
                f"| {scenario} | {kind} | {row['sent']} | {row['admitted']} | "
                f"{row['trips_per_request']:.3f} | {row['evalsha_per_request']:.3f} | "
                f"{share} | {excess} |"
            )


if __name__ == "__main__":
    main()

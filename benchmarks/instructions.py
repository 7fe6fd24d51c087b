"""Instructions per request, counted under callgrind: the in-process variants, not timed.

A timing on a shared machine moves with its neighbours (a bare Starlette request here has
measured anywhere from 11 to 21 µs from one run to the next); the instructions a request
executes do not. Each variant of ``inprocess.py`` runs in a process of its own under
``valgrind --tool=callgrind``, twice: after the same warm-up, once with no measured requests
and once with ``--requests``. The difference of the two totals divided by the requests is the
variant's instructions per request; overheads and ratios follow ``inprocess.py`` (the same
apps, the same pairs). Instructions are not time (a cache miss costs more than an add), so the
timed benchmark stays the reference; this one is its repeatable cross-check.

    uv run python benchmarks/instructions.py [--requests 2000] [--jobs 2]
    uv run python benchmarks/instructions.py --variants starlette,starlette-keysentry

Needs valgrind (installed with apt-get when missing).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).parent
#: The variants counted by default, and the pairs whose overheads are compared.
VARIANTS = [
    "starlette",
    "starlette-authmw",
    "starlette-keysentry",
    "starlette-keysentry-memory",
    "fastapi",
    "fastapi-apikey-slowapi",
    "flask",
    "flask-before",
    "flask-keysentry",
    "flask-keysentry-memory",
]
WARMUP = 300
SUMMARY = re.compile(rb"^summary: (\d+)", re.MULTILINE)


def child(name: str, requests: int) -> None:
    """Inside callgrind: build the variants, warm one up, then run ``requests`` of it."""
    sys.path.insert(0, str(HERE))
    import inprocess

    loop = asyncio.new_event_loop()
    chosen = {v.name: v for v in inprocess.build(loop)}[name]
    inprocess.run_batch(loop, chosen, WARMUP, gc_off=True)
    gc.collect()
    # Both runs make this call, with no requests or with some: its fixed costs (a full
    # collection of a heap that holds every framework, the loop's start) would otherwise
    # land on the requests, some 25 million instructions, 25,000 a request at 1,000.
    inprocess.run_batch(loop, chosen, requests, gc_off=True)
    # The requests' garbage is collected here, in both runs, rather than by whichever
    # allocation next crosses a threshold, which may come after the end of one run and
    # not of the other (Flask's counts moved by 26,000 a request between runs).
    gc.collect()


def count(name: str, requests: int) -> int:
    """Instructions the main thread runs in a whole run of ``child(name, requests)``.

    The main thread only: the apps' background threads (usage flushers, invalidator pings)
    wake by the clock, so what they run grows with how slowly this machine ran the requests,
    not with the requests."""
    with tempfile.TemporaryDirectory() as out:
        ran = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--separate-threads=yes",
                f"--callgrind-out-file={out}/callgrind",
                sys.executable,
                __file__,
                "--child",
                name,
                str(requests),
            ],
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            check=False,
        )
        main = Path(out, "callgrind-01")
        found = SUMMARY.search(main.read_bytes()) if main.exists() else None
    if ran.returncode != 0 or found is None:
        raise SystemExit(f"{name}: callgrind run failed\n{ran.stderr.decode()[-2000:]}")
    return int(found.group(1))


def per_request(name: str, requests: int) -> float:
    return (count(name, requests) - count(name, 0)) / requests


def ensure_valgrind() -> None:
    if shutil.which("valgrind") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "valgrind"], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="measured requests (2000)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="runs at once")
    parser.add_argument("--variants", help="comma-separated names (default: the usual ten)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import keysentry.pipeline

        # PYTHONHASHSEED is fixed so that both runs lay out their dicts alike; keysentry reads
        # a fixed seed as a known hash key and tags verified keys with BLAKE2s, not hash().
        # Count the path a deployment takes (CPython draws the key at random by default):
        # the same SipHash code runs whatever its key.
        keysentry.pipeline.hash_key_is_random = lambda: True
        child(args.child[0], int(args.child[1]))
        return

    sys.path.insert(0, str(HERE))
    import inprocess

    ensure_valgrind()
    names = args.variants.split(",") if args.variants else VARIANTS
    print(f"{len(names)} variants, {args.requests} requests each under callgrind ...", flush=True)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        counted = dict(
            zip(names, pool.map(lambda n: per_request(n, args.requests), names), strict=True)
        )

    bare = ("starlette", "fastapi", "flask")
    print("\n| variant | instructions/request | overhead |")
    print("|---|---:|---:|")
    overhead: dict[str, float] = {}
    for name, value in counted.items():
        base = next((b for b in bare if name.startswith(b + "-")), None)
        if base is not None and base in counted:
            overhead[name] = value - counted[base]
            print(f"| {name} | {value:,.0f} | +{overhead[name]:,.0f} vs {base} |")
        else:
            print(f"| {name} | {value:,.0f} | — |")
    print("\n| ratio of overheads | value |")
    print("|---|---:|")
    ratios = {}
    for a, b in inprocess.VERSUS:
        if a in overhead and b in overhead:
            ratios[f"{a} / {b}"] = overhead[a] / overhead[b]
            print(f"| {a} / {b} | {overhead[a] / overhead[b]:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"instructions": counted, "overhead": overhead, "ratios": ratios}, f)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()

"""Cost of a key lookup in each store: cold (cache miss), warm (cache hit) and at scale.

1. Cold: ``store.get(id)``, ``await store.aget(id)`` and ``Keysentry.authenticate(key)`` with
   the cache cleared before each call (one store lookup per call), over random existing ids, for
   MemoryStore, SQLStore on SQLite (a temporary file) and on PostgreSQL, and RedisStore.
2. Warm: ``Keysentry.authenticate(key)`` on a warm cache: the store is not touched, so the
   numbers should match across stores.
3. Scale: ``--keys`` records bulk-loaded into SQLite, PostgreSQL and Redis, then ``get`` and
   ``aget`` over ``--lookups`` random ids.

Every call is timed on its own (``perf_counter_ns``); tables show the median and p99 in µs.
Everything the run creates (a Redis namespace, a PostgreSQL schema, a temporary directory) is
removed at the end, also after a failure or Ctrl-C.

    uv run python benchmarks/stores.py [--keys 100000] [--samples 2000] [--json out.json]
    uv run python benchmarks/stores.py --keys 1000000
"""

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import random
import secrets
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

import redis
from sqlalchemy import create_engine, insert, text

from keysentry import Keysentry, MemoryStore
from keysentry.decision import Verdict
from keysentry.records import KeyRecord
from keysentry.stores.codec import encode
from keysentry.stores.redis import RedisStore
from keysentry.stores.sql import SQLStore
from keysentry.testing import make_record

SECRET = "benchmark-secret-0123456789abcdef"
PACKAGES = ["sqlalchemy", "psycopg", "redis", "hiredis"]
#: Owners the bulk-loaded records are spread over (so the owner indexes are populated too).
OWNERS = 1000
#: Records per bulk-load chunk: generated, written to every store, then dropped.
CHUNK = 10_000
#: Bulk-loaded records read back and compared field by field before anything is timed.
VERIFY = 200


@dataclass
class Backend:
    name: str
    store: Any
    scaled: bool  # takes part in the scale test
    keys: list[str] = field(default_factory=list)  # full keys issued for the cold/warm tests
    ids: list[str] = field(default_factory=list)  # their ids
    bulk_ids: list[str] = field(default_factory=list)
    results: dict[str, dict[str, float]] = field(default_factory=dict)


# -- timing --------------------------------------------------------------------------------------


def summary(samples_ns: list[int]) -> dict[str, float]:
    us = [s / 1000 for s in samples_ns]
    return {
        "n": len(us),
        "median_us": statistics.median(us),
        "p99_us": statistics.quantiles(us, n=100)[98],
    }


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def time_sync(
    call: Callable[[Any], Any], args: list[Any], before: Callable[[], Any] | None
) -> list[int]:
    """ns per call of ``call(arg)`` for each arg; ``before()`` runs untimed before each."""
    out = []
    clock = time.perf_counter_ns
    with quiet_gc():
        for arg in args:
            if before is not None:
                before()
            start = clock()
            call(arg)
            out.append(clock() - start)
    return out


def time_async(
    loop: asyncio.AbstractEventLoop,
    call: Callable[[str], Awaitable[Any]],
    args: list[str],
    before: Callable[[], Any] | None,
) -> list[int]:
    async def run() -> list[int]:
        out = []
        clock = time.perf_counter_ns
        for arg in args:
            if before is not None:
                before()
            start = clock()
            await call(arg)
            out.append(clock() - start)
        return out

    with quiet_gc():
        return loop.run_until_complete(run())


# -- setup and bulk loading ----------------------------------------------------------------------


def bulk_records(n: int, rng: random.Random) -> Iterator[list[KeyRecord]]:
    for start in range(0, n, CHUNK):
        yield [
            make_record(
                name=f"bulk {i}",
                owner=f"acct_{rng.randrange(OWNERS)}",
                scopes={"read"} if i % 2 else {"read", "write"},
            )
            for i in range(start, min(n, start + CHUNK))
        ]


def load_sql(store: SQLStore, records: list[KeyRecord]) -> None:
    """One multi-row INSERT batch (SQLAlchemy's insertmanyvalues) into the store's own table.

    The store has created its tables already (any read does); its table object and writer
    engine carry the column types and, on SQLite, the write-lock transaction mode.
    """
    rows = []
    for record in records:
        row = encode(record)
        row["disabled"] = bool(row["disabled"])
        rows.append(row)
    writer = store._faces().write
    with writer.begin() as conn:
        conn.execute(insert(store._queries.keys), rows)


def load_redis(client: redis.Redis, store: RedisStore, records: list[KeyRecord]) -> None:
    """A non-transactional pipeline writing what RedisStore.create's Lua script writes."""
    with client.pipeline(transaction=False) as pipe:
        for record in records:
            fields = {k: "" if v is None else v for k, v in encode(record).items()}
            pipe.hset(store.record_key(record.id), mapping=fields)
            pipe.set(store.digest_key(record.digest), record.id)
            pipe.zadd(store.index_key(None), {record.id: 0})
            if record.owner is not None:
                pipe.zadd(store.index_key(record.owner), {record.id: 0})
        pipe.execute()


def bulk_load(
    backends: list[Backend], n: int, client: redis.Redis, rng: random.Random
) -> dict[str, float]:
    """Load ``n`` records into every scaled backend; seconds spent per backend."""
    spent = {b.name: 0.0 for b in backends}
    check: list[KeyRecord] = []
    for chunk in bulk_records(n, rng):
        if len(check) < VERIFY:
            check += chunk[: VERIFY - len(check)]
        for b in backends:
            start = time.perf_counter()
            if isinstance(b.store, RedisStore):
                load_redis(client, b.store, chunk)
            else:
                load_sql(b.store, chunk)
            spent[b.name] += time.perf_counter() - start
            b.bulk_ids += [r.id for r in chunk]
    for b in backends:  # what was bulk-loaded reads back exactly as the store wrote it
        for record in check:
            assert b.store.get(record.id) == record, f"{b.name}: {record.id} reads back wrong"
            assert b.store.find_by_digest(record.digest) == record, f"{b.name}: digest lookup"
        listed = b.store.list_keys(owner=check[0].owner, limit=n + 10)
        assert check[0] in listed, f"{b.name}: owner index misses a bulk-loaded record"
    return spent


def issue(backend: Backend, ks: Keysentry, n: int) -> None:
    for _ in range(n):
        issued = ks.issue(name="bench", scopes={"read"})
        backend.keys.append(issued.key.reveal())
        backend.ids.append(issued.record.id)


# -- the three measurements ----------------------------------------------------------------------


def cold(b: Backend, loop: asyncio.AbstractEventLoop, samples: int, rng: random.Random) -> None:
    ks = Keysentry(b.store, secret=SECRET)
    idx = [rng.randrange(len(b.ids)) for _ in range(samples)]
    ids = [b.ids[i] for i in idx]
    tokens = [b.keys[i].encode() for i in idx]
    for token in tokens[:50]:  # connections, tables, engines: all made before timing
        ks.cache.clear()
        assert isinstance(ks.authenticate(token), Verdict), f"{b.name}: key refused"
        ks.cache.clear()
        assert isinstance(loop.run_until_complete(ks.aauthenticate(token)), Verdict)
    for key_id in ids[:50]:
        assert b.store.get(key_id) is not None
        assert loop.run_until_complete(b.store.aget(key_id)) is not None
    b.results["get"] = summary(time_sync(b.store.get, ids, None))
    b.results["aget"] = summary(time_async(loop, b.store.aget, ids, None))
    clear = ks.cache.clear
    by_token = {t.decode(): t for t in tokens}
    strs = [t.decode() for t in tokens]
    b.results["authenticate cold"] = summary(
        time_sync(lambda s: ks.authenticate(by_token[s]), strs, clear)
    )
    b.results["aauthenticate cold"] = summary(
        time_async(loop, lambda s: ks.aauthenticate(by_token[s]), strs, clear)
    )


WARM_ROUNDS = 5


def warm(backends: list[Backend], samples: int, rng: random.Random) -> None:
    """Round-robin over the stores, so no store gets the quieter (or noisier) moment."""
    setups = []
    for b in backends:
        ks = Keysentry(b.store, secret=SECRET)
        tokens = [k.encode() for k in b.keys]
        for token in tokens:  # every key cached (and its fast-path tag set)
            assert isinstance(ks.authenticate(token), Verdict)
            assert isinstance(ks.authenticate(token), Verdict)
        setups.append((b, ks, tokens, [], []))
    per_round = samples // WARM_ROUNDS
    for r in range(WARM_ROUNDS):
        turn = r % len(setups)
        for _, ks, tokens, single, means in setups[turn:] + setups[:turn]:
            picks = [rng.choice(tokens) for _ in range(per_round)]
            single += time_sync(ks.authenticate, picks, None)
            with quiet_gc():
                start = time.perf_counter_ns()
                for token in picks:
                    ks.authenticate(token)
                means.append((time.perf_counter_ns() - start) / per_round / 1000)
    for b, _, _, single, means in setups:
        b.results["authenticate warm"] = summary(single)
        b.results["authenticate warm"]["batch_mean_us"] = statistics.median(means)


def scale(b: Backend, loop: asyncio.AbstractEventLoop, lookups: int, rng: random.Random) -> None:
    ids = [rng.choice(b.bulk_ids) for _ in range(lookups)]
    for key_id in ids[:50]:
        assert b.store.get(key_id) is not None
    b.results["get at scale"] = summary(time_sync(b.store.get, ids, None))
    b.results["aget at scale"] = summary(time_async(loop, b.store.aget, ids, None))


# -- reporting -----------------------------------------------------------------------------------


def server_versions(pg_url: str, client: redis.Redis) -> dict[str, str]:
    found = {"sqlite": sqlite3.sqlite_version}
    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            found["postgresql"] = str(conn.execute(text("SHOW server_version")).scalar())
    finally:
        engine.dispose()
    found["redis-server"] = str(client.info("server")["redis_version"])
    return found


def environment(pg_url: str, client: redis.Redis) -> dict[str, str]:
    versions = {"python": platform.python_version(), "keysentry": version("keysentry")}
    versions.update({p: version(p) for p in PACKAGES})
    impl, machine = platform.python_implementation(), platform.machine()
    print(f"Python {sys.version.split()[0]} ({impl}, {machine}, {os.cpu_count()} CPUs)")
    print(", ".join(f"{p} {v}" for p, v in versions.items() if p != "python"))
    servers = server_versions(pg_url, client)
    print("servers: " + ", ".join(f"{k} {v}" for k, v in servers.items()))
    return {**versions, **servers}


def table(title: str, backends: list[Backend], metrics: list[str], extra: bool = False) -> None:
    print(f"\n### {title}\n")
    head = "| store | " + " | ".join(f"{m} p50 µs | {m} p99 µs" for m in metrics)
    print(head + (" | batch mean µs |" if extra else " |"))
    print("|---|" + "---:|---:|" * len(metrics) + ("---:|" if extra else ""))
    for b in backends:
        cells = []
        for m in metrics:
            r = b.results.get(m)
            cells += ["—", "—"] if r is None else [f"{r['median_us']:.1f}", f"{r['p99_us']:.1f}"]
        if extra:
            cells.append(f"{b.results[metrics[0]]['batch_mean_us']:.2f}")
        print(f"| {b.name} | " + " | ".join(cells) + " |")


# -- main ----------------------------------------------------------------------------------------


def close_all(backends: list[Backend], loop: asyncio.AbstractEventLoop) -> None:
    for b in backends:
        with contextlib.suppress(Exception):
            loop.run_until_complete(b.store.aclose())
        with contextlib.suppress(Exception):
            b.store.close()


def drop_redis(client: redis.Redis, namespace: str) -> int:
    dropped = 0
    batch: list[bytes] = []
    for name in client.scan_iter(match=f"{namespace}:*", count=5000):
        batch.append(name)
        if len(batch) >= 5000:
            dropped += client.unlink(*batch)
            batch = []
    if batch:
        dropped += client.unlink(*batch)
    return dropped


def drop_schema(pg_url: str, schema: str) -> None:
    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        engine.dispose()


def run(args: argparse.Namespace, work: str, namespace: str, client: redis.Redis) -> dict:
    rng = random.Random(args.seed)
    loop = asyncio.new_event_loop()
    engine = create_engine(args.postgres.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{namespace}"'))
    engine.dispose()
    backends = [
        Backend("memory", MemoryStore(), scaled=False),
        Backend("sqlite", SQLStore(f"sqlite:///{work}/keys.db"), scaled=True),
        Backend("postgresql", SQLStore(args.postgres, schema=namespace), scaled=True),
        Backend("redis", RedisStore(args.redis, namespace=namespace), scaled=True),
    ]
    try:
        versions = environment(args.postgres, client)
        print(
            f"{args.issued} issued keys per store; {args.samples} timed calls per cell "
            f"(random keys, each call timed alone, GC off); scale: {args.keys:,} bulk-loaded "
            f"records, {args.lookups} random ids\n"
        )
        for b in backends:
            issue(b, Keysentry(b.store, secret=SECRET), args.issued)
            cold(b, loop, args.samples, rng)
        warm(backends, args.samples, rng)
        table(
            "Cold: one store lookup per call (cache cleared before each authenticate)",
            backends,
            ["get", "aget", "authenticate cold", "aauthenticate cold"],
        )
        table("Warm cache: the store is not touched", backends, ["authenticate warm"], True)

        scaled = [b for b in backends if b.scaled]
        start = time.perf_counter()
        spent = bulk_load(scaled, args.keys, client, rng)
        print(f"\n### Scale: {args.keys:,} bulk-loaded records per store\n")
        print(f"bulk load: {time.perf_counter() - start:.1f} s in all (records generated once)")
        for b in scaled:
            scale(b, loop, args.lookups, rng)
        print("\n| store | load s | get p50 µs | get p99 µs | aget p50 µs | aget p99 µs |")
        print("|---|---:|---:|---:|---:|---:|")
        for b in scaled:
            g, a = b.results["get at scale"], b.results["aget at scale"]
            print(
                f"| {b.name} | {spent[b.name]:.1f} | {g['median_us']:.1f} | {g['p99_us']:.1f} "
                f"| {a['median_us']:.1f} | {a['p99_us']:.1f} |"
            )
        return {
            "versions": versions,
            "settings": vars(args),
            "load_seconds": spent,
            "stores": {b.name: b.results for b in backends},
        }
    finally:
        close_all(backends, loop)
        loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100_000, help="bulk-loaded records (100000)")
    parser.add_argument("--lookups", type=int, default=2000, help="timed ids at scale (2000)")
    parser.add_argument("--samples", type=int, default=2000, help="timed calls per cell (2000)")
    parser.add_argument("--issued", type=int, default=1000, help="keys for cold/warm (1000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed for the picks")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    if min(args.keys, args.lookups, args.samples, args.issued) < 100:
        parser.error("--keys, --lookups, --samples and --issued must be at least 100")

    def terminated(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # so the cleanup below runs

    signal.signal(signal.SIGTERM, terminated)
    namespace = f"ksbench_{secrets.token_hex(4)}"  # Redis namespace and PostgreSQL schema
    client = redis.Redis.from_url(args.redis)
    try:
        with tempfile.TemporaryDirectory(prefix="ksbench-") as work:
            results = run(args, work, namespace, client)
    finally:
        dropped = drop_redis(client, namespace)
        drop_schema(args.postgres, namespace)
        client.close()
        print(f"\ncleaned up: {dropped:,} Redis keys under {namespace}:*, schema {namespace}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

"""Does a refusal's time tell a known key id from an unknown one? Welch's t, measured.

A well-formed key with a wrong secret is refused, known id or not; ``tests/test_timing.py``
holds the two classes to the same calls, step for step. This script measures what is left:
``Keysentry.authenticate`` on the memory store, in process (no network between, the most
favourable place for an attacker), over ``--calls`` interleaved calls per class, cold (each id
seen for the first time: one store lookup each) and warm (both classes remembered). For each
run it prints the mean and median ns per call of both classes, their difference and Welch's t.
|t| below about 4.5 means the classes cannot be told apart at that sample size; each run also
carries effects no code path explains (where its objects landed in memory), so equal code
crosses that now and then, more often on a busy machine.

    uv run python benchmarks/timing.py [--calls 20000] [--runs 3]
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import secrets
import statistics
import time
from collections.abc import Callable
from zlib import crc32

from keysentry import Keysentry
from keysentry.decision import Denial
from keysentry.keys import ALPHABET, KEY_ID_LENGTH, SECRET_LENGTH
from keysentry.stores.memory import MemoryStore

SECRET = "timing-benchmark-secret-0123456789"


def _token(key_id: str) -> bytes:
    """A well-formed key (valid checksum) for ``key_id`` with a random secret."""
    secret = "".join(secrets.choice(ALPHABET) for _ in range(SECRET_LENGTH))
    head = f"sk_live_{key_id}{secret}".encode()
    return head + b"%08x" % crc32(head)


def _random_id() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(KEY_ID_LENGTH))


def _guard(calls: int) -> Keysentry:
    return Keysentry(MemoryStore(), secret=SECRET, cache_size=4 * calls, usage_interval=None)


def welch_t(a: list[int], b: list[int]) -> float:
    va, vb = statistics.variance(a), statistics.variance(b)
    return (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va / len(a) + vb / len(b))


def measure(
    call: Callable[[bytes], object],
    known: list[bytes],
    unknown: list[bytes],
    before: Callable[[int, bool], object] = lambda i, known: None,
) -> tuple[list[int], list[int]]:
    """ns per call of both classes, interleaved (which goes first alternates); ``before``
    runs untimed ahead of each call. Calls the scheduler interrupted (over 25 times the pooled
    median: a context switch, not a code path) are dropped from both, with one cut."""
    clock = time.perf_counter_ns
    a: list[int] = []
    b: list[int] = []
    gc.collect()
    gc.disable()
    try:
        for i in range(len(known)):
            first = bool(i & 1)
            for is_known in (first, not first):
                token, out = (known[i], a) if is_known else (unknown[i], b)
                before(i, is_known)
                start = clock()
                call(token)
                out.append(clock() - start)
    finally:
        gc.enable()
    cut = 25 * statistics.median(a + b)
    return [x for x in a if x < cut], [x for x in b if x < cut]


def cold(calls: int) -> tuple[list[int], list[int]]:
    ks = _guard(calls)
    store = ks.store
    ids: list[str] = []
    unknown_ids: list[str] = []
    known: list[bytes] = []
    unknown: list[bytes] = []
    # Both classes' state is made in one interleaved loop: made one after the other, two sets
    # of identical keys differ (the older set's objects lie further apart in memory).
    for _ in range(calls):
        ids.append(ks.issue(name="k").record.id)
        unknown_ids.append(_random_id())
        known.append(_token(ids[-1]))
        unknown.append(_token(unknown_ids[-1]))

    def warm_the_store(i: int, is_known: bool) -> None:
        # The memory store answers with records made long ago, cold in the CPU's caches, where
        # a store across a network answers with objects just made; reading the record and its
        # digest first (untimed, the same call for both classes) keeps what is timed to
        # keysentry's own steps.
        record = store.get(ids[i] if is_known else unknown_ids[i])
        if record is not None:
            record.digest.hex()

    return measure(ks.authenticate, known, unknown, warm_the_store)


def warm(calls: int) -> tuple[list[int], list[int]]:
    ks = _guard(calls)
    ids = 2048
    known_ids: list[str] = []
    unknown_ids: list[str] = []
    for _ in range(ids):
        issued = ks.issue(name="real")
        assert not isinstance(ks.authenticate(issued.key.reveal().encode()), Denial)
        known_ids.append(issued.record.id)
        unknown_ids.append(_random_id())
        assert isinstance(ks.authenticate(_token(unknown_ids[-1])), Denial)
    known = [_token(known_ids[i % ids]) for i in range(calls)]
    unknown = [_token(unknown_ids[i % ids]) for i in range(calls)]
    return measure(ks.authenticate, known, unknown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per class and run")
    parser.add_argument("--runs", type=int, default=3, help="runs of each case")
    args = parser.parse_args()
    # A known id refused for a digest mismatch is worth a warning to the operator; here
    # every known id is one, by design.
    logging.getLogger("keysentry").setLevel(logging.ERROR)
    print(f"{args.calls} calls per class and run\n")
    print("| case | run | known mean ns | unknown mean ns | known median | unknown median "
          "| difference | Welch t |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, case in (("cold", cold), ("warm", warm)):
        for run in range(1, args.runs + 1):
            a, b = case(args.calls)
            ma, mb = statistics.fmean(a), statistics.fmean(b)
            print(
                f"| {name} | {run} | {ma:.0f} | {mb:.0f} | {statistics.median(a):.0f} "
                f"| {statistics.median(b):.0f} | {ma - mb:+.0f} ns ({(ma - mb) / mb:+.1%}) "
                f"| {welch_t(a, b):+.1f} |"
            )


if __name__ == "__main__":
    main()

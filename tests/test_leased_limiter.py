"""The leased Redis limiter against the real Redis: slices spent without a round trip, never
more than GCRA's bound plus one lease lifetime, low limits exact, refusals cached."""

from __future__ import annotations

import math
import multiprocessing
import os
import time

import pytest
from starlette.testclient import TestClient

from keysentry import Keysentry, MemoryStore
from keysentry.ratelimit.gcra import US, Policy, RateDecision, policies_of
from keysentry.ratelimit.leased import LeasedLimiter
from keysentry.records import Rate

from .apps import starlette_app
from .conftest import SECRET
from .services import REDIS_URL

pytestmark = pytest.mark.redis


def _policies(text: str) -> tuple[Policy, ...]:
    return policies_of(Rate.parse_many(text))


def test_far_from_the_limit_one_round_trip_per_slice(ns: str) -> None:
    limiter = LeasedLimiter(REDIS_URL, namespace=ns, lease=16)
    policies = _policies("10000000/minute")
    try:
        assert all(limiter.hit("k", policies).allowed for _ in range(1600))
        assert limiter.round_trips == 100  # 1600 / 16
    finally:
        limiter.close()


def test_low_limits_stay_exact_across_processes(ns: str) -> None:
    """5/minute with slices of 16: five requests in all, whichever process asks."""
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        admitted = pool.starmap(_hammer, [(ns, "5/minute", 12, 0.0)] * 3)
    assert sum(len(times) for times in admitted) == 5


def test_refusals_are_answered_locally(ns: str) -> None:
    limiter = LeasedLimiter(REDIS_URL, namespace=ns, lease=16)
    policies = _policies("2/minute")
    try:
        decisions = [limiter.hit("k", policies) for _ in range(200)]
        assert [d.allowed for d in decisions[:3]] == [True, True, False]
        assert not any(d.allowed for d in decisions[2:])
        assert all(d.retry_after >= 1 for d in decisions[2:])
        assert limiter.round_trips <= 3  # not one per refusal
    finally:
        limiter.close()


def test_no_window_admits_more_than_the_bound(ns: str) -> None:
    """Four processes hammering one key: in any window of w seconds at most
    B + ceil((w + lease_time) / T) requests, the bound the module states."""
    rate, lease_time = "20/second", 0.3
    (policy,) = _policies(rate)
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        runs = pool.starmap(_hammer, [(ns, rate, 10_000, 1.5, 8, lease_time)] * 4)
    times = sorted(t for run in runs for t in run)
    interval = policy.interval / US
    slack = 0.005  # admissions are timed after the reply, in four processes
    for i, start in enumerate(times):
        for j in range(i, len(times)):
            span = max(0.0, times[j] - start - slack)
            assert j - i + 1 <= policy.burst + math.ceil((span + lease_time) / interval), (i, j)
    # ...and the key was kept busy: most of what GCRA allows over the run was admitted.
    allowed = policy.burst + (times[-1] - times[0]) / interval
    assert len(times) >= 0.5 * allowed


def test_a_forked_child_leases_its_own_slice(ns: str) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork here")
    limiter = LeasedLimiter(REDIS_URL, namespace=ns, lease=16)
    policies = _policies("10000000/minute")
    assert limiter.hit("k", policies).allowed
    assert limiter.round_trips == 1
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's slice is not its own
        try:
            limiter.hit("k", policies)
            os.write(write, str(limiter.round_trips).encode())
        finally:
            os._exit(0)
    os.close(write)
    child_trips = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert child_trips == b"1"
    assert limiter.hit("k", policies).allowed
    assert limiter.round_trips == 1  # the parent still spends its own slice
    limiter.close()


def test_through_the_middleware(ns: str) -> None:
    # A generous timeout: on a loaded machine a lease that times out fails open (a 200 the
    # limit would refuse), which is the outage policy, not what this test is about.
    limiter = LeasedLimiter(REDIS_URL, namespace=ns, lease=4, timeout=5.0)
    ks = Keysentry(MemoryStore(), secret=SECRET, limiter=limiter, rate_limit="3/minute")
    key = ks.issue(name="leased").key.reveal()
    client = TestClient(starlette_app(ks))
    try:
        answers = [client.get("/", headers={"Authorization": f"Bearer {key}"}) for _ in range(5)]
        assert ks.limiter_failures == 0
        assert [r.status_code for r in answers] == [200, 200, 200, 429, 429]
        for r in answers:
            assert r.headers["ratelimit-policy"] == '"per-minute";q=3;w=60'
            remaining = int(r.headers["ratelimit"].split(";r=")[1].split(";")[0])
            assert 0 <= remaining <= 3
        assert int(answers[-1].headers["retry-after"]) >= 1
        assert ks.limiter_failures == 0
    finally:
        limiter.close()


def _hammer(
    ns: str, rate: str, count: int, seconds: float, lease: int = 16, lease_time: float = 1.0
) -> list[float]:
    """In a process of its own: hit one key ``count`` times (or for ``seconds``); the wall
    times of the admitted requests."""
    limiter = LeasedLimiter(REDIS_URL, namespace=ns, lease=lease, lease_time=lease_time)
    policies = _policies(rate)
    admitted: list[float] = []
    end = time.monotonic() + seconds
    try:
        for _ in range(count):
            if limiter.hit("shared", policies).allowed:
                admitted.append(time.time())
            if seconds and time.monotonic() > end:
                break
    finally:
        limiter.close()
    return admitted


@pytest.mark.parametrize(
    ("url", "lease", "lease_time"),
    [
        ("redis://127.0.0.1:6379/0?lease=8", 8, 1.0),
        ("redis://127.0.0.1:6379/0?lease_time=0.5", 16, 0.5),
        ("redis://:Zq%3F9w@127.0.0.1:6379/0?lease=4&lease_time=2", 4, 2.0),
    ],
)
def test_the_url_asks_for_leases(url: str, lease: int, lease_time: float) -> None:
    from keysentry.demo import limiter_from_url

    limiter = limiter_from_url(url)
    try:
        assert isinstance(limiter, LeasedLimiter)
        assert (limiter.lease, limiter.lease_time) == (lease, lease_time)
        assert "lease" not in limiter.url
        assert "Zq" not in repr(limiter)
    finally:
        limiter.close()  # type: ignore[attr-defined]


def test_without_lease_parameters_the_limiter_is_plain() -> None:
    from keysentry.demo import limiter_from_url
    from keysentry.ratelimit.redis import RedisLimiter

    limiter = limiter_from_url("redis://127.0.0.1:6379/0")
    assert type(limiter) is RedisLimiter


@pytest.mark.parametrize("query", ["lease=many", "lease=0", "lease_time=soon", "lease_time=0"])
def test_bad_lease_parameters_are_refused(query: str) -> None:
    from keysentry.demo import limiter_from_url

    with pytest.raises(ValueError, match="lease"):
        limiter_from_url(f"redis://127.0.0.1:6379/0?{query}")


def test_the_request_path_answers_from_the_slice_in_line(ns: str) -> None:
    """A request served from a slice is decided without waiting on the limiter: no Pending,
    no coroutine; only the lease itself is awaited."""

    class Counting(LeasedLimiter):
        awaited = 0

        async def ahit(self, key: str, policies: tuple[Policy, ...], cost: int = 1) -> RateDecision:
            self.awaited += 1
            return await super().ahit(key, policies, cost)

    limiter = Counting(REDIS_URL, namespace=ns, lease=16)
    ks = Keysentry(MemoryStore(), secret=SECRET, limiter=limiter, rate_limit="1000/minute")
    key = ks.issue(name="leased").key.reveal()
    client = TestClient(starlette_app(ks))
    try:
        for _ in range(10):
            r = client.get("/", headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200
            assert "ratelimit" in r.headers
        assert limiter.awaited == 1
        assert limiter.round_trips == 1
    finally:
        limiter.close()

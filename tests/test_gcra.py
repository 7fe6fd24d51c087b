"""GCRA's promises, as properties over random request timings (SPEC §6)."""

from __future__ import annotations

import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from keysentry import Rate
from keysentry.ratelimit import MemoryLimiter
from keysentry.ratelimit.gcra import US, Policy, RateDecision, decide, describe
from keysentry.ratelimit.headers import (
    MEMO_MOST,
    encoded_rate_headers,
    legacy_headers,
    policy_field,
    rate_field,
    rate_headers,
)

rates = st.builds(
    Rate,
    limit=st.integers(1, 50),
    period=st.sampled_from([1.0, 2.0, 60.0, 3600.0]),
    burst=st.one_of(st.none(), st.integers(1, 60)),
)
# Gaps between requests in µs: many at one instant, some spread out.
gaps = st.lists(st.one_of(st.just(0), st.integers(0, 3 * US)), min_size=1, max_size=120)


def _run(policies: tuple[Policy, ...], times: list[int]) -> list[tuple[int, bool, object]]:
    tats: list[int | None] = [None] * len(policies)
    out = []
    for now in times:
        allowed, new = decide(policies, tats, now)
        if allowed:
            tats = list(new)
        out.append((now, allowed, describe(policies, new, now, allowed)))
    return out


@settings(max_examples=300, deadline=None)
@given(rate=rates, gaps=gaps)
def test_no_window_admits_more_than_promised(rate: Rate, gaps: list[int]) -> None:
    policy = Policy.of(rate)
    times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    allowed = [now for now, ok, _ in _run((policy,), times) if ok]
    # In any window [a, b]: at most B + floor((b - a) / T) requests.
    for i, start in enumerate(allowed):
        for j in range(i, len(allowed)):
            span = allowed[j] - start
            assert j - i + 1 <= policy.burst + span // policy.interval


@settings(max_examples=300, deadline=None)
@given(rate=rates, n=st.integers(1, 200))
def test_from_idle_exactly_the_burst_at_one_instant(rate: Rate, n: int) -> None:
    policy = Policy.of(rate)
    results = _run((policy,), [10 * US] * n)
    assert sum(ok for _, ok, _ in results) == min(n, policy.burst)


@settings(max_examples=300, deadline=None)
@given(rate=rates, gaps=gaps)
def test_headers_agree_with_the_decision(rate: Rate, gaps: list[int]) -> None:
    policy = Policy.of(rate)
    times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    for _, ok, decision in _run((policy,), times):
        d = decision  # type: ignore[assignment]
        headers = dict(rate_headers(d, "p", legacy=False))  # type: ignore[arg-type]
        r, t = d.remaining[0], d.reset[0]  # type: ignore[attr-defined]
        assert 0 <= r <= policy.burst
        assert t >= 0
        if ok:
            assert "Retry-After" not in headers
            assert r < policy.burst  # this request used some of the burst
        else:
            assert r == 0
            assert int(headers["Retry-After"]) >= t >= 1


@settings(max_examples=200, deadline=None)
@given(a=rates, b=rates, gaps=gaps)
def test_several_policies_all_or_nothing(a: Rate, b: Rate, gaps: list[int]) -> None:
    both = (Policy.of(a), Policy.of(b))
    times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    # What both together admit is exactly what each admits, replayed on the admitted requests.
    admitted = [now for now, ok, _ in _run(both, times) if ok]
    for p in both:
        assert all(ok for _, ok, _ in _run((p,), admitted))


def test_memory_limiter_exact_under_threads() -> None:
    limiter = MemoryLimiter()
    policies = (Policy.of(Rate(50, 3600.0)),)
    allowed = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        mine = sum(limiter.hit("k", policies).allowed for _ in range(100))
        with lock:
            allowed.append(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 50


def test_memory_limiter_forgets_idle_keys_and_stays_bounded() -> None:
    now = [0.0]
    limiter = MemoryLimiter(max_keys=100, clock=lambda: now[0])
    policies = (Policy.of(Rate(10, 1.0)),)
    for i in range(1000):
        limiter.hit(f"k{i}", policies)
    assert len(limiter) == 100
    now[0] += 5  # every key is back to full burst: its state is worth nothing
    for i in range(50):
        limiter.hit(f"fresh{i}", policies)
    assert len(limiter) < 100


costs = st.lists(st.tuples(st.one_of(st.just(0), st.integers(0, 3 * US)), st.integers(1, 3)),
                 min_size=1, max_size=120)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(rate=rates, steps=costs)
def test_memory_limiters_one_policy_path_is_the_general_math(
    rate: Rate, steps: list[tuple[int, int]]
) -> None:
    """MemoryLimiter.hit computes one policy inline; it must answer exactly what the general
    decide()/describe() pair answers, decision and header values alike."""
    policy = Policy.of(rate)
    now = [1_000 * US]
    limiter = MemoryLimiter(clock=lambda: now[0] / US)
    tat: int | None = None
    for gap, cost in steps:
        now[0] += gap
        at = int(now[0] / US * US)  # the microsecond the limiter reads from its clock
        allowed, new = decide((policy,), [tat], at, cost)
        expected = describe((policy,), new, at, allowed, cost)
        if allowed:
            tat = new[0]
        assert limiter.hit("k", (policy,), cost) == expected


@settings(max_examples=300, deadline=None)
@given(rate=rates, gaps=gaps, legacy=st.booleans())
def test_remembered_header_fields_are_the_fields_formatted_anew(
    rate: Rate, gaps: list[int], legacy: bool
) -> None:
    """An allowed request's fields come from the policy's memo after the first time its two
    numbers occur: both faces, every time, equal to the fields formatted from the decision."""
    policy = Policy.of(rate)
    field = policy_field((policy,))
    times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    for _ in range(2):  # the second pass reads what the first remembered
        for _, _, decision in _run((policy,), times):
            d: RateDecision = decision  # type: ignore[assignment]
            fresh = [("RateLimit-Policy", field), ("RateLimit", rate_field(d))]
            if legacy:
                fresh += legacy_headers(d)
            if not d.allowed:
                fresh.append(("Retry-After", str(d.retry_after)))
            assert list(rate_headers(d, field, legacy)) == fresh
            if d.allowed:
                encoded = [(k.lower().encode(), v.encode()) for k, v in fresh]
                assert list(encoded_rate_headers(d, field.encode(), legacy)) == encoded
    assert len(policy.encoded) <= MEMO_MOST
    assert len(policy.plain) <= MEMO_MOST


def test_a_policys_memo_of_header_fields_is_bounded() -> None:
    policy = Policy.of(Rate(5000, 60.0))
    for r in range(MEMO_MOST + 50):
        d = RateDecision(True, (policy,), (r,), (1,), 0)
        assert encoded_rate_headers(d, b"p", False)[1] == (b"ratelimit", b'"%s";r=%d;t=1' % (
            policy.name.encode(), r))  # fmt: skip
        assert rate_headers(d, "p", False)[1] == ("RateLimit", f'"{policy.name}";r={r};t=1')
    assert len(policy.encoded) == len(policy.plain) == MEMO_MOST

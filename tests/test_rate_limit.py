"""Per-key rate limits over HTTP: every framework, memory and Redis limiters (SPEC §6)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from keysentry import ImportedFormat, Keysentry, MemoryStore
from keysentry.ratelimit import Limiter, MemoryLimiter
from keysentry.ratelimit.redis import RedisLimiter

from .apps import Client
from .conftest import SECRET
from .services import REDIS_URL, delete_namespace, namespace, redis_or_skip


@pytest.fixture(params=["memory", "redis"])
def limiter(request: pytest.FixtureRequest) -> Iterator[Limiter]:
    if request.param == "memory":
        yield MemoryLimiter()
        return
    redis_or_skip()
    ns = namespace()
    lim = RedisLimiter(REDIS_URL, namespace=ns)
    try:
        yield lim
    finally:
        lim.close()
        delete_namespace(REDIS_URL, ns)


@pytest.fixture
def ks(store: MemoryStore, limiter: Limiter) -> Keysentry:
    return Keysentry(store, secret=SECRET, limiter=limiter, exempt=["/health"])


def _rate(headers: Any) -> dict[str, int]:
    """``"per-minute";r=2;t=20`` -> {"r": 2, "t": 20} (single policy)."""
    params = headers["RateLimit"].split(";")[1:]
    return {k: int(v) for k, v in (p.split("=") for p in params)}


def test_allowed_responses_carry_ratelimit_fields(client: Client, ks: Keysentry) -> None:
    key = ks.issue(name="metered", rate_limit="3/minute").key.reveal()
    seen = []
    for _ in range(3):
        r = client.get("/", {"Authorization": f"Bearer {key}"})
        assert r.status == 200
        assert r.headers["RateLimit-Policy"] == '"per-minute";q=3;w=60'
        seen.append(_rate(r.headers))
        assert "X-RateLimit-Limit" not in r.headers
        assert "Retry-After" not in r.headers
    assert [s["r"] for s in seen] == [2, 1, 0]
    assert all(1 <= s["t"] <= 20 for s in seen)


def test_over_the_limit_is_429_with_retry_after(client: Client, ks: Keysentry) -> None:
    key = ks.issue(name="metered", rate_limit="3/minute").key.reveal()
    for _ in range(3):
        assert client.get("/", {"X-API-Key": key}).status == 200
    r = client.get("/", {"X-API-Key": key})
    assert (r.status, r.code) == (429, "RATE_LIMITED")
    fields = _rate(r.headers)
    assert fields["r"] == 0
    retry_after = int(r.headers["Retry-After"])
    assert retry_after >= fields["t"] >= 1
    assert retry_after <= 20  # one request regenerates every 60/3 s
    assert r.body["error"]["details"]["retry_after"] == retry_after
    assert r.headers["RateLimit-Policy"] == '"per-minute";q=3;w=60'


def test_refused_requests_consume_nothing(ks: Keysentry, limiter: Limiter) -> None:
    client = Client("starlette", ks)
    key = ks.issue(name="metered", rate_limit="2/minute").key.reveal()
    statuses = [client.get("/", {"X-API-Key": key}).status for _ in range(10)]
    assert statuses == [200, 200] + [429] * 8
    # Had the refusals consumed anything, the wait would have grown with each one.
    r = client.get("/", {"X-API-Key": key})
    assert int(r.headers["Retry-After"]) <= 30


def test_default_rate_limit_applies_to_keys_without_one(
    store: MemoryStore, limiter: Limiter
) -> None:
    ks = Keysentry(store, secret=SECRET, limiter=limiter, rate_limit="2/minute")
    client = Client("flask", ks)
    plain = ks.issue(name="plain").key.reveal()
    unlimited = ks.issue(name="unlimited", rate_limit=[]).key.reveal()
    assert [client.get("/", {"X-API-Key": plain}).status for _ in range(3)] == [200, 200, 429]
    results = [client.get("/", {"X-API-Key": unlimited}) for _ in range(5)]
    assert [r.status for r in results] == [200] * 5
    assert all("RateLimit" not in r.headers for r in results)


def test_no_limit_means_no_headers(client: Client, ks: Keysentry, key: str) -> None:
    r = client.get("/", {"X-API-Key": key})
    assert r.status == 200
    assert "RateLimit" not in r.headers
    assert "RateLimit-Policy" not in r.headers


def test_several_policies_are_all_or_nothing(client: Client, ks: Keysentry) -> None:
    key = ks.issue(name="two", rate_limit="2/minute, 3/hour").key.reveal()
    first = client.get("/", {"X-API-Key": key})
    assert first.headers["RateLimit-Policy"] == '"per-minute";q=2;w=60, "per-hour";q=3;w=3600'
    assert first.headers["RateLimit"].startswith('"per-minute";r=1;t=')
    assert '"per-hour";r=2;t=' in first.headers["RateLimit"]
    assert client.get("/", {"X-API-Key": key}).status == 200
    refused = client.get("/", {"X-API-Key": key})
    assert refused.status == 429
    # The per-minute policy refused; the per-hour one was not charged for the refusal.
    assert '"per-hour";r=1;' in refused.headers["RateLimit"]
    assert '"per-minute";r=0;' in refused.headers["RateLimit"]


def test_changing_a_keys_limit_takes_effect_without_reset(client: Client, ks: Keysentry) -> None:
    issued = ks.issue(name="upgraded", rate_limit="2/minute")
    key = issued.key.reveal()
    assert [client.get("/", {"X-API-Key": key}).status for _ in range(3)] == [200, 200, 429]
    record = ks.store.update(issued.record.id, {"rate_limit": "4/minute"})  # type: ignore[union-attr]
    ks.invalidate(record)
    # The state is the time owed (60 s: two requests at 30 s each), not a count. Under the new
    # policy that is a full burst still, repaid at 15 s a request: a reset would have allowed
    # this request, the old policy would have said to wait up to 30 s.
    r = client.get("/", {"X-API-Key": key})
    assert r.status == 429
    assert r.headers["RateLimit-Policy"] == '"per-minute";q=4;w=60'
    assert 1 <= int(r.headers["Retry-After"]) <= 15


def test_legacy_headers_are_opt_in(store: MemoryStore, limiter: Limiter) -> None:
    ks = Keysentry(store, secret=SECRET, limiter=limiter, legacy_rate_headers=True)
    client = Client("fastapi", ks)
    key = ks.issue(name="legacy", rate_limit="5/minute, 100/day").key.reveal()
    r = client.get("/", {"X-API-Key": key})
    assert r.headers["X-RateLimit-Limit"] == "5"
    assert r.headers["X-RateLimit-Remaining"] == "4"
    assert int(r.headers["X-RateLimit-Reset"]) >= 1


def test_burst_larger_than_the_rate(ks: Keysentry) -> None:
    from keysentry import Rate

    client = Client("werkzeug", ks)
    key = ks.issue(name="bursty", rate_limit=Rate(1, 60.0, burst=4)).key.reveal()
    assert [client.get("/", {"X-API-Key": key}).status for _ in range(5)] == [200] * 4 + [429]


def test_websocket_accept_carries_ratelimit_fields(ks: Keysentry) -> None:
    client = Client("starlette", ks)
    key = ks.issue(name="ws", rate_limit="5/minute").key.reveal()
    with client._client.websocket_connect("/ws", headers={"X-API-Key": key}) as ws:
        assert ws.receive_json()["name"] == "ws"
        headers = {k.decode().lower(): v.decode() for k, v in ws.extra_headers or []}
    assert headers["ratelimit-policy"] == '"per-minute";q=5;w=60'
    assert headers["ratelimit"].startswith('"per-minute";r=4;')


def _set_limit(ks: Keysentry, key_id: str, limit: str) -> None:
    ks.invalidate(ks.store.update(key_id, {"rate_limit": limit}))  # type: ignore[union-attr]


def test_adding_a_policy_keeps_the_others_state(client: Client, ks: Keysentry) -> None:
    issued = ks.issue(name="grows", rate_limit="4/day")
    key = issued.key.reveal()
    assert [client.get("/", {"X-API-Key": key}).status for _ in range(2)] == [200, 200]
    _set_limit(ks, issued.record.id, "10/second, 4/day")
    # The new per-second policy starts fresh; the daily one still has 2 of 4 spent.
    r = client.get("/", {"X-API-Key": key})
    assert r.status == 200
    assert '"per-day";r=1;' in r.headers["RateLimit"]
    assert client.get("/", {"X-API-Key": key}).status == 200
    assert client.get("/", {"X-API-Key": key}).status == 429


def test_removing_a_policy_keeps_the_others_debt(client: Client, ks: Keysentry) -> None:
    issued = ks.issue(name="shrinks", rate_limit="100/second, 3/day")
    key = issued.key.reveal()
    assert [client.get("/", {"X-API-Key": key}).status for _ in range(4)] == [200] * 3 + [429]
    _set_limit(ks, issued.record.id, "3/day")
    r = client.get("/", {"X-API-Key": key})
    assert r.status == 429
    assert '"per-day";r=0;' in r.headers["RateLimit"]


def test_two_policies_with_one_window_are_told_apart(ks: Keysentry) -> None:
    client = Client("starlette", ks)
    key = ks.issue(name="twin", rate_limit="5/minute, 2/minute").key.reveal()
    r = client.get("/", {"X-API-Key": key})
    assert r.headers["RateLimit-Policy"] == '"per-minute";q=5;w=60, "per-minute-2";q=2;w=60'
    assert client.get("/", {"X-API-Key": key}).status == 200
    assert client.get("/", {"X-API-Key": key}).status == 429


# -- a rotation line: every key of it is charged to one rate-limit state -----------------------


def _status_and_remaining(client: Client, key: str) -> tuple[int, int]:
    r = client.get("/", {"X-API-Key": key})
    return r.status, _rate(r.headers)["r"]


def _refused_with_shared_state(client: Client, key: str) -> None:
    r = client.get("/", {"Authorization": f"Bearer {key}"})
    assert (r.status, r.code) == (429, "RATE_LIMITED")
    assert r.headers["RateLimit-Policy"] == '"per-minute";q=5;w=60'
    fields = _rate(r.headers)
    assert fields["r"] == 0
    retry_after = int(r.headers["Retry-After"])
    assert retry_after >= fields["t"] >= 1
    assert retry_after <= 12  # one request regenerates every 60/5 s


@pytest.mark.parametrize("credits", [None, 100], ids=["unmetered", "metered"])
def test_a_rotation_does_not_double_the_limit(
    client: Client, ks: Keysentry, credits: int | None
) -> None:
    """5/minute, rotated with a grace period: the old and the new key together get 5."""
    old = ks.issue(name="rotating", rate_limit="5/minute", credits=credits)
    old_key = old.key.reveal()
    assert _status_and_remaining(client, old_key) == (200, 4)
    new = ks.rotate(old.record.id, grace=timedelta(hours=1))
    assert new.record.line == old.record.id
    new_key = new.key.reveal()
    answers = [_status_and_remaining(client, k) for k in (new_key, old_key, new_key, old_key)]
    assert answers == [(200, 3), (200, 2), (200, 1), (200, 0)]
    _refused_with_shared_state(client, new_key)
    _refused_with_shared_state(client, old_key)


def test_a_chain_of_rotations_shares_one_limit(client: Client, ks: Keysentry) -> None:
    """A -> B -> C, each still in its grace period: one state for the three."""
    a = ks.issue(name="chain", rate_limit="5/minute")
    b = ks.rotate(a.record.id, grace=3600)
    c = ks.rotate(b.record.id, grace=3600)
    assert (b.record.line, c.record.line) == (a.record.id, a.record.id)
    keys = [issued.key.reveal() for issued in (a, b, c)]
    answers = [_status_and_remaining(client, k) for k in (*keys, c.key.reveal(), keys[0])]
    assert answers == [(200, 4), (200, 3), (200, 2), (200, 1), (200, 0)]
    for key in keys:
        _refused_with_shared_state(client, key)


GRX = ImportedFormat("grx_sk_", length=48, alphabet="0123456789abcdef")


@pytest.mark.parametrize("framework", ["starlette", "werkzeug"])
def test_an_imported_key_and_its_successor_share_the_default_limit(
    store: MemoryStore, limiter: Limiter, framework: str
) -> None:
    """An imported key (found by digest) rotates to a native one; under the app's default
    policy the two still draw on one state."""
    ks = Keysentry(store, secret=SECRET, limiter=limiter, imported=[GRX], rate_limit="5/minute")
    client = Client(framework, ks)
    legacy = "grx_sk_" + secrets.token_hex(24)
    record = ks.import_key(legacy, name="legacy")
    assert [_status_and_remaining(client, legacy) for _ in range(2)] == [(200, 4), (200, 3)]
    new = ks.rotate(record.id, grace=3600)
    assert new.record.line == record.id
    new_key = new.key.reveal()
    answers = [_status_and_remaining(client, k) for k in (new_key, legacy, new_key)]
    assert answers == [(200, 2), (200, 1), (200, 0)]
    _refused_with_shared_state(client, legacy)
    _refused_with_shared_state(client, new_key)

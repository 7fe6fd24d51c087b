"""The decision hook: one event per guarded request (allowed or denied, code, key id, latency),
on ASGI and WSGI, with a ready logging adapter; secrets never in it; a failing hook never
fails a request."""

from __future__ import annotations

import logging

import pytest
from starlette.testclient import TestClient

from keysentry import Keysentry, MemoryStore
from keysentry.events import DecisionEvent, LogDecisions, fan_out
from keysentry.ratelimit import MemoryLimiter

from .apps import FRAMEWORKS, Client, starlette_app
from .conftest import SECRET


@pytest.fixture(params=FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_every_decision_is_reported_once(store: MemoryStore, framework: str) -> None:
    events: list[DecisionEvent] = []
    guard = Keysentry(
        store,
        secret=SECRET,
        exempt=["/health"],
        limiter=MemoryLimiter(),
        on_decision=events.append,
    )
    issued = guard.issue(name="observed", rate_limit="1/minute")
    key = issued.key.reveal()
    client = Client(framework, guard)

    assert client.get("/v1/things", {"X-API-Key": key}).status == 200
    assert client.get("/v1/things", {"X-API-Key": key}).status == 429
    assert client.get("/v1/things").status == 401
    wrong = key[:-1] + ("0" if key[-1] != "0" else "1")  # the checksum fails
    assert client.get("/v1/things", {"X-API-Key": wrong}).status == 401
    assert client.get("/health").status == 200  # exempt: not a decision

    summary = [(e.allowed, e.code, e.status, e.key_id) for e in events]
    assert summary == [
        (True, None, None, issued.record.id),
        (False, "RATE_LIMITED", 429, issued.record.id),
        (False, "MISSING_API_KEY", 401, None),
        (False, "INVALID_API_KEY", 401, None),
    ]
    assert all(e.path == "/v1/things" and e.method == "GET" for e in events)
    assert all(0 <= e.latency < 1 for e in events)
    assert events[0].prefix == issued.record.prefix
    assert all(key not in repr(e) for e in events)


def test_the_logging_adapter_writes_one_line_per_decision_and_no_secret(
    store: MemoryStore, framework: str, caplog: pytest.LogCaptureFixture
) -> None:
    guard = Keysentry(store, secret=SECRET, on_decision=LogDecisions())
    issued = guard.issue(name="logged")
    key = issued.key.reveal()
    guard.disable(issued.record.id)
    client = Client(framework, guard)
    with caplog.at_level(logging.DEBUG, logger="keysentry.decisions"):
        client.get("/", {"Authorization": f"Bearer {key}"})
        client.get("/", {"Authorization": f"Bearer {key}x"})
        guard.enable(issued.record.id)
        client.get("/", {"Authorization": f"Bearer {key}"})
    lines = [r.getMessage() for r in caplog.records if r.name == "keysentry.decisions"]
    assert len(lines) == 3
    assert "denied 403 API_KEY_DISABLED" in lines[0]
    assert f"key={issued.record.id}" in lines[0]
    assert "denied 401 INVALID_API_KEY key=-" in lines[1]
    assert "allowed" in lines[2]
    assert caplog.records[0].levelno == logging.INFO
    assert caplog.records[2].levelno == logging.DEBUG
    assert all(key not in line for line in lines)
    assert all(key not in repr(r.__dict__) for r in caplog.records)


def test_a_failing_hook_is_logged_and_the_request_goes_on(
    store: MemoryStore, framework: str, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: DecisionEvent) -> None:
        raise RuntimeError("metrics backend is down")

    guard = Keysentry(store, secret=SECRET, on_decision=broken)
    key = guard.issue(name="x").key.reveal()
    client = Client(framework, guard)
    with caplog.at_level(logging.WARNING, logger="keysentry"):
        assert client.get("/", {"X-API-Key": key}).status == 200
        assert client.get("/").status == 401
    assert any("on_decision" in r.getMessage() for r in caplog.records)


def test_a_decoded_newline_in_the_path_cannot_forge_a_log_line(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    guard = Keysentry(store, secret=SECRET, on_decision=LogDecisions())
    client = Client("starlette", guard)
    with caplog.at_level(logging.DEBUG, logger="keysentry.decisions"):
        client.get("/x%0AGET%20/admin%20allowed%20key=abc")
    (line,) = [r.getMessage() for r in caplog.records if r.name == "keysentry.decisions"]
    assert "\n" not in line
    assert "/x\\nGET /admin allowed key=abc" in line


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_hook_set_after_the_middleware_exists_takes_effect_on_every_driver(
    framework: str,
) -> None:
    """Both drivers read the guard's settings the same way: live, through the pipeline."""
    ks = Keysentry(MemoryStore(), secret=SECRET)
    client = Client(framework, ks)  # the middleware exists before the hook
    key = ks.issue(name="late").key.reveal()
    seen: list[DecisionEvent] = []
    ks.on_decision = seen.append
    assert client.get("/", {"Authorization": f"Bearer {key}"}).status == 200
    assert client.get("/", {"Authorization": "Bearer nope"}).status == 401
    assert [(e.allowed, e.code) for e in seen] == [(True, None), (False, "INVALID_API_KEY")]
    ks.on_decision = None
    assert client.get("/", {"Authorization": f"Bearer {key}"}).status == 200
    assert len(seen) == 2


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_key_that_expires_while_warm_is_named_in_its_refusal(framework: str) -> None:
    """The warm path (a key recognised by its tag) reports a proven refusal as the full path
    does: with the key's id and prefix."""
    import time
    from datetime import datetime, timedelta, timezone

    ks = Keysentry(MemoryStore(), secret=SECRET)
    client = Client(framework, ks)
    soon = datetime.now(timezone.utc) + timedelta(seconds=0.4)
    issued = ks.issue(name="brief", expires_at=soon)
    headers = {"Authorization": f"Bearer {issued.key.reveal()}"}
    assert [client.get("/", headers).status for _ in range(3)] == [200, 200, 200]
    seen: list[DecisionEvent] = []
    ks.on_decision = seen.append
    time.sleep(0.5)
    assert client.get("/", headers).status == 401
    assert [(e.code, e.key_id, e.prefix) for e in seen] == [
        ("EXPIRED_API_KEY", issued.record.id, issued.record.prefix)
    ]


def test_the_event_says_whether_the_key_was_answered_from_the_cache(
    store: MemoryStore, framework: str
) -> None:
    events: list[DecisionEvent] = []
    guard = Keysentry(store, secret=SECRET, on_decision=events.append)
    key = guard.issue(name="cached").key.reveal()
    # Well formed, but of another store: an id this one does not know.
    unknown = Keysentry(MemoryStore(), secret=SECRET).issue(name="elsewhere").key.reveal()
    client = Client(framework, guard)

    assert client.get("/", {"X-API-Key": key}).status == 200  # looked up in the store
    assert client.get("/", {"X-API-Key": key}).status == 200  # from the cache
    assert client.get("/", {"Authorization": f"Bearer {key}"}).status == 200
    assert client.get("/", {"X-API-Key": unknown}).status == 401  # looked up: not there
    assert client.get("/", {"X-API-Key": unknown}).status == 401  # the cache knows it now
    assert client.get("/").status == 401  # no key: the cache is not read
    assert client.get("/", {"X-API-Key": key[:-1] + "x"}).status == 401  # garbage: neither
    assert client.get("/", {"Authorization": key}).status == 401  # no scheme: neither

    assert [(e.code, e.cached) for e in events] == [
        (None, False),
        (None, True),
        (None, True),
        ("INVALID_API_KEY", False),
        ("INVALID_API_KEY", True),
        ("MISSING_API_KEY", None),
        ("INVALID_API_KEY", None),
        ("INVALID_API_KEY", None),
    ]


def test_a_client_blocked_for_failed_attempts_is_a_cache_miss_without_a_lookup(
    store: MemoryStore,
) -> None:
    events: list[DecisionEvent] = []
    guard = Keysentry(store, secret=SECRET, failure_limit="1/minute", on_decision=events.append)
    other = Keysentry(MemoryStore(), secret=SECRET)
    first, second = (other.issue(name=n).key.reveal() for n in ("a", "b"))
    client = TestClient(starlette_app(guard), client=("192.0.2.7", 40000))
    assert client.get("/", headers={"X-API-Key": first}).status_code == 401
    # The phantom, from the cache; this failed attempt is one too many.
    assert client.get("/", headers={"X-API-Key": first}).status_code == 429
    # A miss, refused before any lookup.
    assert client.get("/", headers={"X-API-Key": second}).status_code == 429
    assert [(e.code, e.cached) for e in events] == [
        ("INVALID_API_KEY", False),
        ("TOO_MANY_FAILED_ATTEMPTS", True),
        ("TOO_MANY_FAILED_ATTEMPTS", False),
    ]


def test_fan_out_hands_every_event_to_every_callback(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    first: list[DecisionEvent] = []
    last: list[DecisionEvent] = []

    def broken(event: DecisionEvent) -> None:
        raise RuntimeError("this sink is down")

    guard = Keysentry(store, secret=SECRET, on_decision=fan_out(first.append, broken))
    guard.on_decision = fan_out(guard.on_decision, None, last.append)
    assert repr(guard.on_decision).startswith("fan_out(")
    assert len(guard.on_decision.hooks) == 3  # type: ignore[union-attr]  # flattened
    client = Client("starlette", guard)
    with caplog.at_level(logging.WARNING, logger="keysentry"):
        assert client.get("/").status == 401
    assert [e.code for e in first] == [e.code for e in last] == ["MISSING_API_KEY"]
    assert any("on_decision" in r.getMessage() for r in caplog.records)
    assert guard.failures == {"on_decision": 1}
    assert fan_out(None, None) is None
    assert fan_out(None, first.append) == first.append

"""Metrics of a guard, Prometheus and OpenTelemetry, fed by its decision events: decisions by
outcome and code, their latency, cache hits and misses, outages; through each framework's own
test client, read back from a fresh registry (or an in-memory reader) per test."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from keysentry import Keysentry, MemoryStore
from keysentry.events import DecisionEvent, LogDecisions, fan_out
from keysentry.metrics.otel import OpenTelemetryMetrics
from keysentry.metrics.prometheus import PrometheusMetrics
from keysentry.ratelimit import MemoryLimiter
from keysentry.ratelimit.redis import RedisLimiter
from keysentry.stores.redis import RedisStore

from .apps import FRAMEWORKS, Client
from .conftest import SECRET
from .services import RedisServer


@pytest.fixture(params=FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def guard() -> Keysentry:
    return Keysentry(MemoryStore(), secret=SECRET, limiter=MemoryLimiter(), exempt=["/health"])


def _traffic(guard: Keysentry, framework: str) -> None:
    """2 allowed, 1 rate-limited, 1 missing key, 2 invalid (a malformed one, an unknown one).
    Key lookups: the first allowed and the unknown key miss the cache; the second allowed and
    the 429 hit it; the missing and the malformed key never reach it."""
    key = guard.issue(name="measured", rate_limit="2/minute").key.reveal()
    unknown = Keysentry(MemoryStore(), secret=SECRET).issue(name="elsewhere").key.reveal()
    client = Client(framework, guard)
    statuses = [
        client.get("/", {"X-API-Key": key}).status,
        client.get("/", {"Authorization": f"Bearer {key}"}).status,
        client.get("/", {"X-API-Key": key}).status,
        client.get("/").status,
        client.get("/", {"Authorization": key}).status,
        client.get("/", {"X-API-Key": unknown}).status,
        client.get("/health").status,  # exempt: not a decision
    ]
    assert statuses == [200, 200, 429, 401, 401, 401, 200]


def test_prometheus_counts_decisions_latency_and_cache_lookups(
    guard: Keysentry, framework: str
) -> None:
    registry = CollectorRegistry()
    PrometheusMetrics(guard, registry=registry)
    _traffic(guard, framework)

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert sample("keysentry_decisions_total", outcome="allowed", code="") == 2
    assert sample("keysentry_decisions_total", outcome="denied", code="RATE_LIMITED") == 1
    assert sample("keysentry_decisions_total", outcome="denied", code="MISSING_API_KEY") == 1
    assert sample("keysentry_decisions_total", outcome="denied", code="INVALID_API_KEY") == 2
    assert sample("keysentry_decision_duration_seconds_count", outcome="allowed") == 2
    assert sample("keysentry_decision_duration_seconds_count", outcome="denied") == 4
    assert sample("keysentry_decision_duration_seconds_bucket", outcome="denied", le="+Inf") == 4
    assert 0 < sample("keysentry_decision_duration_seconds_sum", outcome="allowed") < 2  # type: ignore[operator]
    assert sample("keysentry_cache_lookups_total", result="hit") == 2
    assert sample("keysentry_cache_lookups_total", result="miss") == 2
    assert sample("keysentry_failures_total", kind="store") == 0
    assert sample("keysentry_failures_total", kind="limiter") == 0
    assert sample("keysentry_limiter_failed_open_total") == 0
    assert sample("keysentry_cache_entries") == 1


def test_prometheus_text_format_is_what_a_scrape_reads(guard: Keysentry) -> None:
    registry = CollectorRegistry()
    PrometheusMetrics(guard, registry=registry)
    _traffic(guard, "starlette")
    scraped = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    assert scraped[("keysentry_decisions_total", (("code", ""), ("outcome", "allowed")))] == 2
    assert scraped[("keysentry_cache_lookups_total", (("result", "hit"),))] == 2
    assert scraped[("keysentry_failures_total", (("kind", "credits"),))] == 0


def test_metrics_sit_beside_a_callback_already_set(
    guard: Keysentry, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[DecisionEvent] = []
    guard.on_decision = seen.append
    registry = CollectorRegistry()
    PrometheusMetrics(guard, registry=registry)
    reader = InMemoryMetricReader()
    OpenTelemetryMetrics(guard, meter_provider=MeterProvider(metric_readers=[reader]))
    guard.on_decision = fan_out(guard.on_decision, LogDecisions())
    with caplog.at_level(logging.INFO, logger="keysentry.decisions"):
        assert Client("flask", guard).get("/").status == 401
    assert [e.code for e in seen] == ["MISSING_API_KEY"]
    assert (
        registry.get_sample_value(
            "keysentry_decisions_total", {"outcome": "denied", "code": "MISSING_API_KEY"}
        )
        == 1
    )
    assert (
        _otel(reader)[("keysentry.decisions", ("code", "MISSING_API_KEY"), ("outcome", "denied"))]
        == 1
    )
    assert [r.name for r in caplog.records] == ["keysentry.decisions"]


def _otel(reader: InMemoryMetricReader) -> dict[tuple[Any, ...], Any]:
    """(instrument, *sorted attributes) -> a sum's value, or a histogram's data point."""
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[tuple[Any, ...], Any] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "keysentry"
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    key = (metric.name, *sorted(point.attributes.items()))  # type: ignore[union-attr]
                    points[key] = point if isinstance(point, HistogramDataPoint) else point.value
    return points


def test_opentelemetry_counts_decisions_latency_and_cache_lookups(
    guard: Keysentry, framework: str
) -> None:
    reader = InMemoryMetricReader()
    OpenTelemetryMetrics(guard, meter_provider=MeterProvider(metric_readers=[reader]))
    _traffic(guard, framework)
    points = _otel(reader)

    assert points[("keysentry.decisions", ("outcome", "allowed"))] == 2
    assert points[("keysentry.decisions", ("code", "RATE_LIMITED"), ("outcome", "denied"))] == 1
    assert points[("keysentry.decisions", ("code", "MISSING_API_KEY"), ("outcome", "denied"))] == 1
    assert points[("keysentry.decisions", ("code", "INVALID_API_KEY"), ("outcome", "denied"))] == 2
    allowed = points[("keysentry.decision.duration", ("outcome", "allowed"))]
    denied = points[("keysentry.decision.duration", ("outcome", "denied"))]
    assert (allowed.count, denied.count) == (2, 4)
    assert 0 < allowed.sum < 2
    assert list(allowed.explicit_bounds)[:3] == [0.00001, 0.000025, 0.00005]
    assert points[("keysentry.cache.lookups", ("result", "hit"))] == 2
    assert points[("keysentry.cache.lookups", ("result", "miss"))] == 2
    assert points[("keysentry.failures", ("kind", "store"))] == 0
    assert points[("keysentry.limiter.failed_open",)] == 0
    assert points[("keysentry.cache.entries",)] == 1


@pytest.mark.redis
@pytest.mark.parametrize("framework", ["starlette", "werkzeug"])
def test_store_and_limiter_outages_are_counted(redis_server: RedisServer, framework: str) -> None:
    """A Redis store and limiter, then Redis stops: an uncached key gets 503 (a store outage);
    a cached one goes through, failing open (a limiter outage)."""
    store = RedisStore(redis_server.url, timeout=0.2, failures=100)
    limiter = RedisLimiter(redis_server.url, timeout=0.2, failures=100)
    guard = Keysentry(
        store, secret=SECRET, limiter=limiter, rate_limit="100/minute", usage_interval=None
    )
    registry = CollectorRegistry()
    PrometheusMetrics(guard, registry=registry)
    reader = InMemoryMetricReader()
    OpenTelemetryMetrics(guard, meter_provider=MeterProvider(metric_readers=[reader]))
    cached = guard.issue(name="cached").key.reveal()
    uncached = guard.issue(name="uncached").key.reveal()
    client = Client(framework, guard)
    try:
        assert client.get("/", {"X-API-Key": cached}).status == 200
        redis_server.stop()
        assert client.get("/", {"X-API-Key": cached}).status == 200  # failing open
        assert client.get("/", {"X-API-Key": uncached}).status == 503
    finally:
        store.close()
        limiter.close()

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert sample("keysentry_failures_total", kind="store") == 1
    assert sample("keysentry_failures_total", kind="limiter") == 1
    assert sample("keysentry_limiter_failed_open_total") == 1
    assert sample("keysentry_decisions_total", outcome="denied", code="AUTH_UNAVAILABLE") == 1
    assert sample("keysentry_cache_lookups_total", result="miss") == 2
    points = _otel(reader)
    assert points[("keysentry.failures", ("kind", "store"))] == 1
    assert points[("keysentry.failures", ("kind", "limiter"))] == 1
    assert points[("keysentry.limiter.failed_open",)] == 1


def test_nothing_of_the_metrics_is_imported_until_asked_for() -> None:
    code = (
        "import sys, keysentry, keysentry.metrics\n"
        "from keysentry import Keysentry, MemoryStore\n"
        "Keysentry(MemoryStore())\n"
        "assert 'prometheus_client' not in sys.modules, 'prometheus_client'\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'opentelemetry'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def _readme_blocks(section: str) -> list[str]:
    text = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, re.S)


def test_the_readme_metrics_snippets_run_as_pasted() -> None:
    """Each in a process of its own: the first registers in prometheus_client's default
    registry, as a user's app would; the second reports through the SDK's console exporter."""
    blocks = _readme_blocks("Metrics")
    assert len(blocks) == 2
    prometheus = (
        "from starlette.testclient import TestClient\n"
        "client = TestClient(app)\n"
        "assert client.get('/hello').status_code == 401\n"
        "scraped = client.get('/metrics/')\n"
        "assert scraped.status_code == 200, scraped.status_code\n"
        'line = \'keysentry_decisions_total{code="MISSING_API_KEY",outcome="denied"} 1.0\'\n'
        "assert line in scraped.text.splitlines(), scraped.text\n"
        "assert client.get('/metrics').status_code == 200\n"
        "print('ok')\n"
    )
    otel = (
        "from starlette.applications import Starlette\n"
        "from starlette.testclient import TestClient\n"
        "from keysentry import ASGIMiddleware\n"
        "assert TestClient(ASGIMiddleware(Starlette(), ks)).get('/').status_code == 401\n"
        "provider.force_flush()\n"
        "print('ok')\n"
    )
    for block, check in zip(blocks, (prometheus, otel), strict=True):
        out = subprocess.run(
            [sys.executable, "-c", "\n".join([block, check])], capture_output=True, text=True
        )
        assert "ok" in out.stdout.splitlines(), out.stderr
    assert '"keysentry.decisions"' in out.stdout  # the console exporter's report

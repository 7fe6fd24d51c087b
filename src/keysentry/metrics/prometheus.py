"""Prometheus metrics of a guard (extra ``prometheus``: ``prometheus_client``)::

    from keysentry.metrics.prometheus import PrometheusMetrics

    PrometheusMetrics(ks)       # ks's decisions from now on, in prometheus_client's registry

Per request, from the decision event (two dict lookups, two or three increments):

* ``keysentry_decisions_total{outcome="allowed"|"denied", code="..."}`` (``code`` is the
  refusal's, empty for allowed requests);
* ``keysentry_decision_duration_seconds{outcome}``, a histogram
  (:data:`~keysentry.metrics.LATENCY_BUCKETS`);
* ``keysentry_cache_lookups_total{result="hit"|"miss"}``.

When scraped, read from the guard:

* ``keysentry_failures_total{kind="store"|"limiter"|"credits"|"invalidator"|"on_decision"}``;
* ``keysentry_limiter_failed_open_total``: requests let through because the limiter could
  not answer;
* ``keysentry_cache_entries``: keys in this process's cache.

Serve them as ``prometheus_client`` does (``start_http_server(9100)``, ``make_asgi_app()``,
``make_wsgi_app()``, ``generate_latest(registry)``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..core import Keysentry
from ..events import DecisionEvent, fan_out
from . import FAILURE_KINDS, LATENCY_BUCKETS

__all__ = ["PrometheusMetrics"]


class PrometheusMetrics:
    """A guard's metrics in a Prometheus registry; made, it counts the guard's decisions.

    :param keysentry: the guard; this adds itself to its ``on_decision`` (next to a callback
        already set there: see :func:`~keysentry.events.fan_out`).
    :param registry: where the metrics are registered (``prometheus_client.REGISTRY`` by
        default). One guard per registry: a second would register the same names.
    :param namespace: the first part of every name.
    :param buckets: upper bounds, in seconds, of the latency histogram's buckets.
    """

    __slots__ = ("_decisions", "_hits", "_latency", "_misses", "_series", "keysentry", "registry")

    def __init__(
        self,
        keysentry: Keysentry,
        *,
        registry: CollectorRegistry = REGISTRY,
        namespace: str = "keysentry",
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        self.keysentry = keysentry
        self.registry = registry
        self._decisions = Counter(
            "decisions",
            "Requests keysentry decided on, by outcome and refusal code.",
            ["outcome", "code"],
            namespace=namespace,
            registry=registry,
        )
        self._latency = Histogram(
            "decision_duration_seconds",
            "Time keysentry took to decide on a request (store and limiter calls included).",
            ["outcome"],
            namespace=namespace,
            registry=registry,
            buckets=buckets,
        )
        lookups = Counter(
            "cache_lookups",
            "Key lookups answered from this process's cache (hit) or by the store (miss).",
            ["result"],
            namespace=namespace,
            registry=registry,
        )
        self._hits = lookups.labels("hit")
        self._misses = lookups.labels("miss")
        # Refusal code (None: allowed) -> its decision counter and latency histogram.
        self._series: dict[str | None, tuple[Counter, Histogram]] = {}
        registry.register(_GuardCollector(keysentry, namespace))
        keysentry.on_decision = fan_out(keysentry.on_decision, self)

    def __repr__(self) -> str:
        return f"PrometheusMetrics({self.keysentry!r})"

    def __call__(self, event: DecisionEvent) -> None:
        code = event.code
        series = self._series.get(code)
        if series is None:
            outcome = "allowed" if event.allowed else "denied"
            series = self._series[code] = (
                self._decisions.labels(outcome, code or ""),
                self._latency.labels(outcome),
            )
        series[0].inc()
        series[1].observe(event.latency)
        cached = event.cached
        if cached is not None:
            (self._hits if cached else self._misses).inc()


class _GuardCollector(Collector):
    """What the guard counts itself, read at scrape time."""

    def __init__(self, keysentry: Keysentry, namespace: str) -> None:
        self._keysentry = keysentry
        self._prefix = f"{namespace}_" if namespace else ""

    def describe(self) -> Iterable[Metric]:
        return self.collect()

    def collect(self) -> Iterable[Metric]:
        ks = self._keysentry
        prefix = self._prefix
        failures = CounterMetricFamily(
            prefix + "failures",
            "Outages by kind: key lookups (store), rate-limit calls (limiter), credit spends "
            "and refunds (credits), announcements (invalidator), callbacks (on_decision).",
            labels=["kind"],
        )
        counts = ks.failures
        for kind in dict.fromkeys((*FAILURE_KINDS, *counts)):
            failures.add_metric([kind], counts.get(kind, 0))
        yield failures
        yield CounterMetricFamily(
            prefix + "limiter_failed_open",
            "Requests let through without a rate limit because the limiter could not answer.",
            value=ks.limiter_failures,
        )
        yield GaugeMetricFamily(
            prefix + "cache_entries",
            "Keys in this process's cache (ids known to be unknown not included).",
            value=len(ks.cache),
        )

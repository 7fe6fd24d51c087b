"""OpenTelemetry metrics of a guard (extra ``otel``: ``opentelemetry-api``)::

    from keysentry.metrics.otel import OpenTelemetryMetrics

    OpenTelemetryMetrics(ks)    # on the global MeterProvider, or meter_provider=...

The instruments, on the meter ``keysentry``; per request, from the decision event:

* ``keysentry.decisions``, a counter: attributes ``outcome`` (``allowed``, ``denied``) and,
  for a refusal, ``code``;
* ``keysentry.decision.duration``, a histogram in seconds: attribute ``outcome``
  (bucket boundaries advised: :data:`~keysentry.metrics.LATENCY_BUCKETS`);
* ``keysentry.cache.lookups``, a counter: attribute ``result`` (``hit``, ``miss``).

Observed from the guard when the SDK collects:

* ``keysentry.failures``, a counter: attribute ``kind`` (``store``, ``limiter``,
  ``credits``, ``invalidator``, ``on_decision``);
* ``keysentry.limiter.failed_open``, a counter: requests let through without a rate limit
  because the limiter could not answer;
* ``keysentry.cache.entries``, an up-down counter: keys in this process's cache.

Without an SDK configured, the API's instruments do nothing (and cost next to nothing).
"""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation, get_meter

from ..core import Keysentry
from ..events import DecisionEvent, fan_out
from . import FAILURE_KINDS, LATENCY_BUCKETS

__all__ = ["OpenTelemetryMetrics"]

_ALLOWED = MappingProxyType({"outcome": "allowed"})
_DENIED = MappingProxyType({"outcome": "denied"})
_HIT = MappingProxyType({"result": "hit"})
_MISS = MappingProxyType({"result": "miss"})


class OpenTelemetryMetrics:
    """A guard's metrics as OpenTelemetry instruments; made, it counts the guard's decisions.

    :param keysentry: the guard; this adds itself to its ``on_decision`` (next to a callback
        already set there: see :func:`~keysentry.events.fan_out`).
    :param meter_provider: where the meter comes from; the global one by default.
    """

    __slots__ = ("_attributes", "_cache", "_decisions", "_duration", "keysentry")

    def __init__(
        self, keysentry: Keysentry, *, meter_provider: MeterProvider | None = None
    ) -> None:
        self.keysentry = keysentry
        meter = get_meter("keysentry", meter_provider=meter_provider)
        self._decisions = meter.create_counter(
            "keysentry.decisions",
            unit="{decision}",
            description="Requests keysentry decided on, by outcome and refusal code.",
        )
        self._duration = meter.create_histogram(
            "keysentry.decision.duration",
            unit="s",
            description="Time keysentry took to decide on a request "
            "(store and limiter calls included).",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
        )
        self._cache = meter.create_counter(
            "keysentry.cache.lookups",
            unit="{lookup}",
            description="Key lookups answered from this process's cache (hit) "
            "or by the store (miss).",
        )
        meter.create_observable_counter(
            "keysentry.failures",
            [self._failures],
            unit="{failure}",
            description="Outages by kind: key lookups (store), rate-limit calls (limiter), "
            "credit spends and refunds (credits), announcements (invalidator), "
            "callbacks (on_decision).",
        )
        meter.create_observable_counter(
            "keysentry.limiter.failed_open",
            [self._failed_open],
            unit="{request}",
            description="Requests let through without a rate limit because the limiter "
            "could not answer.",
        )
        meter.create_observable_up_down_counter(
            "keysentry.cache.entries",
            [self._entries],
            unit="{key}",
            description="Keys in this process's cache.",
        )
        # Refusal code (None: allowed) -> the decision's attributes, made once each.
        self._attributes: dict[str | None, MappingProxyType[str, str]] = {None: _ALLOWED}
        keysentry.on_decision = fan_out(keysentry.on_decision, self)

    def __repr__(self) -> str:
        return f"OpenTelemetryMetrics({self.keysentry!r})"

    def __call__(self, event: DecisionEvent) -> None:
        code = event.code
        attributes = self._attributes.get(code)
        if attributes is None:
            attributes = self._attributes[code] = MappingProxyType(
                {"outcome": "denied", "code": code or ""}
            )
        self._decisions.add(1, attributes)
        self._duration.record(event.latency, _ALLOWED if event.allowed else _DENIED)
        cached = event.cached
        if cached is not None:
            self._cache.add(1, _HIT if cached else _MISS)

    def _failures(self, options: CallbackOptions) -> Iterable[Observation]:
        counts = self.keysentry.failures
        return [
            Observation(counts.get(kind, 0), {"kind": kind})
            for kind in dict.fromkeys((*FAILURE_KINDS, *counts))
        ]

    def _failed_open(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.keysentry.limiter_failures)]

    def _entries(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(len(self.keysentry.cache))]

"""Metrics of a guard, for Prometheus (``keysentry.metrics.prometheus``, extra ``prometheus``)
and OpenTelemetry (``keysentry.metrics.otel``, extra ``otel``).

Both are fed the same way: per request, from the guard's decision events (an adapter adds
itself to ``Keysentry.on_decision``, beside any callback already there); the rest is read from
the guard when the metrics are collected, so it costs nothing per request. A guard with no
adapter does no metrics work at all: this package is imported only when an adapter is.

What they measure, under each system's names:

* decisions, by outcome (``allowed``, ``denied``) and the refusal's code;
* how long keysentry took to decide (store and limiter calls included), by outcome;
* key lookups answered from this process's cache (``hit``) or by the store (``miss``); the
  hit ratio is hits over both;
* outages, by kind: ``store`` (key lookups), ``limiter`` (rate-limit calls, failing open or
  closed), ``credits`` (credit spends and refunds), ``invalidator`` (announcements),
  ``on_decision`` (callbacks that raised); and the requests let through without a rate limit
  (``fail_open``);
* the keys in the cache.
"""

from __future__ import annotations

__all__ = ["FAILURE_KINDS", "LATENCY_BUCKETS"]

#: Upper bounds (seconds) of the decision-latency histogram's buckets: a warm-cache decision
#: takes microseconds, one that waits on a store or a remote limiter milliseconds.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)

#: The kinds of ``Keysentry.failures``, reported (at 0) before any has happened.
FAILURE_KINDS: tuple[str, ...] = ("store", "limiter", "credits", "invalidator", "on_decision")

"""One hook for every decision, for logging and metrics.

``Keysentry(on_decision=callback)`` calls ``callback(event)`` once per guarded request, after
the decision and before the app runs (or the refusal is sent), with a :class:`DecisionEvent`:
the key's public id and display prefix (never the key), allowed or denied, the denial's code
and status, and how long keysentry took to decide. Exempt paths and preflights are not
decisions and are not reported. A callback that raises is logged (rate-limited) and otherwise
ignored: observing a request never fails it.

:class:`LogDecisions` is a ready callback that writes one line per decision to a logger::

    Keysentry(store, on_decision=LogDecisions())        # logger "keysentry.decisions"

The guard takes one callback; :func:`fan_out` makes one of several::

    Keysentry(store, on_decision=fan_out(LogDecisions(), my_callback))

(the metrics adapters in ``keysentry.metrics`` add themselves this way).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

__all__ = [
    "DecisionEvent",
    "DecisionHook",
    "LogActions",
    "LogDecisions",
    "PortalEvent",
    "PortalHook",
    "fan_out",
]


class DecisionEvent(NamedTuple):
    """What keysentry decided about one request."""

    allowed: bool
    #: The denial's code (``INVALID_API_KEY``, ``RATE_LIMITED``, ...); None when allowed.
    code: str | None
    #: The denial's HTTP status; None when allowed (the app answers).
    status: int | None
    #: The key's public id when a key was identified (a refusal of a known key names it too).
    key_id: str | None
    #: The key's display prefix, e.g. ``sk_live_7fK2pQ9xLm3a``.
    prefix: str | None
    #: Seconds keysentry spent on the decision (store and limiter calls included).
    latency: float
    method: str
    path: str
    #: Whether the key was found in this process's cache (True), or had to be looked up in
    #: the store (False: a cache miss, or a refusal before the lookup); None when no
    #: well-formed key reached the cache (none sent, two, a malformed one).
    cached: bool | None = None


class LogDecisions:
    """Log each decision: allowed ones at ``level``, denied ones at ``denied_level``.

    :param logger: where to write; ``logging.getLogger("keysentry.decisions")`` by default.
    :param level: level of allowed requests (DEBUG by default: one line per request is a lot).
    :param denied_level: level of refusals.
    """

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        level: int = logging.DEBUG,
        denied_level: int = logging.INFO,
    ) -> None:
        self.logger = logger or logging.getLogger("keysentry.decisions")
        self.level = level
        self.denied_level = denied_level

    def __repr__(self) -> str:
        return f"LogDecisions(logger={self.logger.name!r})"

    def __call__(self, event: DecisionEvent) -> None:
        level = self.level if event.allowed else self.denied_level
        if not self.logger.isEnabledFor(level):
            return
        path = _printable(event.path)  # a decoded %0A must not start a forged log line
        self.logger.log(
            level,
            "%s %s %s key=%s %s%.0fus",
            event.method,
            path,
            "allowed" if event.allowed else f"denied {event.status} {event.code}",
            event.key_id or "-",
            f"({event.prefix}) " if event.prefix else "",
            event.latency * 1e6,
            extra={"keysentry": event._asdict()},
        )


class PortalEvent(NamedTuple):
    """What the key-management portal (``keysentry.portal``) did, or refused to do, for one
    request: the audit line of an admin surface. Never a key or a digest: a created or rotated
    key is named by its public id."""

    #: ``list``, ``show``, ``create``, ``update``, ``disable``, ``enable``, ``rotate``,
    #: ``revoke``, ``delete``; ``dashboard`` for the page; ``refused`` when the request was
    #: refused before an action was known (no sign-in, a bad CSRF token, an unknown route).
    action: str
    allowed: bool
    #: The refusal's code (``KEY_NOT_FOUND``, ``CSRF_FAILED``, ...); None when allowed.
    code: str | None
    status: int
    #: The account acted for; None when nobody was signed in.
    account: str | None
    #: Who acted: ``"session"`` (the host's sign-in) or ``"key:<id>"`` (an admin key).
    actor: str | None
    #: The key acted on, if any; for a creation or rotation, the new key's id is ``new_key_id``.
    key_id: str | None
    new_key_id: str | None
    #: The names of the fields an update or a creation set (not their values).
    fields: tuple[str, ...]
    method: str
    path: str
    client: str | None


#: What ``portal(..., on_action=...)`` takes.
PortalHook = Callable[[PortalEvent], None]


class LogActions:
    """Log each portal action: done ones at ``level``, refused ones at ``refused_level``.

    :param logger: where to write; ``logging.getLogger("keysentry.portal")`` by default.
    """

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        level: int = logging.INFO,
        refused_level: int = logging.WARNING,
    ) -> None:
        self.logger = logger or logging.getLogger("keysentry.portal")
        self.level = level
        self.refused_level = refused_level

    def __repr__(self) -> str:
        return f"LogActions(logger={self.logger.name!r})"

    def __call__(self, event: PortalEvent) -> None:
        level = self.level if event.allowed else self.refused_level
        if not self.logger.isEnabledFor(level):
            return
        path = _printable(event.path)  # a decoded %0A must not start a forged log line
        self.logger.log(
            level,
            "%s %s account=%s actor=%s key=%s%s %s",
            event.action,
            "done" if event.allowed else f"refused {event.status} {event.code}",
            _printable(event.account),
            _printable(event.actor),
            event.key_id or "-",
            f" new_key={event.new_key_id}" if event.new_key_id else "",
            f"{event.method} {path}",
            extra={"keysentry": event._asdict()},
        )


def _printable(text: str | None) -> str:
    if text is None:
        return "-"
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


#: What ``Keysentry(on_decision=...)`` takes.
DecisionHook = Callable[[DecisionEvent], None]


class _FanOut:
    """Several callbacks as one: see :func:`fan_out`."""

    __slots__ = ("hooks",)

    def __init__(self, hooks: tuple[DecisionHook, ...]) -> None:
        self.hooks = hooks

    def __repr__(self) -> str:
        return f"fan_out({', '.join(map(repr, self.hooks))})"

    def __call__(self, event: DecisionEvent) -> None:
        failed: Exception | None = None
        for hook in self.hooks:
            try:
                hook(event)
            except Exception as exc:  # noqa: PERF203  (the others must still see the event)
                failed = failed or exc
        if failed is not None:
            raise failed  # for the guard to log, as it logs a single callback's


def fan_out(*hooks: DecisionHook | None) -> DecisionHook | None:
    """One ``on_decision`` callback that calls each of ``hooks`` in turn (None are skipped,
    fan-outs are flattened): ``fan_out(LogDecisions(), metrics)``, or
    ``ks.on_decision = fan_out(ks.on_decision, another)`` to add one to a guard.

    Every callback sees every event, even after one raised; the first error is then raised
    again, for the guard to log. None when no callback is left; the callback itself when
    one is.
    """
    flat: list[DecisionHook] = []
    for hook in hooks:
        if isinstance(hook, _FanOut):
            flat.extend(hook.hooks)
        elif hook is not None:
            flat.append(hook)
    if not flat:
        return None
    if len(flat) == 1:
        return flat[0]
    return _FanOut(tuple(flat))

"""What a route costs, declared on the route by a framework helper and read by the middleware.

The middleware charges a request before the app routes it, so a route's declared cost must be
found from the request alone. A helper (``Scopes.require(..., cost=5)``,
``FastAPIKeys.require(..., cost=5)``, ``requires_scopes(..., cost=5)``) marks the endpoint it
returns; the framework's part (``_asgi_scopes.route_cost``, ``flask.py``) matches a request
against the app's own routes, as its router will, and reads the mark. :class:`RouteCosts`
remembers the answer per method and path (bounded), so a route table is walked once per
distinct path, and it is installed on the guard only once a cost has been declared: an app
without route costs pays nothing per request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

__all__ = [
    "MAX_COST",
    "RouteCosts",
    "check_cost",
    "declared_cost",
    "install",
    "mark_cost",
    "uninstall",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The attribute a helper sets on the endpoint (or dependency) it returns.
_ATTRIBUTE = "__keysentry_cost__"
#: Most a request may cost: beyond it is a typo.
MAX_COST = 1_000_000


def check_cost(cost: object) -> int:
    if isinstance(cost, bool) or not isinstance(cost, int):
        raise TypeError(f"cost must be a whole number (int), not {type(cost).__name__}")
    if not 1 <= cost <= MAX_COST:
        raise ValueError(f"cost must be from 1 to {MAX_COST}, not {cost}")
    return cost


def mark_cost(function: F, cost: int) -> F:
    setattr(function, _ATTRIBUTE, cost)
    return function


def declared_cost(function: object) -> int | None:
    """The cost marked on ``function`` or on what it wraps (``functools.wraps``)."""
    for _ in range(16):
        found = getattr(function, _ATTRIBUTE, None)
        if isinstance(found, int):
            return found
        function = getattr(function, "__wrapped__", None)
        if function is None:
            return None
    return None


class RouteCosts:
    """``find(raw)`` memoised by ``key(raw)`` (method and path): a cost, or None."""

    __slots__ = ("_key", "_lock", "_memo", "find", "size")

    def __init__(
        self,
        find: Callable[[Any], int | None],
        key: Callable[[Any], Hashable],
        size: int = 4096,
    ) -> None:
        self.find = find
        self._key = key
        self._memo: dict[Hashable, int | None] = {}
        self._lock = threading.Lock()
        self.size = size

    def __call__(self, raw: Any) -> int | None:
        key = self._key(raw)
        memo = self._memo
        if key in memo:
            return memo[key]
        found = self.find(raw)
        with self._lock:
            if len(memo) >= self.size:
                memo.clear()  # paths with parameters are many; the table is small again
            memo[key] = found
        return found


def install(
    keysentry: Any, find: Callable[[Any], int | None], key: Callable[[Any], Hashable]
) -> RouteCosts:
    """Make ``keysentry``'s middleware ask ``find`` (memoised by ``key``) what a request
    costs; once per guard and ``find``."""
    resolvers: list[Callable[[Any], int | None]] = keysentry._pipeline.route_costs
    for resolver in resolvers:
        if isinstance(resolver, RouteCosts) and resolver.find is find:
            return resolver
    costs = RouteCosts(find, key)
    resolvers.append(costs)
    return costs


def uninstall(keysentry: Any, costs: RouteCosts) -> None:
    resolvers: list[Callable[[Any], int | None]] = keysentry._pipeline.route_costs
    if costs in resolvers:
        resolvers.remove(costs)

"""Route scopes for Starlette: ``@scopes.require("read")`` on endpoints behind the middleware.

:class:`Scopes` is bound to the :class:`~keysentry.Keysentry` guard that authenticates the app,
so a refusal is rendered by that guard (its realm, its ``error_body``), exactly as the
middleware renders its own, and is rendered once, when the route is decorated::

    ks = Keysentry(store, exempt=["/health"])
    scopes = Scopes(ks)

    @scopes.require("read")
    async def list_items(request: Request) -> Response: ...

    app = Starlette(routes=[Route("/v1/items", list_items)])
    app.add_middleware(ASGIMiddleware, keysentry=ks)

Authentication stays in :class:`~keysentry.ASGIMiddleware`; the decorator only reads the
identity it left in ``scope["state"]["api_key"]``. FastAPI calls routes with keyword
arguments, not a request: there, use the dependency in ``keysentry.fastapi``. Importing this
module imports Starlette.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

from starlette.requests import HTTPConnection

from ._asgi_scopes import (
    DenialResponse,
    declare_costs,
    deny,
    identity_of,
    refund,
    refund_from_thread,
)
from ._route_costs import check_cost, mark_cost
from ._scopes import UNAUTHENTICATED, Requirement
from .core import Keysentry

__all__ = ["DenialResponse", "Scopes"]

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


class Scopes:
    """Scope checks for the routes of apps guarded by ``keysentry``: ``Scopes(ks)``."""

    __slots__ = ("_unauthenticated", "keysentry")

    def __init__(self, keysentry: Keysentry) -> None:
        self.keysentry = keysentry
        self._unauthenticated = keysentry.render(UNAUTHENTICATED)

    def __repr__(self) -> str:
        return f"Scopes({self.keysentry!r})"

    def require(self, *scopes: str, cost: int | None = None) -> Callable[[Endpoint], Endpoint]:
        """Decorate an endpoint so that only keys holding every one of ``scopes`` reach it;
        with ``cost``, each request to it costs that much (of the key's rate limits and
        credits, charged by the middleware before the endpoint runs; all of it given back
        when the scopes refuse the key).

        Works on async and sync function endpoints (a sync one still runs in the threadpool),
        on the methods of an ``HTTPEndpoint`` and on websocket function endpoints. A key
        without a scope gets 403 ``INSUFFICIENT_SCOPE`` (``details.required``, and
        ``WWW-Authenticate: Bearer ..., error="insufficient_scope", scope="..."``); a request
        no key authenticated (an exempt path, or no middleware) gets 401 ``MISSING_API_KEY``.
        With no scopes, any authenticated key passes.
        """
        requirement = Requirement.of(scopes)
        insufficient = requirement.insufficient
        guard = self.keysentry
        if cost is not None:
            cost = check_cost(cost)
            declare_costs(guard)
        forbidden = guard.render(insufficient)
        unauthenticated = self._unauthenticated

        def decorate(endpoint: Endpoint) -> Endpoint:
            # Starlette calls endpoint(request) or, for HTTPEndpoint methods, method(self,
            # request): the connection is always the last positional argument.
            if inspect.iscoroutinefunction(endpoint):

                @functools.wraps(endpoint)
                async def guarded(*args: Any) -> Any:
                    conn: HTTPConnection = args[-1]
                    denial = requirement.check(identity_of(conn))
                    if denial is insufficient:
                        await refund(guard, conn)
                        return await deny(conn, forbidden, denial.code)
                    if denial is not None:
                        return await deny(conn, unauthenticated, denial.code)
                    return await endpoint(*args)

                return cast(Endpoint, guarded if cost is None else mark_cost(guarded, cost))

            @functools.wraps(endpoint)
            def guarded_sync(*args: Any) -> Any:
                denial = requirement.check(identity_of(args[-1]))
                if denial is insufficient:
                    refund_from_thread(guard, args[-1])
                    return DenialResponse(forbidden)
                if denial is not None:
                    return DenialResponse(unauthenticated)
                return endpoint(*args)

            return cast(Endpoint, guarded_sync if cost is None else mark_cost(guarded_sync, cost))

        return decorate

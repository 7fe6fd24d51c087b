"""Route scopes for FastAPI: a dependency that returns the key and documents how to send it.

::

    ks = Keysentry(store, exempt=["/health", "/docs/*", "/openapi.json"])
    auth = FastAPIKeys(ks)

    app = FastAPI()
    auth.init_app(app)      # the ASGI middleware, and the handler that renders refusals

    Reader = Annotated[KeyIdentity, Security(auth.require("read"))]

    @app.get("/v1/items")
    async def items(key: Reader) -> ...: ...

Authentication stays in :class:`~keysentry.ASGIMiddleware`; the dependency reads the identity
it left in ``request.state`` and checks the route's scopes. Its sub-dependencies are FastAPI's
own security schemes (``HTTPBearer`` for ``Authorization: Bearer``, ``APIKeyHeader`` for the
guard's API-key header, ``APIKeyQuery`` when a query parameter is enabled), so OpenAPI lists
them and the ``/docs`` Authorize button works. They only document: the middleware has already
read the credential, so they do not parse it again.

A refusal is :class:`Refused`, an ``HTTPException``: with the handler :meth:`FastAPIKeys.init_app`
installs, the client gets the guard's own response (its ``error_body``, its challenge); without
it, FastAPI's default handler still answers the right status and ``WWW-Authenticate``.

:meth:`FastAPIKeys.init_app` also makes the app's OpenAPI document declare, on every operation
a ``require`` dependency protects, the refusals the guard can answer there (400, 401, 402,
403, 429, 503; see ``_openapi.py``), with the error body's schema (the ``KeysentryError``
component), an example per code, and their headers (``WWW-Authenticate``, ``Retry-After``,
the RateLimit fields, also on successful responses). Responses the route declares are kept.
Importing this module imports FastAPI.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, cast

from fastapi import FastAPI, Security
from fastapi.security import APIKeyHeader, APIKeyQuery, HTTPBearer
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.responses import Response

from ._asgi_scopes import declare_costs, deny, identity_of, refund
from ._installed import installed_under
from ._openapi import OpenAPIResponses
from ._route_costs import check_cost, mark_cost
from ._scopes import UNAUTHENTICATED, Requirement
from .asgi import ASGIMiddleware
from .core import Keysentry
from .errors import Denial
from .records import KeyIdentity
from .responses import Rendered

__all__ = ["FastAPIKeys", "Refused"]

#: Headers a response body brings with it: not kept for FastAPI's own error body.
_BODY_HEADERS = frozenset({"content-type", "content-length"})


@dataclass(frozen=True, slots=True)
class _Refusal:
    """One denial, rendered once by its guard, ready to raise."""

    denial: Denial
    rendered: Rendered
    #: The challenge and the denial's own headers, for FastAPI's default handler.
    headers: Mapping[str, str]

    @classmethod
    def of(cls, keysentry: Keysentry, denial: Denial) -> _Refusal:
        rendered = keysentry.render(denial)
        headers = {k: v for k, v in rendered.wsgi_headers if k not in _BODY_HEADERS}
        return cls(denial, rendered, MappingProxyType(headers))


class Refused(HTTPException):
    """A request a :meth:`FastAPIKeys.require` dependency turned away (raised by it, for the
    handler :meth:`FastAPIKeys.init_app` installs).

    ``denial`` says why; ``rendered`` is the guard's response for it (status, headers, body).
    """

    def __init__(self, refusal: _Refusal) -> None:
        super().__init__(refusal.rendered.status, refusal.denial.message, refusal.headers)
        self.denial = refusal.denial
        self.rendered = refusal.rendered


async def _render_refused(conn: HTTPConnection, exc: Exception) -> Response | None:
    assert isinstance(exc, Refused)
    return await deny(conn, exc.rendered, exc.denial.code)


class _Bearer(HTTPBearer):
    """``HTTPBearer`` for OpenAPI only: the middleware has already read the credential."""

    async def __call__(self, request: HTTPConnection) -> None:
        return None


class _APIKeyHeader(APIKeyHeader):
    """``APIKeyHeader`` for OpenAPI only."""

    async def __call__(self, request: HTTPConnection) -> None:
        return None


class _APIKeyQuery(APIKeyQuery):
    """``APIKeyQuery`` for OpenAPI only."""

    async def __call__(self, request: HTTPConnection) -> None:
        return None


def _schemes(keysentry: Keysentry) -> dict[str, _Bearer | _APIKeyHeader | _APIKeyQuery]:
    """The ways ``keysentry`` reads a key, as OpenAPI security schemes, by parameter name.
    Each description ends with the guard's scope implications, if any."""
    implied = keysentry.settings.implications.describe()
    also = f" Scopes imply others: {implied}" if implied else ""
    schemes: dict[str, _Bearer | _APIKeyHeader | _APIKeyQuery] = {}
    if keysentry.settings.header.lower() == "authorization":
        schemes["bearer"] = _Bearer(
            scheme_name="HTTPBearer",
            description=f"The API key, as `Authorization: Bearer <key>`.{also}",
            auto_error=False,
        )
    else:
        schemes["bearer"] = _APIKeyHeader(
            name=keysentry.settings.header,
            scheme_name="BearerHeader",
            description=f"The API key, as `{keysentry.settings.header}: Bearer <key>`.{also}",
            auto_error=False,
        )
    if keysentry.settings.api_key_header is not None:
        schemes["api_key"] = _APIKeyHeader(
            name=keysentry.settings.api_key_header,
            scheme_name="APIKeyHeader",
            description=f"The API key, as `{keysentry.settings.api_key_header}: <key>`.{also}",
            auto_error=False,
        )
    query = keysentry.settings.query_param
    if query is not None:
        schemes["query"] = _APIKeyQuery(
            name=query,
            scheme_name="APIKeyQuery",
            description=f"The API key, as `?{query}=<key>`.{also}",
            auto_error=False,
        )
    return schemes


class FastAPIKeys:
    """FastAPI dependencies for the apps guarded by ``keysentry``: ``FastAPIKeys(ks)``.

    :param error_schema: the JSON Schema of the error body, for OpenAPI: needed only with a
        custom ``error_body`` (the default body's schema is built in; a custom one is
        otherwise declared as an object, with the guard's own examples).
    """

    __slots__ = ("_responses", "_schemes", "_unauthenticated", "keysentry")

    def __init__(
        self, keysentry: Keysentry, *, error_schema: Mapping[str, Any] | None = None
    ) -> None:
        self.keysentry = keysentry
        self._schemes = _schemes(keysentry)
        self._unauthenticated = _Refusal.of(keysentry, UNAUTHENTICATED)
        self._responses = OpenAPIResponses(keysentry, error_schema)

    def __repr__(self) -> str:
        return f"FastAPIKeys({self.keysentry!r})"

    def init_app(self, app: FastAPI) -> None:
        """Guard ``app``: add the ASGI middleware and the exception handler that answers
        :class:`Refused` with the guard's response. Call it once, before the app serves its
        first request; it raises :class:`RuntimeError` if keysentry's middleware is on the app
        already, since every request would be judged twice."""
        found = installed_under(app, ASGIMiddleware)
        if found is not None:
            raise RuntimeError(
                f"keysentry's ASGIMiddleware is already installed on this app ({found}): "
                "init_app adds it itself, so every request would be judged twice. Remove "
                "app.add_middleware(ASGIMiddleware, ...) and call init_app once"
            )
        app.add_middleware(ASGIMiddleware, keysentry=self.keysentry)
        app.add_exception_handler(Refused, _render_refused)  # type: ignore[arg-type]
        generate = app.openapi

        def openapi() -> dict[str, Any]:
            if not app.openapi_schema:
                app.openapi_schema = self.document(generate())
            return app.openapi_schema

        app.openapi = openapi  # type: ignore[method-assign]

    def document(self, openapi: dict[str, Any]) -> dict[str, Any]:
        """Declare the guard's refusals in an OpenAPI document (a dict, changed in place and
        returned) on each operation a :meth:`require` dependency of this object protects:
        the responses the guard can answer there, the ``KeysentryError`` schema of their body,
        their headers. What the document declares already is kept.

        :meth:`init_app` makes ``app.openapi()`` call this; an app that builds its document
        itself (``get_openapi(...)``) calls it on the result."""
        components = openapi.get("components", {}).get("securitySchemes", {})
        # The schemes this object documents, by name, where the document holds them as such.
        ours = {
            scheme.scheme_name
            for scheme in self._schemes.values()
            if components.get(scheme.scheme_name, {}).get("description") == scheme.model.description
        }

        def scopes_of(operation: Mapping[str, Any]) -> list[str] | None:
            scopes: list[str] | None = None
            for requirement in operation.get("security", ()):
                for name, needed in requirement.items():
                    if name in ours:
                        scopes = (scopes or []) + list(needed)
            return scopes

        return self._responses.document(openapi, scopes_of)

    def require(
        self, *scopes: str, cost: int | None = None
    ) -> Callable[..., Awaitable[KeyIdentity]]:
        """A dependency returning the request's :class:`~keysentry.KeyIdentity`, for keys that
        hold every one of ``scopes`` (with none, for any key):
        ``key: Annotated[KeyIdentity, Security(auth.require("read"))]``, or in a route's or
        a router's ``dependencies=[...]``. With ``cost``, each request to a route it guards
        costs that much (of the key's rate limits and credits, charged by the middleware
        before the route runs; all of it given back when the scopes refuse the key).

        A key without a scope is refused with 403 ``INSUFFICIENT_SCOPE`` (``details.required``,
        ``WWW-Authenticate: Bearer ..., error="insufficient_scope", scope="..."``); a request no
        key authenticated (an exempt path, or no middleware) with 401 ``MISSING_API_KEY``.
        OpenAPI lists the required scopes with each security scheme of the operation; the
        scheme descriptions state the guard's scope implications, and the operation's 403
        names the scopes that also grant each required one.

        A key passes with the scopes it holds through the guard's ``scope_implications``
        (by default ``admin`` holds every scope): the refusal still names the route's own.
        """
        requirement = Requirement.of(scopes)
        if cost is not None:
            cost = check_cost(cost)
            declare_costs(self.keysentry)
        insufficient = requirement.insufficient
        forbidden = _Refusal.of(self.keysentry, insufficient)
        unauthenticated = self._unauthenticated

        guard = self.keysentry

        async def api_key(conn: HTTPConnection, **_schemes: None) -> KeyIdentity:
            identity = identity_of(conn)
            denial = requirement.check(identity)
            if denial is insufficient:
                await refund(guard, conn)
                raise Refused(forbidden)
            if denial is not None:
                raise Refused(unauthenticated)
            return cast(KeyIdentity, identity)

        # FastAPI reads a dependency's parameters from its signature: the connection, then one
        # sub-dependency per scheme, each carrying the scopes into the operation's OpenAPI.
        parameters = [
            inspect.Parameter("conn", inspect.Parameter.KEYWORD_ONLY, annotation=HTTPConnection)
        ]
        parameters.extend(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=Security(scheme, scopes=list(requirement.scopes)),
            )
            for name, scheme in self._schemes.items()
        )
        api_key.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            parameters, return_annotation=KeyIdentity
        )
        api_key.__qualname__ = f"FastAPIKeys.require({', '.join(map(repr, requirement.scopes))})"
        return api_key if cost is None else mark_cost(api_key, cost)

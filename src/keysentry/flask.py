"""Flask: an extension that installs the WSGI middleware, and route scopes.

::

    ks = Keysentry(store, exempt=["/health"])
    app = Flask(__name__)
    KeysentryFlask(ks, app)          # or KeysentryFlask(ks).init_app(app) in an app factory

    @app.get("/v1/items")
    @requires_scopes("read")
    def items():
        return {"owner": current_key.owner}

Authentication stays in :class:`~keysentry.WSGIMiddleware`, which wraps ``app.wsgi_app`` and
leaves the identity in ``environ["keysentry.api_key"]``. With ``usage_routes``, the extension
also counts each request's matched rule for the usage history. :func:`requires_scopes` finds the
extension through ``current_app``, so refusals are rendered by the app's own guard (its realm,
its ``error_body``) and the decorator needs no reference to it. Importing this module imports
Flask.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException
from werkzeug.local import LocalProxy
from werkzeug.routing import RequestRedirect

from ._installed import installed_under
from ._route_costs import check_cost, declared_cost, install, mark_cost, uninstall
from ._scopes import Requirement
from .core import CHARGED, Keysentry
from .errors import Denial
from .records import KeyIdentity
from .responses import Rendered
from .wsgi import ENVIRON_KEY, WSGIMiddleware

__all__ = ["KeysentryFlask", "current_key", "requires_scopes"]

View = TypeVar("View", bound=Callable[..., Any])

#: Where the extension registers itself, in ``app.extensions``.
EXTENSION = "keysentry"


class KeysentryFlask:
    """Flask extension: ``KeysentryFlask(ks, app)``, or ``KeysentryFlask(ks)`` then
    :meth:`init_app` for each app."""

    def __init__(self, keysentry: Keysentry, app: Flask | None = None) -> None:
        self.keysentry = keysentry
        # Each route's 403, rendered on its first use: one entry per decorated route.
        self._forbidden: dict[Requirement, Rendered] = {}
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        return f"KeysentryFlask({self.keysentry!r})"

    def init_app(self, app: Flask) -> None:
        """Wrap ``app.wsgi_app`` with the middleware and register in ``app.extensions``.

        Raises :class:`RuntimeError` if keysentry is installed on ``app`` already (by this
        extension, or as a :class:`~keysentry.WSGIMiddleware` anywhere under
        ``app.wsgi_app``): each request is judged once."""
        if EXTENSION in app.extensions:
            raise RuntimeError(
                f"keysentry is already installed on the Flask app {app.name!r} by "
                f"{app.extensions[EXTENSION]!r}: call init_app once per app"
            )
        found = installed_under(app.wsgi_app, WSGIMiddleware, "app.wsgi_app")
        if found is not None:
            raise RuntimeError(
                f"keysentry's WSGIMiddleware is already installed on the Flask app "
                f"{app.name!r} ({found}): KeysentryFlask installs it itself, so every request "
                "would be judged twice. Remove the line "
                "app.wsgi_app = WSGIMiddleware(app.wsgi_app, ks) and keep KeysentryFlask"
            )
        app.wsgi_app = WSGIMiddleware(app.wsgi_app, self.keysentry)  # type: ignore[method-assign]
        app.extensions[EXTENSION] = self
        _ViewCosts(app, self.keysentry)
        if self.keysentry.settings.usage_routes and self.keysentry.usage_recorder is not None:
            app.before_request(self._note_route)

    def _note_route(self) -> None:
        """Count the request for the rule Flask matched (usage history's route templates):
        the middleware cannot see it, as Flask drops it before its WSGI app returns."""
        rule = request.url_rule
        identity = request.environ.get(ENVIRON_KEY)
        recorder = self.keysentry.usage_recorder
        if rule is not None and isinstance(identity, KeyIdentity) and recorder is not None:
            recorder.note_route(rule.rule, identity.id)

    def _refuse(self, requirement: Requirement, denial: Denial) -> Response:
        if denial is requirement.insufficient:
            # A request refused for a scope spends no credit: give back what was taken.
            account = request.environ.pop(CHARGED, None)
            if account is not None:
                self.keysentry.refund(account)
            rendered = self._forbidden.get(requirement)
            if rendered is None:
                rendered = self._forbidden[requirement] = self.keysentry.render(denial)
        else:
            rendered = self.keysentry.render(denial)  # a constant: the Renderer memoises it
        return Response(rendered.body, rendered.wsgi_status, list(rendered.wsgi_headers))


def _extension() -> KeysentryFlask:
    try:
        return cast(KeysentryFlask, current_app.extensions[EXTENSION])
    except KeyError:
        raise RuntimeError(
            "requires_scopes needs the keysentry extension on this app: "
            "KeysentryFlask(ks).init_app(app)"
        ) from None


class _ViewCosts:
    """The costs the app's views declare (``requires_scopes(..., cost=)``), for the
    middleware, which charges a request before Flask routes it: matched with the app's own URL
    map. On the first request (when Flask's routes are final) it removes itself from the
    guard if no view declares a cost, so such an app pays nothing for it."""

    def __init__(self, app: Flask, keysentry: Keysentry) -> None:
        self.app = app
        self.keysentry = keysentry
        self.any: bool | None = None  # whether a view declares a cost: known at first use
        self.resolver = install(keysentry, self.find, _environ_key)

    def find(self, environ: dict[str, Any]) -> int | None:
        app = self.app
        if self.any is None:
            self.any = any(_view_cost(v, None) for v in list(app.view_functions.values()))
            if not self.any:
                uninstall(self.keysentry, self.resolver)
        if not self.any:
            return None
        try:
            rule, _ = app.url_map.bind_to_environ(environ).match(return_rule=True)
        except (HTTPException, RequestRedirect):
            return None
        view = app.view_functions.get(rule.endpoint)
        return None if view is None else _view_cost(view, environ.get("REQUEST_METHOD"))


def _view_cost(view: Any, method: str | None) -> int | None:
    found = declared_cost(view)
    cls = getattr(view, "view_class", None)  # a MethodView: its methods' costs
    if found is None and cls is not None:
        if method is None:
            names = ("get", "post", "put", "patch", "delete")
            return next((c for c in (declared_cost(getattr(cls, n, None)) for n in names) if c),
                        None)  # fmt: skip
        name = "get" if method == "HEAD" else method.lower()
        found = declared_cost(getattr(cls, name, None))
    return found


def _environ_key(environ: dict[str, Any]) -> tuple[str, str, str, str]:
    return (
        environ.get("REQUEST_METHOD", ""),
        environ.get("HTTP_HOST", ""),
        environ.get("SCRIPT_NAME", ""),
        environ.get("PATH_INFO", ""),
    )


def requires_scopes(*scopes: str, cost: int | None = None) -> Callable[[View], View]:
    """Decorate a view so that only keys holding every one of ``scopes`` reach it; with
    ``cost``, each request to it costs that much (of the key's rate limits and credits,
    charged by the middleware before the view runs; all of it given back when the scopes
    refuse the key).

    Put it below the route decorator. Works on sync and async views and on ``MethodView``
    methods. A key without a scope gets 403 ``INSUFFICIENT_SCOPE`` (``details.required``, and
    ``WWW-Authenticate: Bearer ..., error="insufficient_scope", scope="..."``); a request no
    key authenticated (an exempt path) gets 401 ``MISSING_API_KEY``. With no scopes, any
    authenticated key passes.
    """
    requirement = Requirement.of(scopes)
    if cost is not None:
        cost = check_cost(cost)

    def decorate(view: View) -> View:
        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def guarded(*args: Any, **kwargs: Any) -> Any:
                denial = requirement.check(request.environ.get(ENVIRON_KEY))
                if denial is not None:
                    return _extension()._refuse(requirement, denial)
                return await view(*args, **kwargs)

            return cast(View, guarded if cost is None else mark_cost(guarded, cost))

        @functools.wraps(view)
        def guarded_sync(*args: Any, **kwargs: Any) -> Any:
            denial = requirement.check(request.environ.get(ENVIRON_KEY))
            if denial is not None:
                return _extension()._refuse(requirement, denial)
            return view(*args, **kwargs)

        return cast(View, guarded_sync if cost is None else mark_cost(guarded_sync, cost))

    return decorate


def _current_key() -> KeyIdentity:
    identity = request.environ.get(ENVIRON_KEY)
    if not isinstance(identity, KeyIdentity):
        raise RuntimeError(
            "no API key authenticated this request: its path is exempt, or keysentry is not "
            "installed on the app"
        )
    return identity


#: The :class:`~keysentry.KeyIdentity` of the key that authenticated the current request.
current_key: KeyIdentity = cast(KeyIdentity, LocalProxy(_current_key))

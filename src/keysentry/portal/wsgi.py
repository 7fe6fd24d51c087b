"""The portal's WSGI driver, for Flask and any PEP 3333 app: the same portal, its waits
answered by the guard's blocking lifecycle methods and a blocking ``owner_of``.

``owner_of`` is called with a werkzeug :class:`~werkzeug.wrappers.Request`. In Flask, mount the
portal beside the app and read the app's session inside its request context::

    def owner_of(request):
        with app.request_context(request.environ):
            return flask.session.get("account")

    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/account/keys": portal_wsgi(ks, owner_of)})

Importing this module imports werkzeug.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.wrappers import Request as WerkzeugRequest

from ..records import KeyIdentity
from ..wsgi import ENVIRON_KEY
from .app import Portal
from .http import MAX_BODY, Request, Response
from .steps import Call, Step

__all__ = ["PortalWSGI", "WSGIOwnerOf"]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]

#: The host's sign-in: the account signed in for a request, or None.
WSGIOwnerOf = Callable[[WerkzeugRequest], "str | None"]

_REASONS = {
    200: "OK", 201: "Created", 204: "No Content", 303: "See Other", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    409: "Conflict", 413: "Content Too Large", 415: "Unsupported Media Type",
    503: "Service Unavailable",
}  # fmt: skip


class PortalWSGI:
    """The portal as a WSGI app (see :func:`keysentry.portal.portal_wsgi`)."""

    def __init__(self, portal: Portal, owner_of: WSGIOwnerOf | None) -> None:
        portal.keysentry.require_sync()
        self.portal = portal
        self.owner_of = owner_of

    def __repr__(self) -> str:
        return f"PortalWSGI({self.portal!r})"

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        headers = [
            (name[5:].lower().replace("_", "-").encode("latin-1"), value.encode("latin-1"))
            for name, value in environ.items()
            if name.startswith("HTTP_") and isinstance(value, str)
        ]
        if environ.get("CONTENT_TYPE"):
            headers.append((b"content-type", environ["CONTENT_TYPE"].encode("latin-1")))
        identity = environ.get(ENVIRON_KEY)
        request = Request(
            method=environ.get("REQUEST_METHOD", "GET"),
            path=environ.get("PATH_INFO", "") or "/",
            root=environ.get("SCRIPT_NAME", "").rstrip("/"),
            query=environ.get("QUERY_STRING", ""),
            headers=headers,
            body=_body(environ),
            secure=environ.get("wsgi.url_scheme") == "https",
            peer=environ.get("REMOTE_ADDR"),
            identity=identity if isinstance(identity, KeyIdentity) else None,
        )
        response = self._run(self.portal.handle(request), environ)
        status = f"{response.status} {_REASONS.get(response.status, 'Error')}"
        start_response(status, [*response.headers, ("content-length", str(len(response.body)))])
        return [response.body]

    def _run(self, step: Step[Response], environ: Environ) -> Response:
        ks = self.portal.keysentry
        answer: Any = None
        failed: BaseException | None = None
        while True:
            try:
                wanted = step.throw(failed) if failed is not None else step.send(answer)
            except StopIteration as done:
                result: Response = done.value
                return result
            answer = failed = None
            try:
                if isinstance(wanted, Call):
                    answer = getattr(ks, wanted.method)(*wanted.args, **wanted.kwargs)
                elif self.owner_of is not None:
                    answer = self.owner_of(WerkzeugRequest(environ))
            except Exception as exc:
                failed = exc


def _body(environ: Environ) -> bytes | None:
    """The request body, or None past :data:`MAX_BODY`."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY:
        return None
    if length <= 0:
        return b""
    data: bytes = environ["wsgi.input"].read(length)
    return data

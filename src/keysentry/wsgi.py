"""The WSGI driver (PEP 3333): reads the environ, answers through ``start_response``.

Header values arrive as latin-1 ``str``; they are encoded back to the bytes the client sent.
Servers fold repeated headers, and headers whose names differ only by ``-`` versus ``_``
(``X-Api-Key`` and ``X_Api_Key``), into one comma-joined value; a key never contains a comma,
so such a value is read as the several credentials it is and refused unless all are the same.
Every decision is the pipeline's (``pipeline.py``); this module only reads and writes WSGI.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

from ._installed import refuse_twice
from .core import CHARGED, Keysentry
from .decision import Verdict
from .pipeline import PASS, Admitted, Pending
from .ratelimit.headers import rate_headers

__all__ = ["ENVIRON_KEY", "WSGIMiddleware"]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_ONCE = "app.wsgi_app = WSGIMiddleware(app.wsgi_app, ks) or KeysentryFlask(ks, app), not both"

#: Where an admitted request's key identity is, in the environ.
ENVIRON_KEY = "keysentry.api_key"


def _environ_name(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


def folded_values(value: str | None) -> list[bytes]:
    """The values of a header as a server folds them (repeats joined by commas), as bytes."""
    if value is None:
        return []
    raw = value.encode("latin-1", "replace")
    return [part.strip(b" \t") for part in raw.split(b",")] if b"," in raw else [raw]


class WSGIMiddleware:
    """``app.wsgi_app = WSGIMiddleware(app.wsgi_app, ks)`` for Flask; any PEP 3333 app alike."""

    def __init__(self, app: WSGIApp, keysentry: Keysentry) -> None:
        keysentry.require_sync()
        refuse_twice(app, WSGIMiddleware, _ONCE)
        self.app = app
        self.keysentry = keysentry
        self._pipeline = keysentry._pipeline
        settings = keysentry.settings
        self._auth = _environ_name(settings.header)
        key = settings.api_key_header
        self._key = None if key is None else _environ_name(key)
        self._strip = settings.strip_credentials
        self._query = settings.reader.query_values
        self._legacy = settings.legacy_rate_headers

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        auth = environ.get(self._auth)
        key = None if self._key is None else environ.get(self._key)
        pipeline = self._pipeline
        outcome = pipeline.decide(
            self,
            environ,
            None if auth is None else auth.encode("latin-1", "replace"),
            None if key is None else key.encode("latin-1", "replace"),
            (auth is not None and "," in auth) or (key is not None and "," in key),
        )
        while type(outcome) is Pending:
            outcome = pipeline.resume(outcome, outcome.run())
        if type(outcome) is Verdict:
            verdict = outcome
        elif type(outcome) is Admitted:
            verdict, decision = outcome
            fields = rate_headers(decision, verdict.policy_field, self._legacy)
            start_response = partial(_start_with, start_response, fields)
        elif outcome is PASS:
            return self.app(environ, start_response)
        else:
            rendered = pipeline.render(outcome)  # type: ignore[arg-type]
            start_response(rendered.wsgi_status, list(rendered.wsgi_headers))
            return [rendered.body]
        environ[ENVIRON_KEY] = verdict.identity
        if verdict.charged:
            environ[CHARGED] = verdict.charge
        if self._strip:
            environ.pop(self._auth, None)
            if self._key is not None:
                environ.pop(self._key, None)
        return self.app(environ, start_response)

    # -- what the pipeline asks (keysentry.pipeline.Driver) --------------------------------------

    def credentials(self, environ: Environ) -> tuple[list[bytes], list[bytes], list[bytes]]:
        key = None if self._key is None else environ.get(self._key)
        query = environ.get("QUERY_STRING", "").encode("latin-1", "replace")
        return folded_values(environ.get(self._auth)), folded_values(key), self._query(query)

    def preflight(self, environ: Environ) -> bool:
        return (
            environ.get("REQUEST_METHOD") == "OPTIONS"
            and "HTTP_ORIGIN" in environ
            and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ
        )

    def route_path(self, environ: Environ) -> str:
        return str(environ.get("PATH_INFO") or "/")

    def path(self, environ: Environ) -> str:
        return str((environ.get("SCRIPT_NAME") or "") + (environ.get("PATH_INFO") or "/"))

    def method(self, environ: Environ) -> str:
        return str(environ.get("REQUEST_METHOD", ""))

    def peer(self, environ: Environ) -> str | None:
        address = environ.get("REMOTE_ADDR")
        return None if address is None else str(address)

    def forwarded(self, environ: Environ, header: bytes) -> list[bytes]:
        # Repeated lines arrive folded into one value.
        value = environ.get("HTTP_" + header.decode().upper().replace("-", "_"))
        return [] if value is None else [value.encode("latin-1", "replace")]


def _start_with(
    start_response: StartResponse,
    fields: Sequence[tuple[str, str]],
    status: str,
    headers: list[tuple[str, str]],
    *exc_info: Any,
) -> Any:
    """``start_response``, with the RateLimit ``fields`` added to the app's headers."""
    return start_response(status, [*headers, *fields], *exc_info)

"""The WSGI driver (PEP 3333): reads the environ, answers through ``start_response``.

Header values arrive as latin-1 ``str``; they are encoded back to the bytes the client sent.
Servers fold repeated headers, and headers whose names differ only by ``-`` versus ``_``
(``X-Api-Key`` and ``X_Api_Key``), into one comma-joined value; a key never contains a comma,
so such a value is read as the several credentials it is and refused unless all are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from time import perf_counter
from typing import Any

from .core import CHARGED, Keysentry
from .decision import UNKNOWN_KEY, Lookup, Verdict, client_allowed
from .errors import Denial
from .ratelimit.gcra import RateDecision
from .ratelimit.headers import rate_headers

__all__ = ["WSGIMiddleware"]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
Headers = list[tuple[str, str]]

ENVIRON_KEY = "keysentry.api_key"


def _environ_name(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


def _values(value: str | None) -> list[bytes]:
    if value is None:
        return []
    raw = value.encode("latin-1", "replace")
    return [part.strip(b" \t") for part in raw.split(b",")] if b"," in raw else [raw]


class WSGIMiddleware:
    """``app.wsgi_app = WSGIMiddleware(app.wsgi_app, ks)`` for Flask; any PEP 3333 app alike."""

    def __init__(self, app: WSGIApp, keysentry: Keysentry) -> None:
        keysentry.require_sync()
        self.app = app
        self.keysentry = keysentry
        self._auth = _environ_name(keysentry.header)
        self._key = (
            None if keysentry.api_key_header is None else _environ_name(keysentry.api_key_header)
        )

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        ks = self.keysentry
        if ks.exempt and ks.exempt.match(environ.get("PATH_INFO") or "/"):
            return self.app(environ, start_response)
        started = perf_counter() if ks.on_decision is not None else 0.0
        auth = environ.get(self._auth)
        key = None if self._key is None else environ.get(self._key)
        if (
            auth is None
            and key is None
            and ks.allow_preflight
            and environ.get("REQUEST_METHOD") == "OPTIONS"
            and "HTTP_ORIGIN" in environ
            and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ
        ):
            return self.app(environ, start_response)
        query: list[bytes] = []
        if ks.reader.query_param is not None:
            query = ks.reader.query_values(
                environ.get("QUERY_STRING", "").encode("latin-1", "replace")
            )
        if (auth and "," in auth) or (key and "," in key) or len(query) > 1:
            token = ks.reader.read_all(_values(auth), _values(key), query)
        else:
            token = ks.reader.read(
                None if auth is None else auth.encode("latin-1", "replace"),
                None if key is None else key.encode("latin-1", "replace"),
                query[0] if query else None,
            )
        result = token if isinstance(token, Denial) else ks.check(token)
        if type(result) is not Verdict:
            attempts = ks.attempts
            if isinstance(result, Lookup):
                blocked = None if attempts is None else attempts.blocked(self._client(environ))
                result = blocked or ks.resolve(result)
            if isinstance(result, Denial):
                if result is UNKNOWN_KEY and attempts is not None:
                    result = attempts.failed(self._client(environ), result)
                return self._deny(environ, result, None, started, start_response, token)
        if result.admit:
            admitted = self._admit(environ, result)
            if isinstance(admitted, Denial):
                return self._deny(environ, admitted, result, started, start_response)
            if admitted is not None:
                start_response = _adding_headers(start_response, admitted)
        if ks.usage is not None:
            ks.usage.note(result.record.id)
        if ks.on_decision is not None:
            ks.emit(result, None, started, environ.get("REQUEST_METHOD", ""), _path(environ))
        environ[ENVIRON_KEY] = result.identity
        if result.charged:
            environ[CHARGED] = result.credit_account
        if ks.strip_credentials:
            environ.pop(self._auth, None)
            if self._key is not None:
                environ.pop(self._key, None)
        return self.app(environ, start_response)

    def _admit(self, environ: Environ, verdict: Verdict) -> Denial | Headers | None:
        """Client address, rate limit, credits, in that order (see the ASGI driver)."""
        ks = self.keysentry
        if verdict.restricted:
            refused = client_allowed(verdict, self._client(environ))
            if refused is not None:
                return refused
        limited: RateDecision | None = None
        if ks.limiter is not None and verdict.policies:
            decided = ks.limit(verdict)
            if isinstance(decided, Denial):
                return decided
            limited = decided
        if verdict.charged:
            unpaid = ks.spend(verdict)
            if unpaid is not None:
                return ks.with_rate_headers(unpaid, verdict, limited)
        if limited is None:
            return None
        return rate_headers(limited, verdict.policy_field, ks.legacy_rate_headers)

    def _client(self, environ: Environ) -> str | None:
        """The client address an allowlist checks: the peer, or behind trusted proxies the
        address their forwarding header names (repeated lines arrive folded into one)."""
        address: str | None = environ.get("REMOTE_ADDR")
        proxies = self.keysentry.trusted_proxies
        if proxies is None:
            return address
        value: str | None = environ.get(proxies.environ_key)
        values = () if value is None else (value.encode("latin-1", "replace"),)
        return proxies.client(address, values)

    def _deny(
        self,
        environ: Environ,
        denial: Denial,
        verdict: Verdict | None,
        started: float,
        start_response: StartResponse,
        token: bytes | Denial | None = None,
    ) -> list[bytes]:
        ks = self.keysentry
        if ks.on_decision is not None:
            method = environ.get("REQUEST_METHOD", "")
            ks.emit(verdict, denial, started, method, _path(environ), token)
        rendered = ks.render(denial)
        start_response(rendered.wsgi_status, list(rendered.wsgi_headers))
        return [rendered.body]


def _path(environ: Environ) -> str:
    return (environ.get("SCRIPT_NAME") or "") + (environ.get("PATH_INFO") or "/")


def _adding_headers(start_response: StartResponse, extra: Headers) -> StartResponse:
    def start_with_headers(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
        return start_response(status, [*headers, *extra], *exc_info)

    return start_with_headers

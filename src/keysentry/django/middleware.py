"""The Django driver: ``"keysentry.django.middleware.KeysentryMiddleware"`` in ``MIDDLEWARE``.

Sync and async capable, as Django's middleware guide describes: under ASGI with async
middleware around it, it awaits the store (Django's async ORM) and the limiter; under WSGI it
blocks. It reads ``request.META`` as the WSGI driver reads the environ (Django folds repeated
headers into one comma-joined value under both) and hands the pipeline's outcome back:

* an admitted request gets ``request.api_key``, the key's
  :class:`~keysentry.KeyIdentity`, and its response the RateLimit fields;
* an exempt one (``EXEMPT``) gets ``request.api_key = None``;
* a refused one never reaches the view: keysentry's JSON body, status and headers.

Every decision is the pipeline's (``keysentry/pipeline.py``). Two translations are this
driver's own: ``Authorization: Api-Key <key>`` (``API_KEY_SCHEME``) is read as a bare key,
and a key imported from djangorestframework-api-key is upgraded to keysentry's digest just
before the lookup of its first use (``drf_api_key.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from ..core import CHARGED
from ..decision import Verdict
from ..errors import Denial, StoreUnavailable
from ..pipeline import PASS, Admitted, Pending
from ..ratelimit.headers import rate_headers
from ..responses import Rendered
from ..wsgi import folded_values
from .conf import integration
from .drf_api_key import upgrade

__all__ = ["KeysentryMiddleware"]

Response = HttpResponseBase
GetResponse = Callable[[HttpRequest], Any]


def _meta_name(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


class KeysentryMiddleware:
    """Authenticates every request but those on ``EXEMPT`` paths with the project's guard
    (``settings.KEYSENTRY``)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
        found = integration()
        ks = found.keysentry
        if self.async_mode:
            ks.require_async()
        else:
            ks.require_sync()
        self.keysentry = ks
        self._pipeline = ks._pipeline
        settings = ks.settings
        self._auth = _meta_name(settings.header)
        key = settings.api_key_header
        self._key = None if key is None else _meta_name(key)
        self._scheme = found.api_key_scheme
        self._strip = settings.strip_credentials
        self._query = settings.reader.query_values
        self._legacy = settings.legacy_rate_headers
        fmt, store = found.drf_keys, found.store
        self._upgrade: Callable[[bytes], bool] | None = (
            None if fmt is None else (lambda token: upgrade(ks, store, fmt, token))
        )

    def __repr__(self) -> str:
        return f"KeysentryMiddleware({self.keysentry!r})"

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        pipeline = self._pipeline
        outcome = self._decide(request)
        while type(outcome) is Pending:
            if self._upgrade is not None and outcome.lookup is not None:
                self._upgrade_first(outcome)
            outcome = pipeline.resume(outcome, outcome.run())
        fields = self._admit(request, outcome)
        if isinstance(fields, HttpResponseBase):
            return fields
        response = self.get_response(request)
        return response if fields is None else _with_fields(response, fields)

    async def __acall__(self, request: HttpRequest) -> Response:
        pipeline = self._pipeline
        outcome = self._decide(request)
        while type(outcome) is Pending:
            if self._upgrade is not None and outcome.lookup is not None:
                await sync_to_async(self._upgrade_first)(outcome)
            outcome = pipeline.resume(outcome, await outcome.arun())
        fields = self._admit(request, outcome)
        if isinstance(fields, HttpResponseBase):
            return fields
        get_response: Callable[[HttpRequest], Awaitable[Response]] = self.get_response
        response = await get_response(request)
        return response if fields is None else _with_fields(response, fields)

    # -- translating ------------------------------------------------------------------------------

    def _decide(self, request: HttpRequest) -> Any:
        meta = request.META
        auth = meta.get(self._auth)
        key = None if self._key is None else meta.get(self._key)
        repeated = (auth is not None and "," in auth) or (key is not None and "," in key)
        auth_bytes = None if auth is None else auth.encode("latin-1", "replace")
        key_bytes = None if key is None else key.encode("latin-1", "replace")
        scheme = self._scheme
        if (
            scheme is not None
            and auth_bytes is not None
            and auth_bytes[: len(scheme)].lower() == scheme
        ):
            if key_bytes is None and not repeated:
                key_bytes = auth_bytes[len(scheme) :]
                auth_bytes = None
            else:
                repeated = True  # credentials() tells them all
        return self._pipeline.decide(self, request, auth_bytes, key_bytes, repeated)

    def _upgrade_first(self, pending: Pending) -> None:
        """Before a lookup by digest: an imported key of djangorestframework-api-key, seen
        for the first time, gets its keysentry digest (see ``drf_api_key.upgrade``)."""
        assert self._upgrade is not None
        lookup = pending.lookup
        if lookup is None or lookup.key_id is not None or pending.token is None:
            return
        # An outage here meets the lookup too, and the pipeline answers for it.
        with contextlib.suppress(StoreUnavailable):
            self._upgrade(pending.token)

    def _admit(
        self, request: HttpRequest, outcome: Any
    ) -> HttpResponse | Sequence[tuple[str, str]] | None:
        """The refusal to send, or the RateLimit fields for the response (None: none)."""
        fields = None
        if type(outcome) is Verdict:
            verdict = outcome
        elif type(outcome) is Admitted:
            verdict, decision = outcome
            fields = rate_headers(decision, verdict.policy_field, self._legacy)
        elif outcome is PASS:
            request.api_key = None  # type: ignore[attr-defined]
            return None
        else:
            return self.refusal(outcome)
        request.api_key = verdict.identity  # type: ignore[attr-defined]
        meta = request.META
        if verdict.charged:
            meta[CHARGED] = verdict.charge
        if self._strip:
            meta.pop(self._auth, None)
            if self._key is not None:
                meta.pop(self._key, None)
        return fields

    def refusal(self, denial: Denial) -> HttpResponse:
        """A refusal as keysentry renders it (the guard's realm and ``error_body``)."""
        return rendered_response(self.keysentry.render(denial))

    # -- what the pipeline asks (keysentry.pipeline.Driver) --------------------------------------

    def credentials(self, request: HttpRequest) -> tuple[list[bytes], list[bytes], list[bytes]]:
        meta = request.META
        auths = folded_values(meta.get(self._auth))
        keys = folded_values(None if self._key is None else meta.get(self._key))
        scheme = self._scheme
        if scheme is not None:
            n = len(scheme)
            keys += [v[n:] for v in auths if v[:n].lower() == scheme]
            auths = [v for v in auths if v[:n].lower() != scheme]
        query = meta.get("QUERY_STRING", "").encode("latin-1", "replace")
        return auths, keys, self._query(query)

    def preflight(self, request: HttpRequest) -> bool:
        meta = request.META
        return (
            request.method == "OPTIONS"
            and "HTTP_ORIGIN" in meta
            and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in meta
        )

    def route_path(self, request: HttpRequest) -> str:
        return request.path_info or "/"

    def path(self, request: HttpRequest) -> str:
        return request.path

    def method(self, request: HttpRequest) -> str:
        return request.method or ""

    def peer(self, request: HttpRequest) -> str | None:
        address = request.META.get("REMOTE_ADDR")
        return str(address) if address else None

    def forwarded(self, request: HttpRequest, header: bytes) -> list[bytes]:
        value = request.META.get(_meta_name(header.decode()))
        return [] if value is None else [value.encode("latin-1", "replace")]


def rendered_response(rendered: Rendered) -> HttpResponse:
    """keysentry's rendering of a refusal (``Keysentry.render``) as a Django response."""
    response = HttpResponse(rendered.body, status=rendered.status)
    for name, value in rendered.wsgi_headers:
        if name != "content-length":
            response[name] = value
    return response


def _with_fields(response: Response, fields: Sequence[tuple[str, str]]) -> Response:
    for name, value in fields:
        response[name] = value
    return response

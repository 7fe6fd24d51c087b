"""The portal's requests and responses as plain values, and the headers every answer carries.

The drivers (``asgi.py``, ``wsgi.py``) read their protocol into a :class:`Request` and write a
:class:`Response` back; everything between is the same code for both (``app.py``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl

from ..records import KeyIdentity
from ..responses import Rendered

__all__ = ["MAX_BODY", "SECURITY_HEADERS", "Request", "Response"]

#: Largest request body read: a key's settings fit in far less.
MAX_BODY = 64 * 1024

#: On every answer but the static files: nothing the portal shows is cached anywhere (a page
#: may hold a new key), it runs no script or style but its own, and it is never framed.
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("cache-control", "no-store"),
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),
    ("cross-origin-opener-policy", "same-origin"),
)


@dataclass(frozen=True, slots=True)
class Request:
    """One request to the portal, as both drivers read it."""

    method: str
    #: The path below the portal's mount point, starting with ``/``.
    path: str
    #: Where the portal is mounted (``/account/keys``; empty at the root): links and the
    #: CSRF cookie's path start with it.
    root: str
    query: str
    #: Header names in lower case, values as sent (repeated headers stay repeated).
    headers: Sequence[tuple[bytes, bytes]]
    #: None when the body was larger than :data:`MAX_BODY` (it was not read to the end).
    body: bytes | None
    secure: bool
    #: The peer's address (before any trusted proxy is asked).
    peer: str | None
    #: The key a guard's middleware outside the portal already authenticated, if any.
    identity: KeyIdentity | None = None
    _cookies: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def header(self, name: bytes) -> str | None:
        """The first value of a header (``name`` in lower case), latin-1 decoded."""
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None

    def header_values(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name]

    def cookie(self, name: str) -> str | None:
        if not self._cookies:
            jar: SimpleCookie = SimpleCookie()
            for value in self.header_values(b"cookie"):
                with contextlib.suppress(CookieError):
                    jar.load(value.decode("latin-1"))
            self._cookies.update((k, m.value) for k, m in jar.items())
        return self._cookies.get(name)

    def params(self) -> dict[str, str]:
        """The query parameters, the first value of each."""
        found: dict[str, str] = {}
        for key, value in parse_qsl(self.query, keep_blank_values=True, max_num_fields=50):
            found.setdefault(key, value)
        return found

    @property
    def media_type(self) -> str:
        kind = self.header(b"content-type") or ""
        return kind.partition(";")[0].strip().lower()

    def form(self) -> dict[str, list[str]]:
        """An ``application/x-www-form-urlencoded`` body: each name's values, in order."""
        found: dict[str, list[str]] = {}
        text = (self.body or b"").decode("utf-8", "replace")
        for key, value in parse_qsl(text, keep_blank_values=True, max_num_fields=200):
            found.setdefault(key, []).append(value)
        return found

    def json(self) -> Any:
        """The body read as JSON (``ValueError`` if it is not)."""
        return json.loads(self.body or b"")


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    #: The refusal's code, when the response is one (for the audit event).
    code: str | None = None

    @classmethod
    def json(cls, status: int, value: Any, headers: Sequence[tuple[str, str]] = ()) -> Response:
        body = json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
        return cls(status, [("content-type", "application/json"), *headers], body)

    @classmethod
    def html(cls, status: int, text: str, headers: Sequence[tuple[str, str]] = ()) -> Response:
        return cls(status, [("content-type", "text/html; charset=utf-8"), *headers], text.encode())

    @classmethod
    def redirect(cls, location: str, headers: Sequence[tuple[str, str]] = ()) -> Response:
        return cls(303, [("location", location), *headers], b"")

    @classmethod
    def rendered(cls, rendered: Rendered) -> Response:
        """A refusal as the guard renders it: its body, status and headers."""
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in rendered.headers
            if k != b"content-length"  # the drivers add it, for every response
        ]
        return cls(rendered.status, headers, rendered.body)

    def secured(self, extra: Mapping[str, str] | None = None) -> Response:
        """This response with :data:`SECURITY_HEADERS` (replacing any of the same name)."""
        names = {name for name, _ in SECURITY_HEADERS} | set(extra or ())
        headers = [(k, v) for k, v in self.headers if k.lower() not in names]
        headers.extend(SECURITY_HEADERS)
        headers.extend((extra or {}).items())
        self.headers = headers
        return self

    def encoded_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers for ASGI, with the body's length."""
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers]
        headers.append((b"content-length", str(len(self.body)).encode()))
        return headers

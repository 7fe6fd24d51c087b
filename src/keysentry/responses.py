"""Turning a :class:`Denial` into the bytes of an HTTP response, once per distinct denial.

The body shape is one callable (``error_body``); the default is the shape API vendors publish::

    {"success": false, "error": {"code": "INVALID_API_KEY", "message": "...", "details": {}}}

Denials without details or extra headers are module constants, so their rendering is memoised:
rejecting garbage costs a dict lookup, not a JSON encoding. The memo is bounded by the number
of such constants (plus one per configured message), not by traffic.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import Denial

__all__ = ["ErrorBody", "Rendered", "Renderer", "default_error_body"]

ErrorBody = Callable[[Denial], Mapping[str, Any]]

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


def default_error_body(denial: Denial) -> Mapping[str, Any]:
    return {
        "success": False,
        "error": {"code": denial.code, "message": denial.message, "details": dict(denial.details)},
    }


@dataclass(frozen=True, slots=True)
class Rendered:
    """One error response, in the forms both drivers need."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    # The WSGI forms, built once with the rest: a memoised denial is served without decoding.
    wsgi_status: str
    wsgi_headers: tuple[tuple[str, str], ...]


class Renderer:
    __slots__ = ("_body", "_memo", "_realm")

    def __init__(self, realm: str, error_body: ErrorBody | None = None) -> None:
        if '"' in realm or "\\" in realm or not realm.isprintable():
            raise ValueError("the realm must be printable, without quotes or backslashes")
        self._realm = realm
        self._body = error_body or default_error_body
        self._memo: dict[Denial, Rendered] = {}

    def __call__(self, denial: Denial) -> Rendered:
        if denial.details or denial.headers:
            return self._render(denial)
        rendered = self._memo.get(denial)
        if rendered is None:
            rendered = self._memo[denial] = self._render(denial)
        return rendered

    def challenge(self, denial: Denial) -> str | None:
        """The ``WWW-Authenticate`` value for a denial (RFC 6750 §3), or None."""
        error = denial.kind.bearer_error
        if error is None:
            return None
        value = f'Bearer realm="{self._realm}"'
        if error:
            value += f', error="{error}"'
            scope = denial.details.get("required")
            if error == "insufficient_scope" and scope:
                value += f', scope="{" ".join(scope)}"'
        return value

    def _render(self, denial: Denial) -> Rendered:
        body = json.dumps(self._body(denial), separators=(",", ":")).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        challenge = self.challenge(denial)
        if challenge is not None:
            headers.append((b"www-authenticate", challenge.encode("latin-1")))
        headers.extend(
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in denial.headers
        )
        return Rendered(
            denial.status,
            headers,
            body,
            f"{denial.status} {_REASONS.get(denial.status, 'Error')}",
            tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers),
        )

"""CSRF protection for requests signed in by the host's session (a cookie the browser sends by
itself): an HMAC token bound to the account and to a random nonce in a cookie of the portal's.

The nonce lives in an ``HttpOnly``, ``SameSite=Strict`` cookie scoped to the portal's path;
each page carries ``HMAC(secret, account, nonce)`` in its forms (and in a ``<meta>`` for
scripts, which send it as ``X-CSRF-Token``). A forged request from another site can make the
browser send the cookies but cannot read the page, so it cannot know the token; a cookie a
sibling domain plants does not help either, as the token needs the server's secret. Requests
authenticated by an API key carry no ambient credential and need no token. As a second line,
a state-changing request that the browser says comes from elsewhere (``Sec-Fetch-Site`` other
than ``same-origin``, or an ``Origin`` of another host) is refused whatever its token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from .http import Request

__all__ = ["COOKIE", "FIELD", "HEADER", "Csrf"]

COOKIE = "keysentry_csrf"
#: The form field, and the header for scripts.
FIELD = "csrf_token"
HEADER = b"x-csrf-token"

_NONCE_LENGTH = 43  # 32 random bytes, base64url without padding


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Csrf:
    """Tokens under one secret (shared by every process that serves the portal)."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def __repr__(self) -> str:
        return "Csrf(secret=***)"

    def nonce(self, request: Request) -> tuple[str, bool]:
        """The request's nonce, and whether it is new (to be set as a cookie)."""
        found = request.cookie(COOKIE)
        if found is not None and len(found) == _NONCE_LENGTH and found.isascii():
            return found, False
        return _b64(secrets.token_bytes(32)), True

    def token(self, account: str, nonce: str) -> str:
        message = b"keysentry-portal-csrf\0" + account.encode() + b"\0" + nonce.encode()
        return _b64(hmac.new(self._secret, message, hashlib.sha256).digest())

    def cookie(self, nonce: str, request: Request) -> tuple[str, str]:
        """The ``Set-Cookie`` header that keeps ``nonce`` for the portal's path."""
        path = request.root or "/"
        secure = "; Secure" if request.secure else ""
        return ("set-cookie", f"{COOKIE}={nonce}; Path={path}; HttpOnly; SameSite=Strict{secure}")

    def valid(self, request: Request, account: str, presented: str | None) -> bool:
        """Whether a state-changing request carries the account's token for its cookie, and
        comes from this origin as far as the browser says."""
        if _cross_origin(request):
            return False
        nonce = request.cookie(COOKIE)
        if not presented or nonce is None or len(nonce) != _NONCE_LENGTH:
            return False
        expected = self.token(account, nonce)
        return hmac.compare_digest(expected.encode(), presented.encode("utf-8", "replace"))


def _cross_origin(request: Request) -> bool:
    """Whether the browser says the request comes from another origin: by ``Sec-Fetch-Site``
    where it sends one, else by ``Origin`` (``null``, sent under a no-referrer policy, says
    nothing either way)."""
    site = request.header(b"sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = request.header(b"origin")
    if origin is None or origin == "null":
        return False
    # The host only: behind a proxy that ends TLS the app may see http for an https origin.
    host = request.header(b"host")
    return host is None or urlsplit(origin).netloc.lower() != host.lower()

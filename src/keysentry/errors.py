"""Every way a request can be refused, as data.

Each SPEC §5 row exists once, as an :class:`ErrorKind` in :data:`ERRORS`; a refusal is a
:class:`Denial` that points at its kind and carries the message that names the cause. The drivers
turn a denial into a response (``responses.py``); nothing else spells a status or a code.

The exception hierarchy is for library callers (stores, the CLI, lifecycle calls), not for the
request path, which passes denials around as values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "ERRORS",
    "PORTAL_ERRORS",
    "Denial",
    "Conflict",
    "DuplicateKey",
    "ErrorKind",
    "InsufficientCredits",
    "InvalidKeyFormat",
    "KeyNotFound",
    "KeysentryError",
    "StoreUnavailable",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """One row of the error table: what a client sees for one class of refusal."""

    status: int
    code: str
    message: str
    #: ``error=`` parameter of ``WWW-Authenticate: Bearer``; None sends no challenge,
    #: "" sends the bare challenge (RFC 6750 §3.1: no error code when no credential was sent).
    bearer_error: str | None = None


ERRORS: Mapping[str, ErrorKind] = MappingProxyType(
    {
        kind.code: kind
        for kind in (
            ErrorKind(401, "MISSING_API_KEY", "No API key was sent.", bearer_error=""),
            ErrorKind(401, "INVALID_API_KEY", "The API key is not valid.", "invalid_token"),
            ErrorKind(401, "EXPIRED_API_KEY", "The API key has expired.", "invalid_token"),
            ErrorKind(400, "INVALID_REQUEST", "The request is malformed.", "invalid_request"),
            ErrorKind(403, "API_KEY_DISABLED", "The API key is disabled."),
            ErrorKind(403, "ACCOUNT_DISABLED", "The account of the API key is disabled."),
            ErrorKind(403, "IP_NOT_ALLOWED", "This client address may not use the API key."),
            ErrorKind(
                403,
                "INSUFFICIENT_SCOPE",
                "The API key lacks a scope this endpoint needs.",
                "insufficient_scope",
            ),
            ErrorKind(402, "INSUFFICIENT_CREDITS", "The API key has no credits left."),
            ErrorKind(429, "RATE_LIMITED", "Too many requests for this API key."),
            ErrorKind(
                429, "TOO_MANY_FAILED_ATTEMPTS", "Too many failed attempts from this client."
            ),
            ErrorKind(503, "AUTH_UNAVAILABLE", "Authentication is temporarily unavailable."),
        )
    }
)


#: The key-management portal's refusals (``keysentry.portal``), beside the guard's: the same
#: body, the same renderer. Kept apart from :data:`ERRORS`, which lists what a request to a
#: protected route can be answered (and what the OpenAPI documents of those routes declare).
PORTAL_ERRORS: Mapping[str, ErrorKind] = MappingProxyType(
    {
        kind.code: kind
        for kind in (
            ErrorKind(404, "NOT_FOUND", "There is nothing here."),
            ErrorKind(404, "KEY_NOT_FOUND", "This account has no key with that id."),
            ErrorKind(405, "METHOD_NOT_ALLOWED", "This method is not allowed here."),
            ErrorKind(403, "CSRF_FAILED", "The request's CSRF token is missing or wrong."),
            ErrorKind(403, "NO_ACCOUNT", "The API key belongs to no account."),
            ErrorKind(403, "NOT_GRANTABLE", "A scope or setting asked for cannot be granted."),
            ErrorKind(409, "KEY_STATE_CONFLICT", "The key's state does not allow this change."),
            ErrorKind(413, "REQUEST_TOO_LARGE", "The request body is too large."),
            ErrorKind(415, "UNSUPPORTED_MEDIA_TYPE", "The request body has the wrong type."),
            ErrorKind(501, "USAGE_NOT_KEPT", "The key store keeps no usage history."),
        )
    }
)

_KINDS: Mapping[str, ErrorKind] = MappingProxyType({**ERRORS, **PORTAL_ERRORS})


@dataclass(frozen=True, slots=True)
class Denial:
    """A refusal: its kind, a message naming the cause, and optional details and headers.

    Denials without details are module constants and hashable, so a driver can render each one
    once and reuse the bytes (a garbage key costs no JSON encoding).
    """

    kind: ErrorKind
    message: str
    details: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False, compare=False)
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(
        cls,
        code: str,
        message: str | None = None,
        details: Mapping[str, Any] | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> Denial:
        kind = _KINDS[code]
        return cls(
            kind,
            message or kind.message,
            MappingProxyType(dict(details)) if details else _EMPTY,
            headers,
        )

    @property
    def status(self) -> int:
        return self.kind.status

    @property
    def code(self) -> str:
        return self.kind.code


class KeysentryError(Exception):
    """Root of every exception keysentry raises."""


class StoreUnavailable(KeysentryError):
    """The key store (or the rate-limit backend) could not be reached in time.

    Stores wrap their driver's errors in this so the core never imports redis or sqlalchemy.
    """


class KeyNotFound(KeysentryError, LookupError):
    """No key with that id exists in the store."""


class DuplicateKey(KeysentryError, ValueError):
    """A key with that id or digest already exists in the store."""


class InvalidKeyFormat(KeysentryError, ValueError):
    """A key (or key prefix) does not have keysentry's format. Never holds the key itself."""


class InsufficientCredits(KeysentryError):
    """The key has fewer credits left than a request costs; nothing was taken."""

    def __init__(self, balance: int) -> None:
        super().__init__(f"not enough credits left ({balance})")
        self.balance = balance


class Conflict(KeysentryError, ValueError):
    """A change was made on a condition (``update(..., expect=...)``) that no longer holds:
    another writer got there first. Nothing was changed."""

"""Route scopes without a framework: what a route requires, and the denial it answers with.

The framework helpers (``starlette.py``, ``fastapi.py``, ``flask.py``) build one
:class:`Requirement` per decorated route, at decoration time, and per request only read the
identity the middleware left and test one set inclusion. Scope names are checked here once
(RFC 6749 §3.3 ``scope-token``), so they are safe to quote in ``WWW-Authenticate``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .errors import Denial
from .records import KeyIdentity

__all__ = ["UNAUTHENTICATED", "Requirement", "check_scope"]

#: A route that needs a key, reached without one: its path is exempt, or the middleware is not
#: installed. The client cannot tell which, so this is the usual 401 and its challenge.
UNAUTHENTICATED = Denial.of(
    "MISSING_API_KEY", "This endpoint needs an API key, and none authenticated the request."
)

# scope-token = 1*( %x21 / %x23-5B / %x5D-7E ): printable ASCII except space, '"' and '\'.
_SCOPE_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "\\"}


def check_scope(scope: object) -> str:
    """``scope`` if it is a scope-token, else ``ValueError``."""
    if not isinstance(scope, str) or not scope or not _SCOPE_CHARS.issuperset(scope):
        raise ValueError(
            f"invalid scope {scope!r}: a scope is printable ASCII without spaces, "
            "quotes or backslashes (RFC 6749 §3.3)"
        )
    return scope


@dataclass(frozen=True, slots=True, eq=False)
class Requirement:
    """The scopes one route needs (all of them), and the 403 it answers when one is missing."""

    scopes: tuple[str, ...]
    needed: frozenset[str]
    insufficient: Denial

    @classmethod
    def of(cls, scopes: Iterable[str]) -> Requirement:
        ordered = tuple(dict.fromkeys(scopes))  # the order given, once each
        for scope in ordered:
            check_scope(scope)
        return cls(
            ordered,
            frozenset(ordered),
            Denial.of(
                "INSUFFICIENT_SCOPE",
                f"The API key lacks a scope this endpoint needs (required: {' '.join(ordered)}).",
                {"required": list(ordered)},
            ),
        )

    def check(self, identity: object) -> Denial | None:
        """None when ``identity`` (what the middleware left, if anything) may use the route."""
        if not isinstance(identity, KeyIdentity):
            return UNAUTHENTICATED
        return None if identity.has_scopes(self.needed) else self.insufficient

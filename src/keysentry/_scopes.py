"""Route scopes without a framework: what a route requires, the denial it answers with, and
the scopes that imply others.

The framework helpers (``starlette.py``, ``fastapi.py``, ``flask.py``) build one
:class:`Requirement` per decorated route, at decoration time, and per request only read the
identity the middleware left and test one set inclusion. Scope names are checked here once
(RFC 6749 §3.3 ``scope-token``), so they are safe to quote in ``WWW-Authenticate``.

:class:`Implications` is the guard's ``scope_implications`` setting, checked and closed
transitively once, when the guard is made. It is applied once per key: the verdict built on a
key's first match (``decision.py``) gives its identity the scopes it holds through them, and
:meth:`~keysentry.KeyIdentity.has_scopes` (what :meth:`Requirement.check` asks) reads those.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .errors import Denial
from .records import KeyIdentity

__all__ = [
    "ALL_SCOPES",
    "DEFAULT_SCOPE_IMPLICATIONS",
    "UNAUTHENTICATED",
    "Implications",
    "Requirement",
    "check_scope",
]

#: What a scope implies to grant every scope, in ``scope_implications``.
ALL_SCOPES = "*"

#: The guard's default ``scope_implications``: a key with ``admin`` holds every scope.
DEFAULT_SCOPE_IMPLICATIONS: Mapping[str, str | Iterable[str]] = MappingProxyType(
    {"admin": ALL_SCOPES}
)

#: A route that needs a key, reached without one: its path is exempt, or the middleware is not
#: installed. The client cannot tell which, so this is the usual 401 and its challenge.
UNAUTHENTICATED = Denial.of(
    "MISSING_API_KEY", "This endpoint needs an API key, and none authenticated the request."
)

# scope-token = 1*( %x21 / %x23-5B / %x5D-7E ): printable ASCII except space, '"' and '\'.
_SCOPE_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "\\"}


def check_scope(scope: object, where: str = "") -> str:
    """``scope`` if it is a scope-token, else ``ValueError`` (its message begins with
    ``where``, the argument that held it, when given)."""
    if not isinstance(scope, str) or not scope or not _SCOPE_CHARS.issuperset(scope):
        raise ValueError(
            f"{where}{': ' if where else ''}invalid scope {scope!r}: a scope is printable "
            "ASCII without spaces, "
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


_ARGUMENT = "scope_implications"


def _implied(source: str, value: object) -> tuple[str, ...]:
    """What ``scope_implications[source]`` lists, checked: one scope or ``"*"`` (a str), or
    an iterable of them."""
    where = f"{_ARGUMENT}[{source!r}]"
    names: Iterable[object]
    if isinstance(value, str):
        names = (value,)
    elif isinstance(value, Iterable) and not isinstance(value, bytes | bytearray | Mapping):
        names = value
    else:
        raise TypeError(
            f"{where} must be a scope, {ALL_SCOPES!r} (every scope) or a list of them, "
            f"not {type(value).__name__}"
        )
    return tuple(dict.fromkeys(check_scope(name, where) for name in names))


@dataclass(frozen=True, slots=True, eq=False)
class Implications:
    """Scopes that imply others, closed transitively: ``Implications.parse({"admin": "*",
    "write": ["read"]})``.

    A key holding a scope also holds every scope it implies, and what those imply in turn; a
    scope that implies ``"*"`` (directly or through another) gives every scope. Cycles are
    allowed: scopes that imply each other are equivalent.
    """

    #: The setting as given, checked: scope -> the scopes (or ``"*"``) it names.
    rules: Mapping[str, tuple[str, ...]]
    #: Scope -> every scope it implies, transitively (named scopes only, not ``"*"``).
    closure: Mapping[str, frozenset[str]]
    #: The scopes that imply ``"*"``, directly or transitively.
    everything: frozenset[str]

    @classmethod
    def parse(cls, value: Mapping[str, str | Iterable[str]] | None) -> Implications:
        """Check the ``scope_implications`` setting (None, like ``{}``: no implications)."""
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise TypeError(
                f"{_ARGUMENT} must be a mapping of a scope to the scopes it implies, e.g. "
                f'{{"admin": "*", "write": ["read"]}}, or None; not {type(value).__name__}'
            )
        rules: dict[str, tuple[str, ...]] = {}
        for source, implied in value.items():
            check_scope(source, f"{_ARGUMENT} key")
            if source == ALL_SCOPES:
                raise ValueError(
                    f"{_ARGUMENT}: {ALL_SCOPES!r} means every scope: it may be implied, not imply"
                )
            rules[source] = _implied(source, implied)
        closure: dict[str, frozenset[str]] = {}
        everything = set()
        for source in rules:
            reached: set[str] = set()
            todo = [source]
            while todo:  # depth-first, each scope once: a cycle ends where it began
                for name in rules.get(todo.pop(), ()):
                    if name not in reached:
                        reached.add(name)
                        todo.append(name)
            if ALL_SCOPES in reached:
                everything.add(source)
                reached.discard(ALL_SCOPES)
            closure[source] = frozenset(reached)
        return cls(MappingProxyType(rules), MappingProxyType(closure), frozenset(everything))

    def __bool__(self) -> bool:
        return bool(self.rules)

    def __repr__(self) -> str:
        return f"Implications({dict(self.rules)!r})"

    def effective(self, scopes: frozenset[str]) -> tuple[frozenset[str], bool]:
        """What a key holding ``scopes`` holds: those and every scope they imply, and whether
        they imply every scope."""
        if not self.rules:
            return scopes, False
        granted = set(scopes)
        for scope in scopes:
            granted.update(self.closure.get(scope, ()))
        return frozenset(granted), not self.everything.isdisjoint(scopes)

    def granting(self, scope: str) -> tuple[str, ...]:
        """The scopes that imply ``scope`` (directly, transitively or through ``"*"``), sorted."""
        return tuple(
            sorted(
                source
                for source, implied in self.closure.items()
                if source != scope and (scope in implied or source in self.everything)
            )
        )

    def describe(self) -> str:
        """The rules in a sentence, for documentation: ``admin grants every scope; write
        grants read.``; empty when there are none."""
        parts = []
        for source, implied in self.rules.items():
            if ALL_SCOPES in implied:
                parts.append(f"`{source}` grants every scope")
            elif implied:
                parts.append(f"`{source}` grants {', '.join(f'`{s}`' for s in implied)}")
        return "; ".join(parts) + "." if parts else ""

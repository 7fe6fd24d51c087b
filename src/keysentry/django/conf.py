"""``settings.KEYSENTRY``: the one guard of a Django process, built from the project's settings.

::

    KEYSENTRY = {
        "SECRET": os.environ["KEYSENTRY_SECRET"],   # the digest secret (HMAC-SHA256)
        "EXEMPT": ["/admin/*", "/static/*", "/health"],
        "RATE_LIMIT": "60/minute",                  # keys without a limit of their own
        "LIMITER": "memory://",                     # or redis://... (shared by processes)
        "INVALIDATOR": "redis://127.0.0.1:6379/0",  # changes reach every process at once
    }

Every key is a :class:`~keysentry.Keysentry` keyword in upper case (``HEADER``,
``API_KEY_HEADER``, ``PREFIX``, ``CACHE_TTL``, ``FAILURE_LIMIT``, ``TRUSTED_PROXIES``, ...),
besides these of Django's own: ``DATABASE`` (the alias the keys live in, ``"default"``),
``LIMITER`` (a URL or a limiter; ``"memory://"`` unless None), ``INVALIDATOR`` (a Redis URL
or an invalidator), ``DRF_API_KEYS`` (accept keys imported from djangorestframework-api-key:
True, or the lengths of its ``KeyGenerator`` when they are not the default 8 and 32)
and ``API_KEY_SCHEME`` (``Authorization: <scheme> <key>`` read as a bare key: ``"Api-Key"``,
that library's, when ``DRF_API_KEYS`` is on). A key of another name is refused, named.

The guard is built on first use (by the middleware, the admin, ``manage.py keysentry``) and
kept for the process; a test that overrides ``KEYSENTRY`` gets a new one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ..core import Keysentry
from ..ratelimit import Limiter
from ..ratelimit.url import limiter_from_url
from .commits import AfterCommit
from .drf_api_key import DRFKeyFormat
from .store import DjangoStore

__all__ = ["Integration", "forget_guard", "guard", "integration"]

SETTING = "KEYSENTRY"

#: ``KEYSENTRY`` keys passed to Keysentry as they are, by their keyword.
_KEYWORDS = (
    "secret", "prefix", "prefixes", "header", "api_key_header", "query_param", "exempt",
    "allow_preflight", "strip_credentials", "realm", "cache_size", "cache_ttl",
    "negative_ttl", "max_key_length", "error_body", "retry_after", "stale_for", "rate_limit",
    "fail_open", "legacy_rate_headers", "usage_interval", "on_decision", "trusted_proxies",
    "forwarded_header", "failure_limit", "scope_implications",
)  # fmt: skip
_OWN = ("DATABASE", "LIMITER", "INVALIDATOR", "DRF_API_KEYS", "API_KEY_SCHEME")


@dataclass(frozen=True, slots=True)
class Integration:
    """The guard and what the Django parts add to it."""

    keysentry: Keysentry
    store: DjangoStore
    #: The format of djangorestframework-api-key's keys, when they are accepted.
    drf_keys: DRFKeyFormat | None
    #: ``Authorization: <scheme> <key>`` read as a bare key: the scheme, lowercase, with its
    #: space (``b"api-key "``); None: only ``Bearer``.
    api_key_scheme: bytes | None


_lock = threading.Lock()
_current: Integration | None = None


def integration() -> Integration:
    """The process's guard, built from ``settings.KEYSENTRY`` on first use."""
    current = _current
    if current is None:
        with _lock:
            current = _current if _current is not None else _build()
            globals()["_current"] = current
    return current


def guard() -> Keysentry:
    """The :class:`~keysentry.Keysentry` that authenticates this project's requests."""
    return integration().keysentry


def forget_guard(*, setting: str, **_: Any) -> None:
    """``setting_changed``: a new ``KEYSENTRY`` (a test's override) gets a new guard."""
    global _current
    if setting != SETTING:
        return
    with _lock:
        old, _current = _current, None
    if old is not None:
        old.keysentry.close()
        if old.keysentry.invalidator is not None:
            old.keysentry.invalidator.close()


def _build() -> Integration:
    given = getattr(settings, SETTING, None) or {}
    if not isinstance(given, dict):
        raise ImproperlyConfigured(f"settings.{SETTING} must be a dict, not {type(given).__name__}")
    known = {k.upper() for k in _KEYWORDS} | set(_OWN)
    unknown = sorted(set(given) - known)
    if unknown:
        raise ImproperlyConfigured(
            f"settings.{SETTING} has unknown keys {', '.join(map(repr, unknown))}; known: "
            + ", ".join(sorted(known))
        )
    options = {k: given[k.upper()] for k in _KEYWORDS if k.upper() in given}
    store = DjangoStore(given.get("DATABASE", "default"))
    drf_keys = _drf_keys(given.get("DRF_API_KEYS", False))
    if drf_keys is not None:
        options["imported"] = [drf_keys]
    scheme = given.get("API_KEY_SCHEME", "Api-Key" if drf_keys is not None else None)
    try:
        options["limiter"] = _limiter(given.get("LIMITER", "memory://"))
        options["invalidator"] = AfterCommit(_invalidator(given.get("INVALIDATOR")), store.using)
        ks = Keysentry(store, **options)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"settings.{SETTING}: {exc}") from None
    return Integration(ks, store, drf_keys, _scheme(scheme))


def _drf_keys(value: object) -> DRFKeyFormat | None:
    """``DRF_API_KEYS``: False, True (djangorestframework-api-key's default lengths, 8 and
    32) or the lengths of a ``KeyGenerator`` of your own: ``{"prefix_length": 8,
    "secret_key_length": 40}``."""
    if value is False or value is None:
        return None
    if value is True:
        return DRFKeyFormat()
    if isinstance(value, dict) and set(value) <= {"prefix_length", "secret_key_length"}:
        lengths = {"prefix_length": 8, "secret_key_length": 32, **value}
        if all(isinstance(n, int) and 1 <= n <= 128 for n in lengths.values()):
            return DRFKeyFormat(
                prefix_length=lengths["prefix_length"], length=lengths["secret_key_length"]
            )
    raise ImproperlyConfigured(
        f"settings.{SETTING}['DRF_API_KEYS'] is True, False, or the lengths of your "
        "KeyGenerator: {'prefix_length': 8, 'secret_key_length': 32}; not " + repr(value)
    )


def _limiter(value: object) -> Limiter | None:
    if value is None or isinstance(value, Limiter):
        return value
    if isinstance(value, str):
        return limiter_from_url(value)
    raise TypeError(f"LIMITER is a URL (memory://, redis://...), a limiter or None, not {value!r}")


def _invalidator(value: object) -> Any:
    if value is None or not isinstance(value, str):
        return value
    from ..invalidation import RedisInvalidator

    return RedisInvalidator(value)


def _scheme(value: object) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.isascii() or not value.replace("-", "").isalnum():
        raise ImproperlyConfigured(
            f"settings.{SETTING}['API_KEY_SCHEME'] is an authorization scheme such as "
            f"'Api-Key', or None; not {value!r}"
        )
    if value.lower() == "bearer":
        raise ImproperlyConfigured(
            f"settings.{SETTING}['API_KEY_SCHEME']: Bearer is always read; name another scheme"
        )
    return value.lower().encode() + b" "

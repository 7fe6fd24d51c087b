"""The guard's settings: one frozen value, validated once when it is made.

:class:`Settings` holds everything :class:`~keysentry.Keysentry` is told about the wire
(headers, key format, exempt paths, proxies, the error body) and about its policies (cache
lifetimes, default rate limits, failure throttling, outage behaviour), each checked and turned
into the object the request path uses (a :class:`~keysentry.keys.KeyFormat`, a
:class:`~keysentry.credentials.CredentialReader`, ...). Both drivers read this one value, so a
setting means the same on ASGI and WSGI, and nothing changes it once a guard exists.

The digest secret is taken (``secret``) but not kept: only the :class:`~keysentry.keys.Digester`
made from it is, and neither prints it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import InitVar, dataclass, field
from types import MappingProxyType

from ._scopes import DEFAULT_SCOPE_IMPLICATIONS, Implications
from .credentials import CredentialReader
from .errors import Denial
from .history import DEFAULT_RETENTION_DAYS, MAX_DAYS
from .keys import DEFAULT_MAX_LENGTH, DEFAULT_PREFIX, Digester, ImportedFormat, KeyFormat
from .paths import CostPaths, ExemptPaths
from .proxies import TrustedProxies
from .ratelimit.gcra import Policy, policies_of
from .records import Network, Rate
from .responses import ErrorBody, Renderer

__all__ = ["DEFAULT_FAILURE_LIMIT", "DEFAULT_SCOPE_IMPLICATIONS", "Settings"]

#: Failed attempts allowed per client address by default (see ``keysentry.attempts``).
DEFAULT_FAILURE_LIMIT = "30/minute"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a guard is configured with, validated.

    :param secret: server-side secret for HMAC-SHA256 digests (at least 16 bytes). Without
        one, digests are plain SHA-256. Keys minted under one setting verify only under it.
    :param prefix: prefix of minted keys, e.g. ``sk_live``.
    :param prefixes: prefixes a presented key may carry; None accepts any well-formed prefix
        (the store lookup decides), a list rejects others before any lookup.
    :param imported: formats of keys issued by another system, verified by digest lookup.
    :param header: header holding ``Bearer <key>``.
    :param api_key_header: header holding the bare key; None disables it.
    :param query_param: query parameter holding the key; off unless named (keys in URLs
        end up in access logs and browser history).
    :param exempt: paths that need no key, e.g. ``["/health", "/docs/*"]`` (see ``paths.py``).
    :param costs: what a request costs by path, e.g. ``{"/v1/generate": 5}`` (exact paths and
        ``/subtree/*``; others cost 1): charged to the key's rate limit and credits (or its
        account's) at once. The framework helpers declare costs on routes too.
    :param allow_preflight: let CORS preflight requests (``OPTIONS`` with ``Origin`` and
        ``Access-Control-Request-Method``) through without a key, as browsers never send
        credentials on them. Off by default: the app's own ``OPTIONS`` handlers would run
        unauthenticated. The usual setup is CORS middleware outside keysentry, which answers
        preflights before they reach it.
    :param strip_credentials: remove the credential headers before the app sees the request.
    :param realm: realm of the ``WWW-Authenticate`` challenge.
    :param cache_size: most records kept in memory.
    :param cache_ttl: seconds a cached record is trusted; the bound on how long a change made
        by another process goes unseen when nothing invalidates it.
    :param negative_ttl: seconds an unknown key id is remembered as unknown; None (the
        default): as long as a known one (``cache_ttl``). A shorter time lets a client tell
        unknown ids from known ones by when they cost a store query.
    :param max_key_length: longer credentials are refused before they are hashed.
    :param error_body: builds the JSON error body from a :class:`~keysentry.errors.Denial`.
    :param retry_after: seconds a 503 tells clients to wait when the store is down.
    :param stale_for: seconds past ``cache_ttl`` that a cached key keeps working while the
        store cannot be reached (0: none); uncached keys get 503 meanwhile.
    :param rate_limit: policies for keys whose record has none, e.g. ``"60/minute"`` or
        ``"10/second, 10000/day"``; None leaves such keys unlimited (needs a limiter).
    :param fail_open: when the limiter cannot answer, allow the request (True: logged at most
        once per ``retry_after`` seconds and counted in ``Keysentry.limiter_failures``) or
        refuse it with 503 ``AUTH_UNAVAILABLE`` (False).
    :param legacy_rate_headers: also send ``X-RateLimit-Limit/Remaining/Reset``.
    :param usage_interval: seconds between batched writes of ``last_used_at`` and request
        counts (see ``keysentry.usage``); None records no usage.
    :param usage_retention_days: days of usage history (requests per key per UTC day) a store
        that keeps it holds; older days are dropped as it writes.
    :param usage_routes: also count, per key and day, the requests of each route template
        (Starlette/FastAPI ``scope["route"]``, Flask ``request.url_rule``), noted after the
        app has answered; off by default, as it costs each request a little work.
    :param trusted_proxies: CIDRs (or addresses) of the reverse proxies in front of the app,
        e.g. ``["10.0.0.0/8"]``. When the direct peer is one of them, the client address (for
        allowlists and failed-attempt throttling) is read from ``forwarded_header`` (the
        rightmost entry that is not itself a trusted proxy; None if it cannot be read, which
        an allowlist refuses). Empty (the default): the direct peer is the client and
        forwarding headers are ignored, as any client can send them.
    :param forwarded_header: the header the proxies set, ``"X-Forwarded-For"`` or
        ``"Forwarded"`` (RFC 7239); one source only, as two could disagree.
    :param failure_limit: failed attempts (a well-formed key with an unknown id or a wrong
        secret) allowed per client address, e.g. ``"30/minute"`` (the default); past it the
        client gets 429 ``TOO_MANY_FAILED_ATTEMPTS``, before any store query (see
        ``keysentry.attempts``). None turns it off.
    :param scope_implications: scopes that grant others, e.g. ``{"admin": "*", "write":
        ["read"]}``: a scope -> one scope, ``"*"`` (every scope) or a list of them. A key
        holding a scope holds what it implies, transitively (``owner`` -> ``admin`` -> ``*``);
        cycles are allowed and make their scopes equivalent. Default:
        ``{"admin": "*"}``. A mapping given replaces the default (keep ``"admin": "*"`` in it
        to keep that); ``{}`` or None: no implications. Routes check scopes through them; a
        key's stored scopes are unchanged (``KeyIdentity.scopes``), its
        ``effective_scopes``/``has_scope()`` say what it holds.
    :param clock: POSIX time, for key expiry (tests pass their own).
    """

    secret: InitVar[str | bytes | None] = None
    prefix: str = DEFAULT_PREFIX
    prefixes: Iterable[str] | None = None
    imported: Iterable[ImportedFormat] = ()
    header: str = "Authorization"
    api_key_header: str | None = "X-API-Key"
    query_param: str | None = None
    exempt: Iterable[str] = ()
    costs: Mapping[str, int] | None = None
    allow_preflight: bool = False
    strip_credentials: bool = False
    realm: str = "api"
    cache_size: int = 10_000
    cache_ttl: float = 30.0
    negative_ttl: float | None = None
    max_key_length: int = DEFAULT_MAX_LENGTH
    error_body: ErrorBody | None = None
    retry_after: int = 5
    stale_for: float = 300.0
    rate_limit: str | Rate | Iterable[str | Rate] | None = None
    fail_open: bool = True
    legacy_rate_headers: bool = False
    usage_interval: float | None = 10.0
    usage_retention_days: int = DEFAULT_RETENTION_DAYS
    usage_routes: bool = False
    trusted_proxies: str | Iterable[str | Network] = ()
    forwarded_header: str = "X-Forwarded-For"
    failure_limit: str | Rate | None = DEFAULT_FAILURE_LIMIT
    scope_implications: Mapping[str, str | Iterable[str]] | None = field(
        default_factory=lambda: DEFAULT_SCOPE_IMPLICATIONS
    )
    clock: Callable[[], float] = time.time

    # What the request path uses, made from the above by __post_init__.
    digest: Digester = field(init=False)
    format: KeyFormat = field(init=False)
    reader: CredentialReader = field(init=False)
    exempt_paths: ExemptPaths | None = field(init=False)
    #: What a request costs by path; None: 1 each (see ``costs``).
    cost_paths: CostPaths | None = field(init=False)
    #: Whose forwarding header to believe; None: nobody's (the default).
    proxies: TrustedProxies | None = field(init=False)
    render: Renderer = field(init=False)
    default_policies: tuple[Policy, ...] = field(init=False)
    failure_policies: tuple[Policy, ...] = field(init=False)
    #: The 503 answered while the store (or, failing closed, the limiter) cannot answer.
    unavailable: Denial = field(init=False)
    #: ``scope_implications``, checked and closed transitively.
    implications: Implications = field(init=False)

    def __post_init__(self, secret: str | bytes | None) -> None:
        set_ = object.__setattr__  # a frozen dataclass sets its derived fields this way
        imported = tuple(self.imported)
        set_(self, "imported", imported)
        if self.prefixes is not None:
            set_(self, "prefixes", tuple(self.prefixes))
        set_(self, "exempt", tuple(self.exempt))
        for name in (self.header, self.api_key_header):
            if name is not None and (not name.isascii() or not name.replace("-", "").isalnum()):
                raise ValueError(f"header name {name!r} must be letters, digits and dashes")
        if self.api_key_header is not None and self.api_key_header.lower() == self.header.lower():
            raise ValueError("the Bearer header and the API-key header must differ")
        if self.cache_size < 1 or not self.cache_ttl > 0:
            raise ValueError("cache_size must be >= 1 and cache_ttl > 0")
        if self.negative_ttl is not None and not self.negative_ttl >= 0:
            raise ValueError("negative_ttl must be >= 0 seconds")
        if not (isinstance(self.retry_after, int) and self.retry_after >= 0):
            raise ValueError("retry_after must be a whole number of seconds >= 0")
        if not (math.isfinite(self.stale_for) and self.stale_for >= 0):
            raise ValueError("stale_for must be >= 0 seconds")
        days = self.usage_retention_days
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
            raise ValueError(
                f"usage_retention_days must be a whole number of days from 1 to {MAX_DAYS}, "
                f"not {days!r}"
            )
        if not isinstance(self.usage_routes, bool):
            raise TypeError(f"usage_routes must be True or False, not {self.usage_routes!r}")
        set_(self, "digest", Digester(secret))
        implications = Implications.parse(self.scope_implications)
        set_(self, "implications", implications)
        set_(self, "scope_implications", implications.rules)
        from .keys import validate_prefix

        validate_prefix(self.prefix)
        set_(self, "format", KeyFormat(self.prefixes, imported, self.max_key_length))
        set_(
            self,
            "reader",
            CredentialReader(
                api_key_header=self.api_key_header or self.header,
                query_param=self.query_param,
                max_length=self.max_key_length,
            ),
        )
        exempt = ExemptPaths(self.exempt)
        set_(self, "exempt_paths", exempt if exempt else None)
        if self.costs is not None and not isinstance(self.costs, Mapping):
            raise TypeError("costs must map paths to costs, e.g. {'/v1/generate': 5}")
        costs = CostPaths(self.costs or {})
        set_(self, "costs", MappingProxyType(dict(self.costs or {})))
        set_(self, "cost_paths", costs if costs else None)
        proxies = TrustedProxies(self.trusted_proxies, self.forwarded_header)
        set_(self, "proxies", proxies if proxies else None)
        set_(self, "render", Renderer(self.realm, self.error_body))
        rates = None if self.rate_limit is None else Rate.parse_many(self.rate_limit)
        set_(self, "default_policies", () if rates is None else policies_of(rates))
        failures = None if self.failure_limit is None else Rate.parse_many(self.failure_limit)
        set_(self, "failure_policies", () if failures is None else policies_of(failures))
        set_(
            self,
            "unavailable",
            Denial.of(
                "AUTH_UNAVAILABLE",
                "Authentication is temporarily unavailable: retry shortly.",
                headers=(("Retry-After", str(self.retry_after)),),
            ),
        )

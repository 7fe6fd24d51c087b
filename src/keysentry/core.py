"""The configured guard: one object that both drivers, the CLI and user code share.

:class:`Keysentry` holds the store, the key format, the digest, the cache and the HTTP-facing
settings, all validated once here. Its request path is two short twins,
:meth:`Keysentry.authenticate` (blocking store, WSGI) and :meth:`Keysentry.aauthenticate`
(async store, ASGI), that differ only in how they wait for the store on a cache miss; the
decision itself (:meth:`Keysentry._judge`, :func:`keysentry.decision.standing`) is shared.

Per request on a warm cache: one ``rfind``, one ``crc32``, one HMAC, one locked dict hit, one
``compare_digest``. Nothing else is allocated or looked up, and garbage never reaches the cache.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import logging
import math
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from .attempts import DEFAULT_FAILURE_LIMIT, FailedAttempts
from .cache import TTLCache
from .credentials import CredentialReader
from .decision import NO_CREDITS, UNKNOWN_KEY, Entry, Lookup, Verdict, standing
from .errors import (
    Conflict,
    Denial,
    InsufficientCredits,
    InvalidKeyFormat,
    KeyNotFound,
    StoreUnavailable,
)
from .events import DecisionEvent
from .flights import Flights
from .keys import (
    ALPHABET,
    DEFAULT_MAX_LENGTH,
    DEFAULT_PREFIX,
    KEY_ID_LENGTH,
    Digester,
    ImportedFormat,
    KeyFormat,
    SecretKey,
    mint,
    shown_id,
    validate_prefix,
)
from .paths import ExemptPaths
from .proxies import TrustedProxies
from .ratelimit.base import Limiter
from .ratelimit.gcra import RateDecision, policies_of
from .ratelimit.headers import rate_headers
from .records import KeyRecord, Network, Rate, utcnow
from .responses import ErrorBody, Renderer
from .stores.base import AsyncKeyStore, KeyChanges, KeyStore
from .usage import UsageRecorder

__all__ = ["CHARGED", "IssuedKey", "Keysentry"]

#: Where the drivers note, for a key with credits, whose credit the request spent (ASGI
#: ``scope["state"]``, the WSGI environ), so a route that then refuses it can give it back.
CHARGED = "keysentry.charged"

log = logging.getLogger("keysentry")


class Invalidator(Protocol):
    """What the core needs of a cross-process invalidation channel."""

    def start(self, *, cache: TTLCache[Entry]) -> None: ...

    def publish(self, key_id: str, digest: bytes | None = None) -> int: ...

    async def apublish(self, key_id: str, digest: bytes | None = None) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just created: the full key, to show its owner once, and its stored record."""

    key: SecretKey
    record: KeyRecord


class Keysentry:
    """API-key authentication for one store. Share one instance per process.

    :param store: a :class:`KeyStore` (for WSGI and the CLI), an :class:`AsyncKeyStore`
        (for ASGI), or a store offering both faces.
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
    :param error_body: builds the JSON error body from a :class:`Denial`.
    :param retry_after: seconds a 503 tells clients to wait when the store is down.
    :param stale_for: seconds past ``cache_ttl`` that a cached key keeps working while the
        store cannot be reached (0: none); uncached keys get 503 meanwhile.
    :param limiter: rate-limit backend (:class:`MemoryLimiter`, :class:`RedisLimiter`); None
        turns rate limiting off.
    :param rate_limit: policies for keys whose record has none, e.g. ``"60/minute"`` or
        ``"10/second, 10000/day"``; None leaves such keys unlimited.
    :param fail_open: when the limiter cannot answer, allow the request (True: logged at most
        once per ``retry_after`` seconds and counted in :attr:`limiter_failures`) or refuse it
        with 503 ``AUTH_UNAVAILABLE`` (False).
    :param legacy_rate_headers: also send ``X-RateLimit-Limit/Remaining/Reset``.
    :param invalidator: a :class:`~keysentry.invalidation.RedisInvalidator`, for any store:
        this process listens for changes announced by others and drops them from its cache,
        and announces every change it makes through the lifecycle methods (:meth:`update`,
        :meth:`revoke`, :meth:`rotate`, ...), so they take effect everywhere at once rather
        than within ``cache_ttl``.
    :param usage_interval: seconds between batched writes of ``last_used_at`` and request
        counts (see ``keysentry.usage``); None records no usage.
    :param on_decision: called with a :class:`~keysentry.events.DecisionEvent` for every
        guarded request (see ``keysentry.events``; :class:`~keysentry.events.LogDecisions`
        logs them).
    :param trusted_proxies: CIDRs (or addresses) of the reverse proxies in front of the app,
        e.g. ``["10.0.0.0/8"]``. Only for keys with ``allowed_networks``: when the direct peer
        is one of them, the client address checked is read from ``forwarded_header`` (the
        rightmost entry that is not itself a trusted proxy; None if it cannot be read, which
        the allowlist refuses). Empty (the default): the direct peer is the client and
        forwarding headers are ignored, as any client can send them.
    :param failure_limit: failed attempts (a well-formed key with an unknown id or a wrong
        secret) allowed per client address, e.g. ``"30/minute"`` (the default); past it the
        client gets 429 ``TOO_MANY_FAILED_ATTEMPTS``, before any store query (see
        ``keysentry.attempts``). Counted on ``limiter`` when there is one, else in this
        process. None turns it off.
    :param forwarded_header: the header the proxies set, ``"X-Forwarded-For"`` or
        ``"Forwarded"`` (RFC 7239); one source only, as two could disagree.
    """

    def __init__(
        self,
        store: KeyStore | AsyncKeyStore,
        *,
        secret: str | bytes | None = None,
        prefix: str = DEFAULT_PREFIX,
        prefixes: Iterable[str] | None = None,
        imported: Iterable[ImportedFormat] = (),
        header: str = "Authorization",
        api_key_header: str | None = "X-API-Key",
        query_param: str | None = None,
        exempt: Iterable[str] = (),
        allow_preflight: bool = False,
        strip_credentials: bool = False,
        realm: str = "api",
        cache_size: int = 10_000,
        cache_ttl: float = 30.0,
        negative_ttl: float | None = None,
        max_key_length: int = DEFAULT_MAX_LENGTH,
        error_body: ErrorBody | None = None,
        retry_after: int = 5,
        stale_for: float = 300.0,
        limiter: Limiter | None = None,
        rate_limit: str | Rate | Iterable[str | Rate] | None = None,
        fail_open: bool = True,
        legacy_rate_headers: bool = False,
        invalidator: Invalidator | None = None,
        usage_interval: float | None = 10.0,
        on_decision: Callable[[DecisionEvent], None] | None = None,
        trusted_proxies: str | Iterable[str | Network] = (),
        forwarded_header: str = "X-Forwarded-For",
        failure_limit: str | Rate | None = DEFAULT_FAILURE_LIMIT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._sync_store = store if isinstance(store, KeyStore) else None
        self._async_store = store if isinstance(store, AsyncKeyStore) else None
        if self._sync_store is None and self._async_store is None:
            raise TypeError(
                f"{type(store).__name__} is neither a KeyStore nor an AsyncKeyStore: "
                f"{_missing(store)}"
            )
        self.digest = Digester(secret)
        self.prefix = validate_prefix(prefix)
        self.imported = tuple(imported)
        self.format = KeyFormat(prefixes, self.imported, max_key_length)
        self.reader = CredentialReader(
            api_key_header=api_key_header or header,
            query_param=query_param,
            max_length=max_key_length,
        )
        for name in (header, api_key_header):
            if name is not None and (not name.isascii() or not name.replace("-", "").isalnum()):
                raise ValueError(f"header name {name!r} must be letters, digits and dashes")
        if rate_limit is not None and limiter is None:
            raise ValueError("rate_limit needs a limiter (MemoryLimiter() or RedisLimiter(url))")
        if api_key_header is not None and api_key_header.lower() == header.lower():
            raise ValueError("the Bearer header and the API-key header must differ")
        self.header = header
        self.api_key_header = api_key_header
        self.exempt = ExemptPaths(exempt)
        self.allow_preflight = allow_preflight
        self.strip_credentials = strip_credentials
        proxies = TrustedProxies(trusted_proxies, forwarded_header)
        #: Whose forwarding header to believe for allowlists; None: nobody's (the default).
        self.trusted_proxies = proxies if proxies else None
        self.render = Renderer(realm, error_body)
        self.cache: TTLCache[Entry] = TTLCache(cache_size, cache_ttl, negative_ttl)
        self.unavailable = Denial.of(
            "AUTH_UNAVAILABLE",
            "Authentication is temporarily unavailable: retry shortly.",
            headers=(("Retry-After", str(retry_after)),),
        )
        self.limiter = limiter
        #: Failed-attempt throttling; None when ``failure_limit`` is None.
        self.attempts = None if failure_limit is None else FailedAttempts(failure_limit, limiter)
        self.default_policies = (
            () if rate_limit is None else policies_of(Rate.parse_many(rate_limit))
        )
        self.fail_open = fail_open
        self.legacy_rate_headers = legacy_rate_headers
        #: Requests let through because the limiter could not answer (fail_open).
        self.limiter_failures = 0
        self._logged_at: dict[str, float] = {}
        self._failure_lock = threading.Lock()
        self._retry_after = retry_after
        self.stale_for = stale_for
        self._clock = clock
        # Keys a process has verified once are recognised on cache hits by a process-local
        # MAC (never stored, never shared) instead of a second HMAC; see _tag().
        self._tagger = hashlib.blake2s(key=os.urandom(32), digest_size=16)
        self._siphash = hash_key_is_random()
        # The tag of an entry no key has matched yet: random, so that no key matches it, and
        # of a real tag's length, so that comparing takes as long.
        self._no_tag = os.urandom(8 if self._siphash else 16)
        self._flights = Flights()
        self.invalidator = invalidator
        #: Batches usage for the store; None when ``usage_interval`` is None.
        self.usage = None if usage_interval is None else UsageRecorder(store, usage_interval)
        self.on_decision = on_decision
        if invalidator is not None:
            invalidator.start(cache=self.cache)

    def __repr__(self) -> str:
        return f"Keysentry(store={self.store!r}, digest={self.digest!r}, cache={self.cache!r})"

    # -- the request path ------------------------------------------------------------------------

    def check(self, token: bytes) -> Verdict | Denial | Lookup:
        """Decide on a presented token from the cache alone; a :class:`Lookup` when it misses.

        Format and checksum come first, so garbage costs no digest and no cache access. A key
        this process has seen match its record before is recognised by its tag; any other
        key, known id or not, takes the same steps: digest, comparison, refusal.
        """
        key_id = self.format.identify(token)
        if isinstance(key_id, Denial):
            return key_id
        cache = self.cache
        generation = cache.generation
        if key_id is not None:
            # _tag(), inline in the common case: a call is a third of its cost.
            if self._siphash:
                tag = hash(token).to_bytes(8, "little", signed=True)
            else:
                tag = self._tag(token)
            entry = cache.get(key_id)
            if isinstance(entry, Entry):
                # Fast path: this key matched the stored digest before, in this process; its
                # tag proves it is the same key for a fifth of the cost of the HMAC.
                if hmac.compare_digest(tag, entry.tag):
                    verdict = entry.verdict
                    if verdict is not None:
                        if verdict.in_good_standing:
                            return verdict
                        return standing(verdict, self._clock)
                return self._judge(key_id, entry, self.digest(token), tag, generation)
            return Lookup(key_id, self.digest(token), tag, generation)
        digest = self.digest(token)
        entry = cache.get(digest)
        if isinstance(entry, Entry):
            return self._judge(digest, entry, digest, None, generation)
        return Lookup(None, digest, None, generation)

    def _tag(self, token: bytes) -> bytes:
        """The process-local MAC by which a cache hit recognises a key verified before.

        When CPython drew its hash key at random (its default: ``PYTHONHASHSEED`` unset or
        ``random``), it is ``hash(token)``: SipHash, a keyed PRF made for short inputs, under
        that 128-bit key from os.urandom; 64 bits, compared as bytes in constant time. Forging
        a different token with the same tag is a blind online guess at 2**-64 a request, and
        any mismatch falls back to the full HMAC comparison. It costs ~0.1 us against ~0.3 us
        for a keyed BLAKE2s, which is what this method computes when ``PYTHONHASHSEED`` fixes
        the hash key to a number (then known, so not used as one).
        """
        if self._siphash:
            return hash(token).to_bytes(8, "little", signed=True)
        mac = self._tagger.copy()
        mac.update(token)
        return mac.digest()

    def _judge(
        self,
        cache_key: bytes,
        entry: Entry,
        digest: bytes,
        tag: bytes | None,
        generation: int,
        remember: bool = True,
    ) -> Verdict | Denial:
        """Decide on a key whose cache entry is ``entry``: the same steps for a phantom (an
        unknown id) as for a record with another digest. On a first match the verdict is built
        and remembered with the key's tag (unless ``remember`` is off: a stale entry served
        while the store is down must not become fresh again)."""
        if not hmac.compare_digest(digest, entry.digest):
            return UNKNOWN_KEY
        record = entry.record
        if record is None:
            return UNKNOWN_KEY  # a phantom: the id is unknown
        verdict = entry.verdict
        if verdict is None or tag is not None:
            if verdict is None:
                verdict = Verdict.of(record, self.default_policies)
            if remember:
                # The presented digest equals the record's: keeping it (made just now, like a
                # phantom's) rather than the record's lays known and unknown entries out alike.
                fresh = Entry(digest, tag or self._no_tag, verdict, record)
                self.cache.put(cache_key, fresh, generation)
        return standing(verdict, self._clock)

    def resolve(self, lookup: Lookup) -> Verdict | Denial:
        """Finish :meth:`check` after a cache miss: ask the blocking store, remember, decide.

        Concurrent misses for one key share one store query (see ``keysentry.flights``)."""
        store = self._sync_store
        if store is None:
            raise TypeError(f"{type(self.store).__name__} has no blocking face: use it from ASGI")
        try:
            record = self._flights.fetch(lookup, store)
        except StoreUnavailable:
            return self._store_down(lookup)
        return self._decide_fetched(lookup, record)

    async def aresolve(self, lookup: Lookup) -> Verdict | Denial:
        """The async twin of :meth:`resolve`."""
        store = self._async_store
        if store is None:
            raise TypeError(f"{type(self.store).__name__} has no async face: use it from WSGI")
        try:
            record = await self._flights.afetch(lookup, store)
        except StoreUnavailable:
            return self._store_down(lookup)
        return self._decide_fetched(lookup, record)

    def authenticate(self, token: bytes) -> Verdict | Denial:
        """Decide on a presented token, waiting on the blocking store if the cache misses."""
        result = self.check(token)
        return self.resolve(result) if isinstance(result, Lookup) else result

    async def aauthenticate(self, token: bytes) -> Verdict | Denial:
        """The async twin of :meth:`authenticate`."""
        result = self.check(token)
        return await self.aresolve(result) if isinstance(result, Lookup) else result

    def _store_down(self, lookup: Lookup) -> Verdict | Denial:
        """The store cannot answer: a key cached recently still works, for ``stale_for``."""
        cache_key = lookup.key_id or lookup.digest
        stale = self.cache.get_stale(cache_key, self.stale_for)
        self._warn("store", "key store unavailable; stale cache entries serve, others get 503")
        if isinstance(stale, Entry):
            return self._judge(
                cache_key, stale, lookup.digest, lookup.tag, lookup.generation, remember=False
            )
        return self.unavailable

    def _decide_fetched(self, lookup: Lookup, record: KeyRecord | None) -> Verdict | Denial:
        """Remember what the store said (a record, or a phantom for an id it does not know:
        the same steps, the same lifetime) and decide."""
        cache_key = lookup.key_id or lookup.digest
        if record is None:
            # A phantom holds the presented key's own digest and tag: objects of its own, as a
            # record's are, and already made. Presented again, it matches them and is refused
            # for having no record; any other key fails the comparison, as on a known id.
            entry = Entry(lookup.digest, lookup.tag or self._no_tag, None, None)
        else:
            entry = Entry(record.digest, self._no_tag, None, record)
        self.cache.put(cache_key, entry, lookup.generation, record is not None)
        return self._judge(cache_key, entry, lookup.digest, lookup.tag, lookup.generation)

    def limit(self, verdict: Verdict, cost: int = 1) -> RateDecision | Denial | None:
        """Charge one request to the key's rate limits: the decision if allowed, the refusal,
        or None when nothing limits this key (or the limiter is down and ``fail_open``).
        Every key of a rotation line is charged to one state (``Verdict.rate_key``)."""
        limiter = self.limiter
        if limiter is None or not verdict.policies:
            return None
        try:
            decision = limiter.hit(verdict.rate_key, verdict.policies, cost)
        except StoreUnavailable:
            return self._limiter_down()
        return decision if decision.allowed else self._rate_limited(verdict, decision)

    async def alimit(self, verdict: Verdict, cost: int = 1) -> RateDecision | Denial | None:
        """The async twin of :meth:`limit`."""
        limiter = self.limiter
        if limiter is None or not verdict.policies:
            return None
        try:
            decision = await limiter.ahit(verdict.rate_key, verdict.policies, cost)
        except StoreUnavailable:
            return self._limiter_down()
        return decision if decision.allowed else self._rate_limited(verdict, decision)

    def spend(self, verdict: Verdict) -> Denial | None:
        """Charge one credit for an allowed request of a key with a balance: None when paid,
        402 ``INSUFFICIENT_CREDITS`` when none are left, 503 when the store cannot say (credits
        are money: they fail closed)."""
        try:
            self._need_sync().spend_credits(verdict.credit_account)
        except (InsufficientCredits, KeyNotFound, StoreUnavailable) as refused:
            return self._unpaid(refused)
        return None

    async def aspend(self, verdict: Verdict) -> Denial | None:
        """The async twin of :meth:`spend`."""
        try:
            await self._need_async().aspend_credits(verdict.credit_account)
        except (InsufficientCredits, KeyNotFound, StoreUnavailable) as refused:
            return self._unpaid(refused)
        return None

    def _unpaid(self, refused: Exception) -> Denial:
        """The answer when the store would not take a credit: none left (402), no such
        account (401), or no answer (503: credits fail closed)."""
        if isinstance(refused, InsufficientCredits):
            return NO_CREDITS
        if isinstance(refused, KeyNotFound):
            return UNKNOWN_KEY
        self._warn("credits", "key store unavailable; keys with credits get 503")
        return self.unavailable

    def with_rate_headers(
        self, denial: Denial, verdict: Verdict, limited: RateDecision | None
    ) -> Denial:
        """A refusal after the limiter counted the request (402) still tells the client where
        it stands: the RateLimit fields go on it too."""
        if limited is None:
            return denial
        extra = rate_headers(limited, verdict.policy_field, self.legacy_rate_headers)
        return dataclasses.replace(denial, headers=(*denial.headers, *extra))

    def refund(self, account: str) -> None:
        """Give back the credit a request spent (``CHARGED`` names the account), when a route
        refuses it after the middleware let it through (a missing scope). A failure to reach
        the store is logged: the credit stays spent."""
        try:
            self._need_sync().spend_credits(account, -1)
        except (StoreUnavailable, KeyNotFound):
            self._warn("credits", "could not give back a credit")

    async def arefund(self, account: str) -> None:
        """The async twin of :meth:`refund` (through the blocking face on a worker thread
        when the store has no async face)."""
        try:
            if self._async_store is None:
                await asyncio.to_thread(self._need_sync().spend_credits, account, -1)
            else:
                await self._async_store.aspend_credits(account, -1)
        except (StoreUnavailable, KeyNotFound):
            self._warn("credits", "could not give back a credit")

    def emit(
        self,
        verdict: Verdict | None,
        denial: Denial | None,
        started: float,
        method: str,
        path: str,
        token: bytes | Denial | None = None,
    ) -> None:
        """Report one decision to ``on_decision`` (the drivers call this only when it is set).

        A refusal that comes after the key was proven (disabled, expired) names the key too:
        it is found again from the presented ``token``'s id in the cache.
        """
        hook = self.on_decision
        if hook is None:
            return
        if (
            verdict is None
            and isinstance(token, bytes)
            and denial is not None
            and denial.code in _PROVEN
        ):
            key_id = self.format.identify(token)
            if isinstance(key_id, bytes):
                cached = self.cache.get(key_id)
                verdict = cached.verdict if isinstance(cached, Entry) else None
        record = None if verdict is None else verdict.record
        event = DecisionEvent(
            denial is None,
            None if denial is None else denial.code,
            None if denial is None else denial.status,
            None if record is None else record.id,
            None if record is None else record.prefix,
            time.perf_counter() - started,
            method,
            path,
        )
        try:
            hook(event)
        except Exception:
            self._warn("on_decision", "the on_decision callback failed")

    def _rate_limited(self, verdict: Verdict, decision: RateDecision) -> Denial:
        return Denial.of(
            "RATE_LIMITED",
            f"Too many requests for this API key: retry in {decision.retry_after} s.",
            {"retry_after": decision.retry_after},
            headers=tuple(rate_headers(decision, verdict.policy_field, self.legacy_rate_headers)),
        )

    def _limiter_down(self) -> Denial | None:
        if self.fail_open:
            with self._failure_lock:
                self.limiter_failures += 1
        self._warn(
            "limiter",
            f"rate limiter unavailable; {'failing open' if self.fail_open else 'answering 503'} "
            f"({self.limiter_failures} let through so far)",
        )
        return None if self.fail_open else self.unavailable

    def _warn(self, topic: str, message: str) -> None:
        """Log an outage at most once per ``retry_after`` seconds per topic, with its cause."""
        now = time.monotonic()
        with self._failure_lock:
            if now - self._logged_at.get(topic, -math.inf) < self._retry_after:
                return
            self._logged_at[topic] = now
        log.warning(message, exc_info=True)

    def invalidate(self, record: KeyRecord) -> None:
        """Forget what this process cached about a key, so its next request asks the store."""
        self.cache.discard(record.id.encode())
        self.cache.discard(record.digest)

    # -- minting and lifecycle -------------------------------------------------------------------

    def new_key(
        self,
        *,
        name: str = "",
        owner: str | None = None,
        scopes: Iterable[str] = (),
        prefix: str | None = None,
        expires_at: datetime | None = None,
        rate_limit: str | Rate | Iterable[str | Rate] | None = None,
        allowed_networks: Iterable[str | Network] = (),
        credits: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> IssuedKey:
        """Mint a key and build its record, without storing it (see :meth:`issue`)."""
        key_id, key = mint(self.prefix if prefix is None else prefix)
        record = KeyRecord(
            id=key_id,
            digest=self.digest(key.reveal().encode()),
            prefix=key.public,
            name=name,
            owner=owner,
            scopes=frozenset(scopes),
            expires_at=expires_at,
            rate_limit=None if rate_limit is None else Rate.parse_many(rate_limit),
            allowed_networks=tuple(allowed_networks),  # type: ignore[arg-type]
            credits=credits,
            metadata=dict(metadata or {}),
        )
        return IssuedKey(key, record)

    def issue(self, **fields: Any) -> IssuedKey:
        """Create a key in the store. The full key is in the result and nowhere else."""
        issued = self.new_key(**fields)
        self._need_sync().create(issued.record)
        return issued

    async def aissue(self, **fields: Any) -> IssuedKey:
        issued = self.new_key(**fields)
        await self._need_async().acreate(issued.record)
        return issued

    def imported_record(self, key: str, *, name: str = "", **fields: Any) -> KeyRecord:
        """The record for a key issued by another system (see ``imported``), not yet stored."""
        raw = key.encode()
        if not any(fmt.matches(raw) for fmt in self.imported):
            raise InvalidKeyFormat("the key matches none of the configured imported formats")
        fmt = next(f for f in self.imported if f.matches(raw))
        key_id = "".join(secrets.choice(ALPHABET) for _ in range(KEY_ID_LENGTH))
        return KeyRecord(
            id=key_id,
            digest=self.digest(raw),
            prefix=key[: len(fmt.prefix) + 4],
            name=name,
            **fields,
        )

    def import_key(self, key: str, *, name: str = "", **fields: Any) -> KeyRecord:
        record = self.imported_record(key, name=name, **fields)
        self._need_sync().create(record)
        return record

    async def aimport_key(self, key: str, *, name: str = "", **fields: Any) -> KeyRecord:
        record = self.imported_record(key, name=name, **fields)
        await self._need_async().acreate(record)
        return record

    # Every lifecycle change goes through update()/aupdate(): the store applies it atomically,
    # this process forgets its cached copy, and the invalidator (if any) tells the others.

    def get(self, key_id: str) -> KeyRecord:
        """The record of a key, revoked or not; :class:`KeyNotFound` when there is none."""
        record = self._need_sync().get(key_id)
        if record is None:
            raise KeyNotFound(f"no key with id {shown_id(key_id)!r}")
        return record

    async def aget(self, key_id: str) -> KeyRecord:
        record = await self._need_async().aget(key_id)
        if record is None:
            raise KeyNotFound(f"no key with id {shown_id(key_id)!r}")
        return record

    def list_keys(
        self, *, owner: str | None = None, after: str | None = None, limit: int = 100
    ) -> Sequence[KeyRecord]:
        """One page of records in id order; pass the last id of a page as ``after`` for the
        next. ``owner`` keeps one owner's keys."""
        return self._need_sync().list_keys(owner=owner, after=after, limit=_page(limit))

    async def alist_keys(
        self, *, owner: str | None = None, after: str | None = None, limit: int = 100
    ) -> Sequence[KeyRecord]:
        return await self._need_async().alist_keys(owner=owner, after=after, limit=_page(limit))

    def update(self, key_id: str, **changes: Any) -> KeyRecord:
        """Change a key: ``name``, ``owner``, ``scopes``, ``expires_at``, ``disabled``,
        ``rate_limit``, ``allowed_networks``, ``credits``, ``metadata`` (see
        :class:`~keysentry.stores.base.KeyChanges`). Bad values raise ``ValueError`` and
        change nothing. ``credits`` of a rotated key's successor set the balance it shares
        (the first key's of the line)."""
        checked = _changes(changes)
        if "credits" in checked:
            account = self.get(key_id).credits_from
            if account is not None:
                self._apply(account, {"credits": checked.pop("credits")})
        return self._apply(key_id, checked) if checked else self.get(key_id)

    async def aupdate(self, key_id: str, **changes: Any) -> KeyRecord:
        checked = _changes(changes)
        if "credits" in checked:
            account = (await self.aget(key_id)).credits_from
            if account is not None:
                await self._aapply(account, {"credits": checked.pop("credits")})
        return await self._aapply(key_id, checked) if checked else await self.aget(key_id)

    def _apply(self, key_id: str, changes: KeyChanges) -> KeyRecord:
        record = self._need_sync().update(key_id, changes)
        self._changed(record)
        return record

    async def _aapply(self, key_id: str, changes: KeyChanges) -> KeyRecord:
        record = await self._need_async().aupdate(key_id, changes)
        await self._achanged(record)
        return record

    def disable(self, key_id: str) -> KeyRecord:
        """Refuse the key (403 ``API_KEY_DISABLED``) until :meth:`enable`."""
        return self.update(key_id, disabled=True)

    async def adisable(self, key_id: str) -> KeyRecord:
        return await self.aupdate(key_id, disabled=True)

    def enable(self, key_id: str) -> KeyRecord:
        return self.update(key_id, disabled=False)

    async def aenable(self, key_id: str) -> KeyRecord:
        return await self.aupdate(key_id, disabled=False)

    def revoke(self, key_id: str) -> KeyRecord:
        """Refuse this key from now on, for good (in every process, with an invalidator).
        Revoking a revoked key changes nothing: ``revoked_at`` keeps the first time."""
        try:
            record = self._need_sync().update(key_id, {"revoked_at": utcnow()}, _UNREVOKED)
        except Conflict:
            return self.get(key_id)
        self._changed(record)
        return record

    async def arevoke(self, key_id: str) -> KeyRecord:
        try:
            record = await self._need_async().aupdate(key_id, {"revoked_at": utcnow()}, _UNREVOKED)
        except Conflict:
            return await self.aget(key_id)
        await self._achanged(record)
        return record

    def set_expiry(self, key_id: str, expires_at: datetime | timedelta | None) -> KeyRecord:
        """Expire the key at a time, after a duration from now, or never (None)."""
        return self.update(key_id, expires_at=_when(expires_at))

    async def aset_expiry(self, key_id: str, expires_at: datetime | timedelta | None) -> KeyRecord:
        return await self.aupdate(key_id, expires_at=_when(expires_at))

    def rotate(self, key_id: str, *, grace: float | timedelta = 0.0) -> IssuedKey:
        """Replace a key by a new one with the same settings, shown once in the result.

        The old key keeps working for ``grace`` (seconds or a timedelta), then is refused as
        expired; with no grace it is revoked at once. Credits are not copied: the successor
        spends the same balance as the old key (``credits_from``), so stale caches, a chain of
        rotations and requests racing the rotation all draw on one account. Nor is the rate
        limit doubled: every key of the line (``line``) is charged to one rate-limit state.

        The successor is created first, then the old key is changed on the condition that it
        is still unrotated and unrevoked (so of two racing rotations one wins, the other's
        successor is revoked and :class:`ValueError` raised). If that change fails without
        saying whether it landed (a timeout), the old key is read again to find out.
        """
        store = self._need_sync()
        issued, changes = self._successor(self.get(key_id), grace)
        store.create(issued.record)
        try:
            old = store.update(key_id, changes, _UNROTATED)
        except Conflict:
            store.update(issued.record.id, {"revoked_at": utcnow()})
            raise ValueError(f"key {shown_id(key_id)} was rotated or revoked meanwhile") from None
        except StoreUnavailable:
            try:
                reread = store.get(key_id)
            except StoreUnavailable:
                reread = None
            landed = _landed(reread, issued)
            if landed is None:
                self._abandon(issued.record.id)
                raise
            old = landed
        self._changed(old)
        return issued

    async def arotate(self, key_id: str, *, grace: float | timedelta = 0.0) -> IssuedKey:
        store = self._need_async()
        issued, changes = self._successor(await self.aget(key_id), grace)
        await store.acreate(issued.record)
        try:
            old = await store.aupdate(key_id, changes, _UNROTATED)
        except Conflict:
            await store.aupdate(issued.record.id, {"revoked_at": utcnow()})
            raise ValueError(f"key {shown_id(key_id)} was rotated or revoked meanwhile") from None
        except StoreUnavailable:
            try:
                reread = await store.aget(key_id)
            except StoreUnavailable:
                reread = None
            landed = _landed(reread, issued)
            if landed is None:
                await self._aabandon(issued.record.id)
                raise
            old = landed
        await self._achanged(old)
        return issued

    def _abandon(self, key_id: str) -> None:
        """Revoke a successor whose rotation did not happen; log if even that fails."""
        try:
            self._need_sync().update(key_id, {"revoked_at": utcnow()})
        except StoreUnavailable:
            log.error("rotation failed; its new key %s could not be revoked: revoke it", key_id)

    async def _aabandon(self, key_id: str) -> None:
        try:
            await self._need_async().aupdate(key_id, {"revoked_at": utcnow()})
        except StoreUnavailable:
            log.error("rotation failed; its new key %s could not be revoked: revoke it", key_id)

    def _successor(self, old: KeyRecord, grace: float | timedelta) -> tuple[IssuedKey, KeyChanges]:
        if old.revoked_at is not None:
            raise ValueError(f"key {old.id} is revoked: issue a new key instead")
        if old.rotated_to is not None:
            raise ValueError(f"key {old.id} was already rotated, to {old.rotated_to}")
        now = utcnow()
        if old.expires_at is not None and old.expires_at <= now:
            raise ValueError(f"key {old.id} has expired: issue a new key instead")
        seconds = grace.total_seconds() if isinstance(grace, timedelta) else float(grace)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError("the grace period must be zero or more seconds")
        native = old.prefix.endswith("_" + old.id)
        issued = self.new_key(
            name=old.name,
            owner=old.owner,
            scopes=old.scopes,
            prefix=old.prefix[: -len(old.id) - 1] if native else None,
            expires_at=old.expires_at,
            rate_limit=old.rate_limit,
            allowed_networks=old.allowed_networks,
            metadata=old.metadata,
        )
        metered = old.credits is not None or old.credits_from is not None
        record = dataclasses.replace(
            issued.record,
            disabled=old.disabled,  # a disabled key's successor is disabled too
            credits_from=(old.credits_from or old.id) if metered else None,
            line=old.line_id,  # one rate-limit state for the whole line
        )
        changes: KeyChanges = {"rotated_to": record.id}
        if seconds == 0:
            changes["revoked_at"] = now
        else:
            until = now + timedelta(seconds=seconds)
            if old.expires_at is None or until < old.expires_at:
                changes["expires_at"] = until
        return IssuedKey(issued.key, record), changes

    def credits_of(self, record: KeyRecord) -> int | None:
        """The balance a key spends: its own, or the first key's of its rotation line; None
        when unmetered."""
        if record.credits_from is None:
            return record.credits
        return self.get(record.credits_from).credits

    async def acredits_of(self, record: KeyRecord) -> int | None:
        if record.credits_from is None:
            return record.credits
        return (await self.aget(record.credits_from)).credits

    def _changed(self, record: KeyRecord) -> None:
        self.invalidate(record)
        if self.invalidator is not None:
            try:
                self.invalidator.publish(record.id, record.digest)
            except StoreUnavailable:
                self._warn("invalidator", "could not announce a change; others see it by TTL")

    async def _achanged(self, record: KeyRecord) -> None:
        self.invalidate(record)
        if self.invalidator is not None:
            try:
                await self.invalidator.apublish(record.id, record.digest)
            except StoreUnavailable:
                self._warn("invalidator", "could not announce a change; others see it by TTL")

    def close(self) -> None:
        """Write pending usage and stop its flusher. The store stays open (it is yours)."""
        if self.usage is not None:
            self.usage.close()

    async def aclose(self) -> None:
        if self.usage is not None:
            await self.usage.aclose()

    def require_sync(self) -> None:
        """Raise now, not on the first cache miss, if the store has no blocking face."""
        self._need_sync()

    def require_async(self) -> None:
        """Raise now, not on the first cache miss, if the store has no async face."""
        self._need_async()

    def _need_sync(self) -> KeyStore:
        if self._sync_store is None:
            raise TypeError(f"{type(self.store).__name__} has no blocking face: use the a* methods")
        return self._sync_store

    def _need_async(self) -> AsyncKeyStore:
        if self._async_store is None:
            raise TypeError(f"{type(self.store).__name__} has no async face: use the sync methods")
        return self._async_store


def hash_key_is_random() -> bool:
    """Whether CPython drew its hash key from os.urandom at start-up, so that ``hash()`` of
    bytes is a PRF under a secret key: hash randomization on and ``PYTHONHASHSEED`` unset or
    ``random`` (or the environment ignored, ``-E``/``-I``). A numeric seed fixes the key to a
    value anyone can derive, although ``sys.flags.hash_randomization`` still reads 1."""
    if not sys.flags.hash_randomization:
        return False
    if sys.flags.ignore_environment:
        return True
    return os.environ.get("PYTHONHASHSEED", "random") in ("", "random")


def _missing(store: object) -> str:
    """Which methods of the store protocols ``store`` lacks, for the error that refuses it."""
    names = ("get", "find_by_digest", "create", "update", "list_keys", "spend_credits",
             "record_usage", "close")  # fmt: skip
    sync = [n for n in names if not callable(getattr(store, n, None))]
    asynchronous = [n for n in names if not callable(getattr(store, "a" + n, None))]
    return (
        f"it lacks {', '.join(sync)} (blocking face) and "
        f"{', '.join('a' + n for n in asynchronous)} (async face)"
    )


#: The condition a rotation changes the old key on: nobody rotated or revoked it meanwhile.
_UNROTATED: Mapping[str, object] = {"rotated_to": None, "revoked_at": None}
_UNREVOKED: Mapping[str, object] = {"revoked_at": None}

#: Refusals that only a holder of the key can get: the event may name the key.
_PROVEN = frozenset({"API_KEY_DISABLED", "EXPIRED_API_KEY"})


def _landed(old: KeyRecord | None, issued: IssuedKey) -> KeyRecord | None:
    """After a rotation step failed without an answer: the old key's record, read again, if
    the rotation landed after all (it names the new key), else None."""
    return old if old is not None and old.rotated_to == issued.record.id else None


def _page(limit: int) -> int:
    if not 1 <= limit <= 1000:
        raise ValueError("a page holds 1 to 1000 keys")
    return limit


_FIXED = frozenset({"rotated_to", "credits_from", "last_used_at", "revoked_at"})


def _changes(changes: Mapping[str, Any]) -> KeyChanges:
    """What a caller may change through :meth:`Keysentry.update`; revocation and rotation
    have methods of their own, usage is recorded by the flusher."""
    fixed = _FIXED & changes.keys()
    if fixed:
        raise ValueError(f"use revoke()/rotate() rather than setting {', '.join(sorted(fixed))}")
    return changes  # type: ignore[return-value]


def _when(value: datetime | timedelta | None) -> datetime | None:
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise ValueError("an expiry duration must be positive")
        return utcnow() + value
    return value

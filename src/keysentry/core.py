"""The guard: the one object users configure and call, and the drivers share.

:class:`Keysentry` puts together a store, its :class:`~keysentry.settings.Settings` (every
keyword below, validated once into one frozen value), the cache, the limiter, the invalidator
and the usage recorder. The request path is :class:`~keysentry.pipeline.Pipeline`, which both
drivers call; the key lifecycle (issue, rotate, revoke, ...) is
:class:`~keysentry.lifecycle.KeyLifecycle`, which Keysentry inherits, as it inherits the usage
history reads (:class:`~keysentry.usage_reads.UsageReads`). What is left here is the
wiring, in-process authentication for code that holds a key, and the refund of a credit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping

from .attempts import FailedAttempts
from .cache import TTLCache
from .decision import Charge, Entry, Lookup, Verdict
from .errors import Denial, KeyNotFound, StoreUnavailable
from .events import DecisionEvent
from .history import DEFAULT_RETENTION_DAYS
from .keys import DEFAULT_MAX_LENGTH, DEFAULT_PREFIX, Digester, ImportedFormat
from .lifecycle import Invalidator, IssuedKey, KeyLifecycle
from .pipeline import Outages, Pipeline
from .ratelimit.base import Limiter
from .records import Network, Rate
from .responses import ErrorBody, Rendered
from .settings import DEFAULT_FAILURE_LIMIT, DEFAULT_SCOPE_IMPLICATIONS, Settings
from .stores.base import AsyncKeyStore, KeyStore
from .usage import UsageRecorder
from .usage_reads import UsageReads

__all__ = ["CHARGED", "Charge", "IssuedKey", "Keysentry"]

#: Where the drivers note, for a key with credits, what the request was charged (a
#: :class:`~keysentry.decision.Charge`, in ASGI ``scope["state"]``, the WSGI environ), so a
#: route that then refuses it can give it back.
CHARGED = "keysentry.charged"


class Keysentry(KeyLifecycle, UsageReads):
    """API-key authentication for one store. Share one instance per process.

    :param store: a :class:`KeyStore` (for WSGI and the CLI), an :class:`AsyncKeyStore`
        (for ASGI), or a store offering both faces.
    :param limiter: rate-limit backend (:class:`MemoryLimiter`, :class:`RedisLimiter`); None
        turns rate limiting off.
    :param invalidator: a :class:`~keysentry.invalidation.RedisInvalidator`, for any store:
        this process listens for changes announced by others and drops them from its cache,
        and announces every change it makes through the lifecycle methods (:meth:`update`,
        :meth:`revoke`, :meth:`rotate`, ...), so they take effect everywhere at once rather
        than within ``cache_ttl``.
    :param on_decision: called with a :class:`~keysentry.events.DecisionEvent` for every
        guarded request (see ``keysentry.events``; :class:`~keysentry.events.LogDecisions`
        logs them); may be set later, and takes effect at once on both drivers.

    Every other keyword is a setting, documented on :class:`~keysentry.settings.Settings`.
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
        costs: Mapping[str, int] | None = None,
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
        usage_retention_days: int = DEFAULT_RETENTION_DAYS,
        usage_routes: bool = False,
        on_decision: Callable[[DecisionEvent], None] | None = None,
        trusted_proxies: str | Iterable[str | Network] = (),
        forwarded_header: str = "X-Forwarded-For",
        failure_limit: str | Rate | None = DEFAULT_FAILURE_LIMIT,
        scope_implications: Mapping[str, str | Iterable[str]] | None = (DEFAULT_SCOPE_IMPLICATIONS),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sync_store = store if isinstance(store, KeyStore) else None
        self._async_store = store if isinstance(store, AsyncKeyStore) else None
        if self._sync_store is None and self._async_store is None:
            raise TypeError(
                f"{type(store).__name__} is neither a KeyStore nor an AsyncKeyStore: "
                f"{_missing(store)}"
            )
        if rate_limit is not None and limiter is None:
            raise ValueError("rate_limit needs a limiter (MemoryLimiter() or RedisLimiter(url))")
        self.settings = Settings(
            secret=secret,
            prefix=prefix,
            prefixes=prefixes,
            imported=imported,
            header=header,
            api_key_header=api_key_header,
            query_param=query_param,
            exempt=exempt,
            costs=costs,
            allow_preflight=allow_preflight,
            strip_credentials=strip_credentials,
            realm=realm,
            cache_size=cache_size,
            cache_ttl=cache_ttl,
            negative_ttl=negative_ttl,
            max_key_length=max_key_length,
            error_body=error_body,
            retry_after=retry_after,
            stale_for=stale_for,
            rate_limit=rate_limit,
            fail_open=fail_open,
            legacy_rate_headers=legacy_rate_headers,
            usage_interval=usage_interval,
            usage_retention_days=usage_retention_days,
            usage_routes=usage_routes,
            trusted_proxies=trusted_proxies,
            forwarded_header=forwarded_header,
            failure_limit=failure_limit,
            scope_implications=scope_implications,
            clock=clock,
        )
        self.store = store
        cache: TTLCache[Entry] = TTLCache(cache_size, cache_ttl, negative_ttl)
        self.limiter = limiter
        self.invalidator = invalidator
        #: Batches usage for the store; None when ``usage_interval`` is None.
        self.usage_recorder = (
            None
            if usage_interval is None
            else UsageRecorder(
                store, usage_interval, retention_days=usage_retention_days, clock=clock
            )
        )
        self._outages = Outages(retry_after)
        self._pipeline = Pipeline(
            self.settings, store, cache, limiter, self.usage_recorder, on_decision, self._outages
        )
        if invalidator is not None:
            invalidator.start(cache=self.cache)

    def __repr__(self) -> str:
        return (
            f"Keysentry(store={self.store!r}, digest={self.settings.digest!r}, "
            f"cache={self.cache!r})"
        )

    @property
    def cache(self) -> TTLCache[Entry]:
        """Records (and unknown ids) this process remembers; replaceable (tests do)."""
        return self._pipeline.cache

    @cache.setter
    def cache(self, cache: TTLCache[Entry]) -> None:
        self._pipeline.cache = cache

    @property
    def on_decision(self) -> Callable[[DecisionEvent], None] | None:
        """The callback for each guarded request's :class:`DecisionEvent`, or None."""
        return self._pipeline.on_decision

    @on_decision.setter
    def on_decision(self, hook: Callable[[DecisionEvent], None] | None) -> None:
        self._pipeline.on_decision = hook

    @property
    def digest(self) -> Digester:
        """The digest keys are stored under (HMAC-SHA256 with ``secret``, else SHA-256)."""
        return self.settings.digest

    @property
    def attempts(self) -> FailedAttempts | None:
        """Failed-attempt throttling; None when ``failure_limit`` is None."""
        return self._pipeline.attempts

    @property
    def limiter_failures(self) -> int:
        """Requests let through because the limiter could not answer (``fail_open``)."""
        return self._pipeline.limiter_failures

    @property
    def failures(self) -> dict[str, int]:
        """Outages so far, by kind (a copy): ``store`` (key lookups the store could not
        answer: served from a stale cache entry, or refused with 503), ``limiter`` (calls
        the rate limiter could not answer, failing open or closed), ``credits`` (credit
        spends and refunds the store could not answer), ``invalidator`` (changes that could
        not be announced), ``on_decision`` (the callback raised). A kind appears once it
        has happened."""
        return dict(self._outages.counts)

    def render(self, denial: Denial) -> Rendered:
        """A refusal as both drivers answer it (status, headers, JSON body)."""
        return self.settings.render(denial)

    # -- in-process authentication ---------------------------------------------------------------

    def authenticate(self, token: bytes) -> Verdict | Denial:
        """Decide on a presented key (the bytes after ``Bearer``), waiting on the blocking
        store on a cache miss: what the middleware decides, without a request around it (no
        client address, so no allowlist, rate limit, credits or failure count)."""
        pipeline = self._pipeline
        result = pipeline.check(token)
        if type(result) is Lookup:
            return pipeline._looked_up(result, pipeline._fetch(result))
        return result  # type: ignore[return-value]

    async def aauthenticate(self, token: bytes) -> Verdict | Denial:
        """The async twin of :meth:`authenticate`."""
        pipeline = self._pipeline
        result = pipeline.check(token)
        if type(result) is Lookup:
            return pipeline._looked_up(result, await pipeline._afetch(result))
        return result  # type: ignore[return-value]

    # -- after the middleware ----------------------------------------------------------------------

    def refund(self, charge: Charge | str) -> None:
        """Give back what a request was charged (``CHARGED`` holds the :class:`Charge`; a key
        id gives back one credit of that key), when a route refuses it after the middleware
        let it through (a missing scope). A failure to reach the store is logged: the credits
        stay spent."""
        charge = _charge(charge)
        try:
            if charge.shared:
                self._need_accounts().spend_account_credits(charge.account, -charge.amount)
            else:
                self._need_sync().spend_credits(charge.account, -charge.amount)
        except (StoreUnavailable, KeyNotFound):
            self._outages.warn("credits", "could not give back a credit")

    async def arefund(self, charge: Charge | str) -> None:
        """The async twin of :meth:`refund` (through the blocking face on a worker thread
        when the store has no async face)."""
        charge = _charge(charge)
        try:
            if self._async_store is None:
                await asyncio.to_thread(self.refund, charge)
            elif charge.shared:
                accounts = self._aneed_accounts()
                await accounts.aspend_account_credits(charge.account, -charge.amount)
            else:
                await self._async_store.aspend_credits(charge.account, -charge.amount)
        except (StoreUnavailable, KeyNotFound):
            self._outages.warn("credits", "could not give back a credit")

    def close(self) -> None:
        """Write pending usage and stop its flusher. The store stays open (it is yours)."""
        if self.usage_recorder is not None:
            self.usage_recorder.close()

    async def aclose(self) -> None:
        if self.usage_recorder is not None:
            await self.usage_recorder.aclose()


def _charge(charge: Charge | str) -> Charge:
    if isinstance(charge, Charge):
        return charge
    if isinstance(charge, str):
        return Charge(charge)
    raise TypeError(f"a refund takes the Charge the middleware left, not {type(charge).__name__}")


def _missing(store: object) -> str:
    """Which methods of the store protocols ``store`` lacks, for the error that refuses it."""
    names = ("get", "find_by_digest", "create", "update", "delete", "list_keys",
             "spend_credits", "record_usage", "close")  # fmt: skip
    sync = [n for n in names if not callable(getattr(store, n, None))]
    asynchronous = [n for n in names if not callable(getattr(store, "a" + n, None))]
    return (
        f"it lacks {', '.join(sync)} (blocking face) and "
        f"{', '.join('a' + n for n in asynchronous)} (async face)"
    )

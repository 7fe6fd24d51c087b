"""The request step: every decision on a guarded request, in one place, with no I/O in it.

A driver (``asgi.py``, ``wsgi.py``) hands :meth:`Pipeline.decide` the credential header values
it read, itself and its raw request (the ASGI scope, the WSGI environ). The pipeline asks the
driver for other plain values only when it needs them (every credential when one was repeated,
the path of an exempt check, the peer address, the forwarding header, the method and path of
an event) and answers with one of:

* :data:`PASS`: the request needs no key (an exempt path, an allowed CORS preflight);
* a :class:`~keysentry.errors.Denial`: the refusal to render;
* a :class:`~keysentry.decision.Verdict` or an :class:`Admitted`: the key's identity for the
  app, and for a rate-limited key the RateLimit fields to add to the response;
* a :class:`Pending`: a wait. The driver runs it (``pending.run()`` blocking,
  ``await pending.arun()`` async) and hands the answer to :meth:`Pipeline.resume`, which goes
  on from where the pipeline stopped. There are three waits, each written once here with a
  blocking and an async twin: the store lookup on a cache miss, a remote limiter, a credit
  spend (and a remote limiter counting a failed attempt).

The order, for everything the drivers do not translate:

    exempt -> preflight -> credential -> cache (check) -> [store lookup] -> refusal counted
    as a failed attempt | client address (allowlist) -> rate limit -> credits -> usage note
    -> event

On a warm cache with an in-process limiter nothing waits and nothing is allocated beyond the
RateLimit fields themselves. A key this process has verified is recognised by its tag (a keyed
hash, see :meth:`Pipeline.tag`) before it is parsed again: one hash, a hit in the index of
verified tags, the cache entry, one constant-time comparison of the tag. Every other value is
parsed, format- and checksum-checked before it reaches the cache, so garbage costs one hash, a
miss in that index and the format check; a typo of a verified key is garbage too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .accounts import AccountRecord
from .attempts import FailedAttempts
from .cache import TTLCache
from .credentials import MISSING
from .decision import UNKNOWN_KEY, Charge, Entry, Lookup, Verdict, client_allowed, standing
from .errors import Denial, InsufficientCredits, KeyNotFound, StoreUnavailable
from .events import DecisionEvent
from .flights import Flights
from .mismatches import DigestMismatches
from .ratelimit.base import Limiter
from .ratelimit.gcra import Policy, RateDecision
from .ratelimit.headers import rate_headers
from .records import KeyRecord
from .responses import Rendered
from .settings import Settings
from .stores.base import AccountStore, AsyncAccountStore, AsyncKeyStore, KeyStore

if TYPE_CHECKING:
    from .usage import UsageRecorder

__all__ = ["PASS", "Admitted", "Driver", "Outages", "Pending", "Pipeline"]

log = logging.getLogger("keysentry")

R = TypeVar("R", contravariant=True)


class Driver(Protocol[R]):
    """What the pipeline asks of a driver about one raw request ``R``, when it needs it."""

    def credentials(self, raw: R) -> tuple[list[bytes], list[bytes], list[bytes]]:
        """Every value of the Bearer header, of the API-key header, of the query parameter."""

    def preflight(self, raw: R) -> bool:
        """Whether this is a CORS preflight (``OPTIONS`` + ``Origin`` +
        ``Access-Control-Request-Method``)."""

    def route_path(self, raw: R) -> str:
        """The path as the app routes it, for exempt paths (ASGI: below ``root_path``)."""

    def path(self, raw: R) -> str:
        """The request's whole path, for events."""

    def method(self, raw: R) -> str: ...

    def peer(self, raw: R) -> str | None:
        """The direct peer's address."""

    def forwarded(self, raw: R, header: bytes) -> list[bytes]:
        """The values of the trusted proxies' forwarding header (lowercase ASGI name)."""


class _Pass:
    __slots__ = ()

    def __repr__(self) -> str:
        return "PASS"


#: The request needs no key: hand it to the app as it is.
PASS = _Pass()

#: Refusals that only a holder of the key can get: the event may name the key.
_PROVEN = frozenset({"API_KEY_DISABLED", "EXPIRED_API_KEY", "ACCOUNT_DISABLED"})
#: Codes of the refusals made before the cache is read (no credential, two of them, a
#: malformed one), but for UNKNOWN_KEY, which the cache (or the store) decided.
_BEFORE_CACHE = frozenset({"MISSING_API_KEY", "INVALID_REQUEST", "INVALID_API_KEY"})


class _Missed(float):
    """A request's start time (``perf_counter``) that also says its key missed the cache
    (it waited on a store lookup, or was refused before one), for the event's ``cached``.

    It goes wherever ``started`` goes, so the warm path carries nothing more; it is made
    only on a cache miss, and only while an ``on_decision`` callback is set."""

    __slots__ = ()


class Admitted(tuple[Verdict, RateDecision]):
    """A key let through, and the rate decision whose RateLimit fields go on the response:
    ``verdict, decision = admitted``. A tuple, so that making one runs no Python code; the
    drivers build the fields (bytes for ASGI, str for WSGI) with :mod:`.ratelimit.headers`."""

    __slots__ = ()


_tuple_new = tuple.__new__


# What a Pending waits for.
_LOOKUP, _FAILED, _LIMIT, _SPEND = range(4)


class Pending:
    """A wait the driver runs, then hands back to :meth:`Pipeline.resume`."""

    __slots__ = (
        "client",
        "cost",
        "driver",
        "limited",
        "lookup",
        "pipeline",
        "raw",
        "started",
        "step",
        "token",
        "verdict",
    )

    def __init__(
        self, pipeline: Pipeline, step: int, driver: Driver[Any], raw: Any, started: float
    ) -> None:
        self.pipeline = pipeline
        self.step = step
        self.driver = driver
        self.raw = raw
        self.started = started
        self.token: bytes | None = None
        self.lookup: Lookup | None = None
        self.verdict: Verdict | None = None
        self.limited: RateDecision | None = None
        self.client: str | None = None
        self.cost = 1

    def __repr__(self) -> str:
        return f"Pending({('lookup', 'failed attempt', 'rate limit', 'credits')[self.step]})"

    def run(self) -> Any:
        """Wait, blocking, for what this step needs (WSGI)."""
        p = self.pipeline
        step = self.step
        if step == _LOOKUP:
            assert self.lookup is not None
            return p._fetch(self.lookup)
        if step == _FAILED:
            return p._failed(self.client)
        assert self.verdict is not None
        if step == _LIMIT:
            return p._hit(self.verdict, self.cost)
        return p._spend(self.verdict, self.cost)

    async def arun(self) -> Any:
        """The async twin of :meth:`run` (ASGI)."""
        p = self.pipeline
        step = self.step
        if step == _LOOKUP:
            assert self.lookup is not None
            return await p._afetch(self.lookup)
        if step == _FAILED:
            return await p._afailed(self.client)
        assert self.verdict is not None
        if step == _LIMIT:
            return await p._ahit(self.verdict, self.cost)
        return await p._aspend(self.verdict, self.cost)


Outcome = Verdict | Admitted | Denial | Pending | _Pass


class Outages:
    """Counts each kind of outage, and logs it at most once per ``interval`` seconds, with its
    cause. Kinds (topics): ``store`` (a key lookup), ``limiter``, ``credits`` (a spend or a
    refund), ``invalidator`` (an announcement), ``on_decision`` (the callback raised)."""

    __slots__ = ("_interval", "_lock", "_logged_at", "counts")

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._lock = threading.Lock()
        self._logged_at: dict[str, float] = {}
        #: Outages so far, by topic (each call of :meth:`warn` is one).
        self.counts: dict[str, int] = {}

    def warn(self, topic: str, message: str, cause: BaseException | None = None) -> None:
        """Count one outage of ``topic``; log ``message`` with ``cause`` (or the exception
        being handled), unless this topic was logged less than ``interval`` seconds ago."""
        now = time.monotonic()
        with self._lock:
            self.counts[topic] = self.counts.get(topic, 0) + 1
            if now - self._logged_at.get(topic, -math.inf) < self._interval:
                return
            self._logged_at[topic] = now
        log.warning(message, exc_info=cause if cause is not None else sys.exc_info()[1])


class Pipeline:
    """The request path of one guard. Built by :class:`~keysentry.Keysentry`; its drivers
    call :meth:`decide` and :meth:`resume`."""

    def __init__(
        self,
        settings: Settings,
        store: KeyStore | AsyncKeyStore,
        cache: TTLCache[Entry],
        limiter: Limiter | None,
        usage: UsageRecorder | None,
        on_decision: Callable[[DecisionEvent], None] | None,
        outages: Outages,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.limiter = limiter
        self.usage = usage
        #: Read on every request, by both drivers: setting it takes effect at once.
        self.on_decision = on_decision
        self.outages = outages
        self.sync_store = store if isinstance(store, KeyStore) else None
        self.async_store = store if isinstance(store, AsyncKeyStore) else None
        # A key with an owner is read with its account, when the store keeps accounts.
        self._accounts = store if isinstance(store, AccountStore) else None
        self._aaccounts = store if isinstance(store, AsyncAccountStore) else None
        #: What a request costs, by path (``costs``) and by the routes the framework helpers
        #: declared (``route_costs``: each answers a cost, or None when it does not know).
        self._cost_paths = settings.cost_paths
        self.route_costs: list[Callable[[Any], int | None]] = []
        self.attempts = (
            FailedAttempts(settings.failure_policies, limiter)
            if settings.failure_policies
            else None
        )
        #: Requests let through because the limiter could not answer (fail_open).
        self.limiter_failures = 0
        self._count_lock = threading.Lock()
        # Settings read per request, as attributes of this object.
        self._format = settings.format
        self._reader = settings.reader
        self._bearer = settings.reader.bearer
        self._exempt = settings.exempt_paths
        self._query = settings.reader.query_param is not None
        self._preflight = settings.allow_preflight
        self._proxies = settings.proxies
        self._digest = settings.digest
        self._clock = settings.clock
        self._defaults = settings.default_policies
        self._legacy = settings.legacy_rate_headers
        self._stale_for = settings.stale_for
        # An in-process limiter is called in line: no wait, no coroutine.
        self._local_limiter = limiter if getattr(limiter, "local", False) else None
        self._remote_limiter = None if self._local_limiter is not None else limiter
        #: ``hit_in_memory(key, policies)`` of a remote limiter that can answer some hits
        #: without I/O (``LeasedLimiter``): the decision, or None to wait on the limiter.
        self._in_memory: Callable[[str, tuple[Policy, ...], int], RateDecision | None] | None = (
            getattr(self._remote_limiter, "hit_in_memory", None)
        )
        # Keys a process has verified once are recognised on cache hits by a process-local
        # MAC (never stored, never shared) instead of a second HMAC; see tag().
        self._tagger = hashlib.blake2s(key=os.urandom(32), digest_size=16)
        self._siphash = hash_key_is_random()
        # The tag of an entry no key has matched yet: random, so that no key matches it, and
        # of a real tag's length, so that comparing takes as long.
        self._no_tag = os.urandom(8 if self._siphash else 16)
        self._flights = Flights()
        # Tag -> cache key of the keys verified here: the warm path finds a key's entry from
        # its bytes without parsing them again (see _recognise). Off with a query parameter
        # (a key could arrive in several places at once).
        self._tags: dict[int, bytes] = {}
        self._tags_lock = threading.Lock()
        self._tags_max = max(1, settings.cache_size)
        self._indexed = settings.reader.query_param is None
        # Known ids presented with a key that does not match: a warning, off the warm path.
        self._mismatches = DigestMismatches(settings.digest.mode)

    def __repr__(self) -> str:
        return f"Pipeline(cache={self.cache!r}, limiter={self.limiter!r})"

    def render(self, denial: Denial) -> Rendered:
        return self.settings.render(denial)

    # -- the steps -----------------------------------------------------------------------------

    def decide(
        self,
        driver: Driver[Any],
        raw: Any,
        auth: bytes | None,
        key: bytes | None,
        repeated: bool,
    ) -> Outcome:
        """Decide on a request from what the cache and this process know; a :class:`Pending`
        when the answer needs a wait.

        ``auth`` and ``key`` are the values of the Bearer and API-key headers (None when not
        sent); ``repeated``, whether either was sent more than once with different values
        (then :meth:`Driver.credentials` tells them all).
        """
        exempt = self._exempt
        if exempt is not None and exempt.match(driver.route_path(raw)):
            return PASS
        started = perf_counter() if self.on_decision is not None else 0.0
        if not repeated and self._indexed:
            # A key this process has verified is found by its tag, before any parsing.
            if key is None:
                presented = auth[7:] if auth and auth.startswith(b"Bearer ") else None
            else:
                presented = key if auth is None else None
            warm = None if presented is None else self._recognise(presented)
            if warm is not None:
                if type(warm) is Verdict:
                    if warm.admit:
                        return self._admit(warm, driver, raw, started)
                    return self._admitted(warm, None, driver, raw, started)
                # Disabled or expired: the event names the key, as on the full path.
                return self._refused(warm, None, driver, raw, started, presented)  # type: ignore[arg-type]
        if repeated or self._query:
            token = self._reader.read_all(*driver.credentials(raw))
        elif key is None:
            if auth is not None:
                token = self._bearer(auth)  # the common case, one call shorter
            elif self._preflight and driver.preflight(raw):
                return PASS
            else:
                token = MISSING
        else:
            token = self._reader.read(auth, key)
        if type(token) is not bytes:
            return self._refused(token, None, driver, raw, started)  # type: ignore[arg-type]
        result = self.check(token)
        if type(result) is Verdict:  # the common case: cached, verified, in good standing
            if result.admit:
                return self._admit(result, driver, raw, started)
            return self._admitted(result, None, driver, raw, started)
        if type(result) is Lookup:
            if started:
                started = _Missed(started)
            attempts = self.attempts
            client = None
            if attempts is not None:
                client = self._client(driver, raw)
                blocked = attempts.blocked(client)
                if blocked is not None:
                    return self._refused(blocked, None, driver, raw, started, token)
            pending = Pending(self, _LOOKUP, driver, raw, started)
            pending.lookup = result
            pending.token = token
            pending.client = client
            return pending
        return self._authenticated(result, driver, raw, started, token, None)  # type: ignore[arg-type]

    def resume(self, pending: Pending, answer: Any) -> Outcome:
        """Go on after ``pending`` with what its wait answered."""
        step = pending.step
        driver, raw, started = pending.driver, pending.raw, pending.started
        if step == _LOOKUP:
            assert pending.lookup is not None
            result = self._looked_up(pending.lookup, answer)
            return self._authenticated(result, driver, raw, started, pending.token, pending.client)
        if step == _FAILED:
            return self._refused(answer, None, driver, raw, started, pending.token)
        verdict = pending.verdict
        assert verdict is not None
        if step == _LIMIT:
            if isinstance(answer, Denial):
                return self._refused(answer, verdict, driver, raw, started)
            if verdict.charged:
                return self._spend_credit(verdict, answer, driver, raw, started, pending.cost)
            return self._admitted(_charged(verdict, pending.cost), answer, driver, raw, started)
        if answer is not None:  # a refused spend
            return self._refused(self._with_rate(answer, pending.limited, verdict), verdict,
                                 driver, raw, started)  # fmt: skip
        return self._admitted(
            _charged(verdict, pending.cost), pending.limited, driver, raw, started
        )

    def _authenticated(
        self,
        result: Verdict | Denial,
        driver: Driver[Any],
        raw: Any,
        started: float,
        token: bytes | None,
        client: str | None,
    ) -> Outcome:
        if type(result) is Verdict:
            if result.admit:
                return self._admit(result, driver, raw, started)
            return self._admitted(result, None, driver, raw, started)
        denial: Denial = result  # type: ignore[assignment]
        attempts = self.attempts
        if denial is UNKNOWN_KEY and attempts is not None:
            if client is None:
                client = self._client(driver, raw)
            if attempts.local:
                denial = attempts.failed(client, denial)
            else:
                pending = Pending(self, _FAILED, driver, raw, started)
                pending.client = client
                pending.token = token
                return pending
        return self._refused(denial, None, driver, raw, started, token)

    def _admit(self, verdict: Verdict, driver: Driver[Any], raw: Any, started: float) -> Outcome:
        """The checks for keys that have more than a digest (``verdict.admit``): client address,
        rate limit, credits, in that order (a refusal by one spends nothing of the next)."""
        if verdict.restricted:
            refused = client_allowed(verdict, self._client(driver, raw))
            if refused is not None:
                return self._refused(refused, verdict, driver, raw, started)
        cost = 1
        if self._cost_paths is not None or self.route_costs:
            cost = self._cost(driver, raw)
        limited: RateDecision | None = None
        policies = verdict.policies
        if policies or verdict.account_policies:
            local = self._local_limiter
            if local is not None:
                if verdict.account_policies:
                    shared = self._local_hit(local, verdict, cost)
                    if type(shared) is Denial:
                        return self._refused(shared, verdict, driver, raw, started)
                    limited = shared  # type: ignore[assignment]
                else:  # the common case, in line
                    limited = local.hit(verdict.rate_key, policies, cost)
                    if not limited.allowed:
                        denial = self._rate_limited(verdict, limited)
                        return self._refused(denial, verdict, driver, raw, started)
            elif self._remote_limiter is not None:
                # A remote limiter may answer from memory (a leased slice, a cached refusal).
                in_memory = self._in_memory
                if in_memory is not None and not verdict.account_policies:
                    limited = in_memory(verdict.rate_key, policies, cost)
                if limited is None:
                    pending = Pending(self, _LIMIT, driver, raw, started)
                    pending.verdict = verdict
                    pending.cost = cost
                    return pending
                if not limited.allowed:
                    denial = self._rate_limited(verdict, limited)
                    return self._refused(denial, verdict, driver, raw, started)
        if verdict.charged:
            return self._spend_credit(verdict, limited, driver, raw, started, cost)
        return self._admitted(verdict, limited, driver, raw, started)

    def _local_hit(self, local: Limiter, verdict: Verdict, cost: int) -> RateDecision | Denial:
        """The key's limits, then its account's (when it has any), in this process."""
        limited = None
        if verdict.policies:
            limited = local.hit(verdict.rate_key, verdict.policies, cost)
            if not limited.allowed:
                return self._rate_limited(verdict, limited)
        if verdict.account_policies:
            shared = local.hit(verdict.account_rate_key, verdict.account_policies, cost)
            return self._shared(verdict, limited, shared)
        assert limited is not None
        return limited

    def _shared(
        self, verdict: Verdict, limited: RateDecision | None, shared: RateDecision
    ) -> RateDecision | Denial:
        """After the account's limits answered ``shared``: its refusal, or the decision whose
        fields go on the response (the key's own, when it has limits)."""
        if not shared.allowed:
            return self._rate_limited(verdict, shared, verdict.account_policy_field, True)
        return shared if limited is None else limited

    def _cost(self, driver: Driver[Any], raw: Any) -> int:
        """What this request costs: a framework helper's route cost, else its path's."""
        for route_cost in self.route_costs:
            found = route_cost(raw)
            if found is not None:
                return found
        paths = self._cost_paths
        return 1 if paths is None else paths.cost(driver.route_path(raw))

    def _spend_credit(
        self,
        verdict: Verdict,
        limited: RateDecision | None,
        driver: Driver[Any],
        raw: Any,
        started: float,
        cost: int = 1,
    ) -> Pending:
        pending = Pending(self, _SPEND, driver, raw, started)
        pending.verdict = verdict
        pending.limited = limited
        pending.cost = cost
        return pending

    def _admitted(
        self,
        verdict: Verdict,
        limited: RateDecision | None,
        driver: Driver[Any],
        raw: Any,
        started: float,
    ) -> Verdict | Admitted:
        usage = self.usage
        if usage is not None:
            usage.note(verdict.record.id)
        if self.on_decision is not None:
            self._emit(verdict, None, driver, raw, started)
        if limited is None:
            return verdict
        return _tuple_new(Admitted, (verdict, limited))

    def _refused(
        self,
        denial: Denial,
        verdict: Verdict | None,
        driver: Driver[Any],
        raw: Any,
        started: float,
        token: bytes | None = None,
    ) -> Denial:
        if self.on_decision is not None:
            if verdict is None and token is not None and denial.code in _PROVEN:
                verdict = self._cached_verdict(token)
            self._emit(verdict, denial, driver, raw, started)
        return denial

    def _client(self, driver: Driver[Any], raw: Any) -> str | None:
        """The client address: the peer, or behind trusted proxies the address their
        forwarding header names."""
        address = driver.peer(raw)
        proxies = self._proxies
        if proxies is None:
            return address
        return proxies.client(address, driver.forwarded(raw, proxies.header_name))

    # -- the cache -----------------------------------------------------------------------------

    def _recognise(self, token: bytes) -> Verdict | Denial | None:
        """The decision on a key this process has verified before, found by its tag alone:
        the same tag comparison as :meth:`check`'s fast path, without the parsing, format and
        checksum checks that the key already passed; None for any other key (then
        :meth:`check` decides). Garbage costs one hash and one miss in the tag index; it never
        reaches the cache."""
        cache_key = self._tags.get(hash(token))
        if cache_key is None:
            return None
        entry = self.cache.get(cache_key)
        if not isinstance(entry, Entry) or entry.verdict is None:
            return None
        siphash = self._siphash
        tag = hash(token).to_bytes(8, "little", signed=True) if siphash else self.tag(token)
        if not hmac.compare_digest(tag, entry.tag):
            return None
        verdict = entry.verdict
        return verdict if verdict.in_good_standing else standing(verdict, self._clock)

    def _index(self, token: bytes, cache_key: bytes) -> None:
        """Remember which cache entry a verified key's tag leads to (bounded like the cache)."""
        tags = self._tags
        tag = hash(token)
        if tags.get(tag) == cache_key:
            return  # a key sent in a shape the warm path does not read: no lock per request
        with self._tags_lock:
            if len(tags) >= self._tags_max:
                tags.pop(next(iter(tags)), None)
            tags[tag] = cache_key

    def check(self, token: bytes) -> Verdict | Denial | Lookup:
        """Decide on a presented token from the cache alone; a :class:`Lookup` when it misses.

        Format and checksum come first, so garbage costs no digest and no cache access. A key
        this process has seen match its record before is recognised by its tag; any other
        key, known id or not, takes the same steps: digest, comparison, refusal.
        """
        key_id = self._format.identify(token)
        if isinstance(key_id, Denial):
            return key_id
        cache = self.cache
        generation = cache.generation
        if key_id is not None:
            # tag(), inline in the common case: a call is a third of its cost.
            if self._siphash:
                tag = hash(token).to_bytes(8, "little", signed=True)
            else:
                tag = self.tag(token)
            entry = cache.get(key_id)
            if isinstance(entry, Entry):
                # Fast path: this key matched the stored digest before, in this process; its
                # tag proves it is the same key for a fifth of the cost of the HMAC.
                if hmac.compare_digest(tag, entry.tag):
                    verdict = entry.verdict
                    if verdict is not None:
                        if self._indexed:
                            self._index(token, key_id)
                        if verdict.in_good_standing:
                            return verdict
                        return standing(verdict, self._clock)
                return self._judge(key_id, entry, self._digest(token), tag, generation)
            return Lookup(key_id, self._digest(token), tag, generation)
        digest = self._digest(token)
        entry = cache.get(digest)
        if isinstance(entry, Entry):
            return self._judge(digest, entry, digest, None, generation)
        return Lookup(None, digest, None, generation)

    def tag(self, token: bytes) -> bytes:
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
                verdict = Verdict.of(
                    record, self._defaults, self.settings.implications, entry.account
                )
            if remember:
                # The presented digest equals the record's: keeping it (made just now, like a
                # phantom's) rather than the record's lays known and unknown entries out alike.
                fresh = Entry(digest, tag or self._no_tag, verdict, record, entry.account)
                self.cache.put(cache_key, fresh, generation)
        return standing(verdict, self._clock)

    def _looked_up(self, lookup: Lookup, answer: Found) -> Verdict | Denial:
        """Remember what the store said (a record, or a phantom for an id it does not know:
        the same steps, the same lifetime) and decide; or, the store being down, decide from a
        stale entry if there is one."""
        cache_key = lookup.key_id or lookup.digest
        if isinstance(answer, StoreUnavailable):
            stale = self.cache.get_stale(cache_key, self._stale_for)
            self.outages.warn(
                "store", "key store unavailable; stale cache entries serve, others get 503", answer
            )
            if isinstance(stale, Entry):
                return self._judge(
                    cache_key, stale, lookup.digest, lookup.tag, lookup.generation, remember=False
                )
            return self.settings.unavailable
        account = None
        if isinstance(answer, tuple):
            answer, account = answer
        if answer is None:
            # A phantom holds the presented key's own digest and tag: objects of its own, as a
            # record's are, and already made. Presented again, it matches them and is refused
            # for having no record; any other key fails the comparison, as on a known id.
            entry = Entry(lookup.digest, lookup.tag or self._no_tag, None, None)
        else:
            entry = Entry(answer.digest, self._no_tag, None, answer, account)
        self.cache.put(cache_key, entry, lookup.generation, answer is not None)
        result = self._judge(cache_key, entry, lookup.digest, lookup.tag, lookup.generation)
        if result is UNKNOWN_KEY and lookup.key_id is not None:
            # Noted alike for a known id and an unknown one (see mismatches.py): a record
            # whose digest differs may mean another KEYSENTRY_SECRET where it was created.
            self._mismatches.note(lookup.key_id, answer, lookup.digest)
        return result

    def _cached_verdict(self, token: bytes) -> Verdict | None:
        key_id = self._format.identify(token)
        if isinstance(key_id, bytes):
            cached = self.cache.get(key_id)
            if isinstance(cached, Entry):
                return cached.verdict
        return None

    # -- the waits, each with its twin ----------------------------------------------------------

    def _fetch(self, lookup: Lookup) -> Found:
        store = self.sync_store
        if store is None:
            raise TypeError("the store has no blocking face: use it from ASGI")
        try:
            record = self._flights.fetch(lookup, store)
            accounts = self._accounts
            if record is None or record.owner is None or accounts is None:
                return record
            return record, accounts.get_account(record.owner)
        except StoreUnavailable as exc:
            return exc

    async def _afetch(self, lookup: Lookup) -> Found:
        store = self.async_store
        if store is None:
            raise TypeError("the store has no async face: use it from WSGI")
        try:
            record = await self._flights.afetch(lookup, store)
            accounts = self._aaccounts
            if record is None or record.owner is None or accounts is None:
                return record
            return record, await accounts.aget_account(record.owner)
        except StoreUnavailable as exc:
            return exc

    def _failed(self, client: str | None) -> Denial:
        assert self.attempts is not None
        return self.attempts.failed(client, UNKNOWN_KEY)

    async def _afailed(self, client: str | None) -> Denial:
        assert self.attempts is not None
        return await self.attempts.afailed(client, UNKNOWN_KEY)

    def _hit(self, verdict: Verdict, cost: int = 1) -> RateDecision | Denial | None:
        limiter = self._remote_limiter
        assert limiter is not None
        try:
            limited = None
            if verdict.policies:
                limited = limiter.hit(verdict.rate_key, verdict.policies, cost)
                if not limited.allowed or not verdict.account_policies:
                    return self._decided(verdict, limited)
            shared = limiter.hit(verdict.account_rate_key, verdict.account_policies, cost)
        except StoreUnavailable:
            return self._limiter_down()
        return self._shared(verdict, limited, shared)

    async def _ahit(self, verdict: Verdict, cost: int = 1) -> RateDecision | Denial | None:
        limiter = self._remote_limiter
        assert limiter is not None
        try:
            limited = None
            if verdict.policies:
                limited = await limiter.ahit(verdict.rate_key, verdict.policies, cost)
                if not limited.allowed or not verdict.account_policies:
                    return self._decided(verdict, limited)
            shared = await limiter.ahit(verdict.account_rate_key, verdict.account_policies, cost)
        except StoreUnavailable:
            return self._limiter_down()
        return self._shared(verdict, limited, shared)

    def _spend(self, verdict: Verdict, cost: int = 1) -> Denial | None:
        """Charge the request's credits: None when paid, 402 when too few are left, 401 when
        the key is gone, 503 when the store cannot say (credits are money: they fail closed)."""
        store = self.sync_store
        if store is None:
            raise TypeError("the store has no blocking face: use it from ASGI")
        charge = verdict.charge
        assert charge is not None
        try:
            if charge.shared and self._accounts is not None:
                self._accounts.spend_account_credits(charge.account, cost)
            else:
                store.spend_credits(charge.account, cost)
        except (InsufficientCredits, KeyNotFound, StoreUnavailable) as refused:
            return self._unpaid(refused, verdict, cost)
        return None

    async def _aspend(self, verdict: Verdict, cost: int = 1) -> Denial | None:
        store = self.async_store
        if store is None:
            raise TypeError("the store has no async face: use it from WSGI")
        charge = verdict.charge
        assert charge is not None
        try:
            if charge.shared and self._aaccounts is not None:
                await self._aaccounts.aspend_account_credits(charge.account, cost)
            else:
                await store.aspend_credits(charge.account, cost)
        except (InsufficientCredits, KeyNotFound, StoreUnavailable) as refused:
            return self._unpaid(refused, verdict, cost)
        return None

    # -- what the waits answer ----------------------------------------------------------------

    def _decided(self, verdict: Verdict, decision: RateDecision) -> RateDecision | Denial:
        return decision if decision.allowed else self._rate_limited(verdict, decision)

    def _rate_limited(
        self,
        verdict: Verdict,
        decision: RateDecision,
        described: str | None = None,
        shared: bool = False,
    ) -> Denial:
        whose = "the account of this API key" if shared else "this API key"
        field = verdict.policy_field if described is None else described
        return Denial.of(
            "RATE_LIMITED",
            f"Too many requests for {whose}: retry in {decision.retry_after} s.",
            {"retry_after": decision.retry_after},
            headers=tuple(rate_headers(decision, field, self._legacy)),
        )

    def _limiter_down(self) -> Denial | None:
        fail_open = self.settings.fail_open
        if fail_open:
            with self._count_lock:
                self.limiter_failures += 1
        self.outages.warn(
            "limiter",
            f"rate limiter unavailable; {'failing open' if fail_open else 'answering 503'} "
            f"({self.limiter_failures} let through so far)",
        )
        return None if fail_open else self.settings.unavailable

    def _unpaid(self, refused: Exception, verdict: Verdict, cost: int = 1) -> Denial:
        if isinstance(refused, InsufficientCredits):
            if cost == 1:
                return verdict.unpaid
            # A dearer request than the balance covers: say what it costs and what is left.
            details = verdict.unpaid.details
            account = details.get("account")
            whose = "The API key has" if account is None else f"The account {account!r} has"
            return Denial.of(
                "INSUFFICIENT_CREDITS",
                f"{whose} too few credits: this request costs {cost}, and {refused.balance} "
                "are left.",
                {**details, "cost": cost, "balance": refused.balance},
            )
        if isinstance(refused, KeyNotFound):
            return UNKNOWN_KEY
        self.outages.warn("credits", "key store unavailable; keys with credits get 503")
        return self.settings.unavailable

    def _with_rate(self, denial: Denial, limited: RateDecision | None, verdict: Verdict) -> Denial:
        """A refusal after the limiter counted the request (402) still tells the client where
        it stands: the RateLimit fields go on it too."""
        if limited is None:
            return denial
        extra = rate_headers(limited, verdict.policy_field, self._legacy)
        return Denial(denial.kind, denial.message, denial.details, (*denial.headers, *extra))

    def _emit(
        self,
        verdict: Verdict | None,
        denial: Denial | None,
        driver: Driver[Any],
        raw: Any,
        started: float,
    ) -> None:
        hook = self.on_decision
        if hook is None:
            return
        record = None if verdict is None else verdict.record
        cached: bool | None
        if type(started) is _Missed:
            cached = False
        elif verdict is not None or denial is None or denial is UNKNOWN_KEY:
            cached = True
        else:
            cached = True if denial.code not in _BEFORE_CACHE else None
        event = DecisionEvent(
            denial is None,
            None if denial is None else denial.code,
            None if denial is None else denial.status,
            None if record is None else record.id,
            None if record is None else record.prefix,
            time.perf_counter() - started,
            driver.method(raw),
            driver.path(raw),
            cached,
        )
        try:
            hook(event)
        except Exception:
            self.outages.warn("on_decision", "the on_decision callback failed")


#: What a store lookup answers: the record (with its account, when its owner has one and the
#: store keeps accounts), None for no record, or the outage.
Found = KeyRecord | tuple[KeyRecord, AccountRecord | None] | StoreUnavailable | None


def _charged(verdict: Verdict, cost: int) -> Verdict:
    """The verdict whose ``charge`` says what this request paid: itself at the default cost;
    a copy for another cost (so the route helpers give back what was taken)."""
    charge = verdict.charge
    if cost == 1 or charge is None:
        return verdict
    return dataclasses.replace(verdict, charge=Charge(charge.account, cost, charge.shared))


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

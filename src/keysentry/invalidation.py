"""Cross-process cache invalidation over Redis pub/sub: a change made anywhere reaches every
process's cache at once, instead of when the cached entry's TTL runs out (SPEC §7).

The process that changes a key publishes its id (and digest, for keys found by digest) on one
channel; every process runs a listener, a daemon thread with its own blocking connection, that
drops the key from its cache. A thread serves WSGI and ASGI apps alike and never touches an
event loop.

Pub/sub does not queue messages for absent listeners, so whenever the listener loses its
subscription it assumes announcements are being missed, and marks the whole cache stale
(:meth:`~keysentry.cache.TTLCache.expire_all`): twice, as soon as it notices the loss and again
once it has resubscribed, as keys fetched in between may have missed announcements too. A
stale entry is not trusted: the next request for its key asks the store. It is not forgotten
either: while the store cannot answer, it keeps serving as the stale copy (``stale_for`` past
its TTL, see :class:`~keysentry.Keysentry`), so a lost channel never turns a cached key into a
503. A key fetched while the listener is not subscribed is trusted until it has resubscribed
or for ``cache_ttl``, whichever ends first.

A connection that drops (a restart, ``CLIENT KILL``, a reset) is noticed at once. One that goes
silent without closing (a stalled server, a dead link or peer) is noticed by pings: after
``ping_interval`` seconds without hearing anything the listener pings, and when nothing at all
has been heard for ``2 * ping_interval + timeout`` seconds it gives the link up, marks the
cache stale and reconnects. Noticing takes up to 0.25 s more (how often the listener polls), so
a key changed while its announcement cannot arrive stops being trusted from the cache within
:attr:`RedisInvalidator.silence_limit` (``2 * ping_interval + timeout + 0.25``: 2.5 s with
the defaults) of the link's going silent, not after ``cache_ttl``. Reconnection backs off
exponentially with jitter.

    invalidator = RedisInvalidator("redis://127.0.0.1:6379/0")
    store = RedisStore(url, invalidator=invalidator)         # announces creates and updates
    ks = Keysentry(store, ...)
    invalidator.start(cache=ks.cache)                        # in every process

A process forked after :meth:`RedisInvalidator.start` (``gunicorn --preload``) gets a listener
of its own, started in the child.

Redis Cluster delivers ``PUBLISH`` to every node's subscribers, so this works there unchanged:
the listener subscribes on one node (redis-py's cluster pub/sub picks the node by the channel's
slot), publishers publish on any. Behind Sentinel the listener follows the master: each
(re)connection asks the Sentinels where it is.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from typing import Any, Protocol

from ._redis import RedisBackend, client_options, connect, sentinels_of
from .accounts import discard_account, owner_hash
from .breaker import CircuitBreaker

__all__ = ["RedisInvalidator"]

log = logging.getLogger("keysentry")

# "<id>" or "<id> <digest hex>": public values only, and a shape a stray publisher cannot bend.
_MESSAGE = re.compile(rb"([A-Za-z0-9_-]{1,32})(?: ([0-9a-f]{64}))?\Z")
# "account <BLAKE2b-128 of the owner>": an account changed; every key of it is forgotten.
_ACCOUNT = re.compile(rb"account ([0-9a-f]{32})\Z")


def account_message(owner: str) -> bytes:
    """The announcement of a change to an account (its keys' decisions depend on it)."""
    return f"account {owner_hash(owner)}".encode()


class Discards(Protocol):
    """What the listener needs of a cache (:class:`keysentry.cache.TTLCache` has both)."""

    def discard(self, key: Hashable) -> None:
        """Forget this key: it was announced as changed."""

    def expire_all(self) -> None:
        """Trust no entry until the store confirms it, but keep each for stale serving:
        announcements may have been missed."""


#: Seconds the listener waits for a message at a time, hence the latest it notices a silence.
_POLL = 0.25


def message(key_id: str, digest: bytes | None = None) -> bytes:
    """The announcement of a change to one key."""
    text = key_id if digest is None else f"{key_id} {digest.hex()}"
    if _MESSAGE.match(text.encode()) is None:
        raise ValueError("not a key id (1-32 letters, digits, '_' or '-') and 32-byte digest")
    return text.encode()


def parse(data: bytes) -> tuple[str, bytes | None] | None:
    """Inverse of :func:`message`; None for anything else on the channel."""
    match = _MESSAGE.match(data)
    if match is None:
        return None
    digest = match.group(2)
    return match.group(1).decode(), None if digest is None else bytes.fromhex(digest.decode())


class RedisInvalidator(RedisBackend):
    """Publishes key changes and, once :meth:`start`-ed, listens for them.

    :param url: as for :class:`~keysentry.ratelimit.redis.RedisLimiter`: one server, a
        cluster (``redis+cluster://``) or a Sentinel-managed master (``redis+sentinel://``).
        Or, instead of a URL, ``client`` (blocking: publishing from WSGI and the CLI, and the
        listener, which takes one dedicated connection of it with ``client.pubsub()``) and
        ``aclient`` (asyncio: publishing from ASGI); they are used as they are, and never
        closed.
    :param channel: the pub/sub channel; processes sharing a store share one channel.
        ``<namespace>:invalidate`` by default, where the namespace is the ``namespace``
        argument, else the URL's ``?namespace=``, else ``keysentry``.
    :param timeout: seconds a publish (or a connection attempt) may take.
    :param ping_interval: seconds of silence after which the listener pings the server;
        when nothing has been heard for ``2 * ping_interval + timeout`` seconds it gives the
        link up (marking the cache stale) and reconnects. A ping a second per process is
        cheap; longer intervals widen :attr:`silence_limit`.
    :param backoff: first and longest pause between reconnection attempts, in seconds.

    A lost subscription marks the cache stale at once and again on resubscribing (see the
    module's documentation): no cached key is trusted past a dropped connection, nor more than
    :attr:`silence_limit` seconds (2.5 s with the defaults) past a link that went silent,
    while each keeps serving as a stale copy when the store is down.
    """

    kind = "RedisInvalidator"

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        aclient: Any = None,
        namespace: str | None = None,
        channel: str | None = None,
        timeout: float = 0.25,
        failures: int = 3,
        cooldown: float = 2.0,
        ping_interval: float = 1.0,
        backoff: tuple[float, float] = (0.1, 5.0),
    ) -> None:
        super().__init__(
            url,
            client=client,
            aclient=aclient,
            timeout=timeout,
            failures=failures,
            cooldown=cooldown,
        )
        if ping_interval <= 0 or not 0 < backoff[0] <= backoff[1]:
            raise ValueError("ping_interval must be > 0 and backoff (first, longest) positive")
        if channel is None:
            prefix = namespace if namespace is not None else self.url_namespace or "keysentry"
            channel = f"{prefix}:invalidate"
        self.channel = channel
        self.ping_interval = ping_interval
        self.backoff = backoff
        self._on_message: Callable[[str], object] | None = None
        self._cache: Discards | None = None
        self._on_reset: Callable[[], object] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._listening = threading.Event()
        #: Announcements received (and handed to the callbacks) by this process's listener.
        self.received = 0
        #: Subscriptions lost: each marked the cache stale as soon as it was noticed.
        self.losses = 0
        #: Times the listener resubscribed after a loss and marked the cache stale again.
        self.resets = 0

    def __repr__(self) -> str:
        state = "listening" if self.listening else "started" if self._thread else "idle"
        return f"RedisInvalidator({self._where()}, channel={self.channel!r}, {state})"

    @property
    def silence_limit(self) -> float:
        """Seconds after which a link that went silent (no message, no answer to pings) is
        given up and the cache marked stale, at the latest: ``2 * ping_interval + timeout``,
        plus the listener's 0.25 s poll. The longest a change whose announcement cannot
        arrive is served from the cache as fresh, when ``cache_ttl`` is longer."""
        return 2 * self.ping_interval + self.timeout + _POLL

    # -- publishing ------------------------------------------------------------------------------

    def publish(self, key_id: str, digest: bytes | None = None) -> int:
        """Announce a change to this key; returns how many listeners heard it.

        Raises :class:`~keysentry.errors.StoreUnavailable` if Redis cannot be reached.
        """
        data = message(key_id, digest)
        with self._guard("publish"):
            return int(self._client().publish(self.channel, data))

    def publish_account(self, owner: str) -> int:
        """Announce that ``owner``'s account changed: every process forgets its keys."""
        with self._guard("publish"):
            return int(self._client().publish(self.channel, account_message(owner)))

    async def apublish_account(self, owner: str) -> int:
        """The async twin of :meth:`publish_account`."""
        with self._guard("publish"):
            client = await self._aclient()
            return int(await client.publish(self.channel, account_message(owner)))

    async def apublish(self, key_id: str, digest: bytes | None = None) -> int:
        """The async twin of :meth:`publish`."""
        data = message(key_id, digest)
        with self._guard("publish"):
            client = await self._aclient()
            return int(await client.publish(self.channel, data))

    # -- listening -------------------------------------------------------------------------------

    @property
    def listening(self) -> bool:
        """Whether the listener is subscribed right now."""
        return self._listening.is_set()

    def wait_listening(self, timeout: float | None = None) -> bool:
        """Block until the listener is subscribed (or ``timeout`` passes); whether it is."""
        return self._listening.wait(timeout)

    def start(
        self,
        on_message: Callable[[str], object] | None = None,
        *,
        cache: Discards | None = None,
        on_reset: Callable[[], object] | None = None,
    ) -> None:
        """Listen in a daemon thread of this process.

        :param cache: drop each announced key from it (by id and by digest, as the core caches
            both), and mark it all stale (``expire_all``) when announcements may have been
            missed: as soon as the subscription is lost, and again once it is back.
        :param on_message: called with each announced key id.
        :param on_reset: called whenever the cache is marked stale (after it), so twice per
            lost subscription: when the loss is noticed and after resubscribing.

        Callbacks run on the listener thread; an exception in one is logged and ignored.
        """
        if on_message is None and cache is None:
            raise ValueError("give a cache, an on_message callback, or both")
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("this invalidator is already listening")
        if self._target is None and self._given is None:
            raise self._missing("client=", "asyncio")
        self._on_message, self._cache, self._on_reset = on_message, cache, on_reset
        self._spawn()
        _started.add(self)

    def _spawn(self) -> None:
        self._stop = threading.Event()
        self._listening.clear()
        self._thread = threading.Thread(
            target=self._listen,
            args=(self._stop,),
            name=f"keysentry-invalidation-{self.channel}",
            daemon=True,
        )
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop listening and wait (up to ``timeout``) for the thread to end."""
        _started.discard(self)
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._listening.clear()

    def close(self) -> None:
        """Stop listening and close the publishing client."""
        self.stop()
        super().close()

    def _listen(self, stop: threading.Event) -> None:
        delay = self.backoff[0]
        lost = False  # a connection was lost: announcements may have been missed
        while not stop.is_set():
            client: Any = None
            pubsub: Any = None
            try:
                # A client of its own per connection, built as the publishing one is (a
                # cluster's asks for the layout, a Sentinel's for the master): inside the
                # try, as building may fail like any call. A given client lends a connection.
                if self._target is None:
                    pubsub = self._given.pubsub()
                else:
                    client = connect(self._target, client_options(self.timeout))
                    pubsub = client.pubsub()
                pubsub.subscribe(self.channel)
                heard = pinged = time.monotonic()
                silence = 2 * self.ping_interval + self.timeout
                while not stop.is_set():
                    reply = pubsub.get_message(timeout=min(_POLL, self.ping_interval))
                    now = time.monotonic()
                    if reply is not None:
                        heard = now
                        if reply["type"] == "message":
                            self._deliver(reply["data"])
                        elif reply["type"] == "subscribe":
                            if lost:
                                # Keys fetched while unsubscribed may have missed
                                # announcements: distrust them before saying we listen.
                                lost = False
                                self._expire_all()
                                self.resets += 1
                            self._listening.set()
                            delay = self.backoff[0]
                    elif now - heard > silence:
                        raise TimeoutError("the server stopped answering pings")
                    if now - max(heard, pinged) >= self.ping_interval:
                        pubsub.ping()
                        pinged = now
            except Exception as exc:
                expected = isinstance(exc, self._errors)
                was_listening = self._listening.is_set()
                if was_listening:
                    # From now on announcements are missed: distrust the cache at once, not
                    # only once a new subscription is up (which may take long).
                    self._listening.clear()
                    self._expire_all()
                    self.losses += 1
                    log.warning(
                        "invalidation listener lost Redis (%s); cache marked stale; reconnecting",
                        type(exc).__name__,
                        exc_info=not expected,
                    )
                elif not expected:
                    log.warning("invalidation listener failed; reconnecting", exc_info=True)
                lost = True
            finally:
                closers = [] if pubsub is None else [pubsub.close]
                if client is not None:
                    closers += [s.close for s in sentinels_of(client)] + [client.close]
                for closing in closers:
                    try:
                        closing()
                    except Exception:  # noqa: PERF203  (two calls; the next must still run)
                        log.debug("closing the listener's connection failed", exc_info=True)
            if lost:
                # Jitter keeps a fleet of workers from reconnecting in step.
                stop.wait(random.uniform(delay / 2, delay))  # noqa: S311  (jitter, not a secret)
                delay = min(delay * 2, self.backoff[1])
        self._listening.clear()

    def _deliver(self, data: Any) -> None:
        account = _ACCOUNT.match(data) if isinstance(data, bytes) else None
        if account is not None:
            self.received += 1
            try:
                if self._cache is not None:
                    discard_account(self._cache, account.group(1).decode())
            except Exception:
                log.exception("cache invalidation failed for an account")
            return
        parsed = parse(data) if isinstance(data, bytes) else None
        if parsed is None:
            log.debug("ignoring a malformed invalidation message")
            return
        key_id, digest = parsed
        self.received += 1
        try:
            if self._cache is not None:
                self._cache.discard(key_id.encode())
                if digest is not None:
                    self._cache.discard(digest)
            if self._on_message is not None:
                self._on_message(key_id)
        except Exception:
            log.exception("cache invalidation callback failed for key %s", key_id)

    def _expire_all(self) -> None:
        try:
            if self._cache is not None:
                self._cache.expire_all()
        except Exception:
            log.exception("marking the cache stale after a lost subscription failed")
        try:
            if self._on_reset is not None:
                self._on_reset()
        except Exception:
            log.exception("on_reset callback failed")

    def _after_fork(self) -> None:
        # The parent's thread does not exist here, and its locks may have been held at fork.
        self._lock = threading.Lock()
        self._listening = threading.Event()
        self.breaker = CircuitBreaker(self.breaker.threshold, self.breaker.cooldown)
        self._sync = None
        self._async = weakref.WeakKeyDictionary()
        self._thread = None
        self._spawn()


#: Invalidators whose listener should run in every process, forked children included.
_started: weakref.WeakSet[RedisInvalidator] = weakref.WeakSet()


def _restart_in_child() -> None:
    for invalidator in list(_started):
        invalidator._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_restart_in_child)

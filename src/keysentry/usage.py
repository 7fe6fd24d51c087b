"""Usage off the hot path: ``last_used_at`` and request counts, written in batches.

A request that is let through costs one ``deque.append`` of its key id
(:attr:`UsageRecorder.note`: no lock, no clock, no allocation; appends and pops of a deque are
atomic). Nothing reaches the store until a flush drains the deque into one batch of all keys
used since the last one (:meth:`~keysentry.stores.base.KeyStore.record_usage`: per key, a
count to add and a ``last_used_at``, the time of the drain, so it is exact to one interval).
A crash loses at most one ``interval`` of usage, and a store outage loses none: a batch that
cannot be written is kept and merged into the next (only its unwritten part when the store
wrote the rest: :class:`~keysentry.stores.base.UsageNotRecorded`). Memory: one pointer per
request per interval, at most ``max_pending`` (a million: 8 MB); past that, the oldest notes
are dropped.

Who flushes, and when:

* ASGI: the middleware starts an asyncio task on ``lifespan.startup`` and flushes once more on
  ``lifespan.shutdown``, before the app sees it (the app may close the store there).
* WSGI, or an ASGI server that runs no lifespan: a daemon thread, started by the first use,
  through the store's blocking face; it flushes at interpreter exit too (``atexit``).
* An async-only store and no lifespan: a task on the loop of the first request.

``Keysentry.close()`` / ``aclose()`` stop the flusher and write what is pending.

History: a store that keeps it (:class:`~keysentry.stores.base.UsageHistoryStore`) counts each
batch into the UTC day of its drain (its ``last_used_at``), so a request made up to one
interval before midnight may be counted in the next day; a refused batch that is written later
together with newer use is counted in the day it is written. With route templates on
(``usage_routes``), the drivers also note, after the app has answered, the template of the
route it matched (:meth:`UsageRecorder.note_route`: one dict lookup and one ``deque.append``
into that template's own deque, no allocation), and each batch carries, per key, the requests
per template; a request still running at a drain has its template counted in a later batch.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import math
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime, timezone
from typing import Any, NamedTuple

from .history import DEFAULT_RETENTION_DAYS
from .stores.base import (
    AsyncKeyStore,
    AsyncUsageHistoryStore,
    KeyStore,
    Usage,
    UsageHistoryStore,
    UsageNotRecorded,
)

__all__ = ["Batch", "UsageRecorder"]

log = logging.getLogger("keysentry")

#: Route templates counted at most: a framework that put something else than its templates
#: where they are looked for cannot grow the recorder without bound.
MAX_ROUTES = 1000


class Batch(NamedTuple):
    """What one flush writes: per key id its requests and ``last_used_at``, and the requests
    per route template of those keys (a part of them, where the template was noted)."""

    usage: dict[str, Usage]
    routes: dict[str, dict[str, int]]

    def __bool__(self) -> bool:
        return bool(self.usage)


def _unwritten(error: Exception, batch: Batch) -> Batch:
    """What of a batch a failed write left to send again: the part the store names, when it
    wrote the rest (a store on several servers), else all of it."""
    if isinstance(error, UsageNotRecorded):
        usage = {key_id: used for key_id, used in error.unwritten.items() if key_id in batch.usage}
        return Batch(usage, {k: v for k, v in batch.routes.items() if k in usage})
    return batch


class UsageRecorder:
    """Counts requests per key id and writes them to the store every ``interval`` seconds."""

    def __init__(
        self,
        store: KeyStore | AsyncKeyStore,
        interval: float = 10.0,
        *,
        max_pending: int = 1_000_000,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not math.isfinite(interval) or interval <= 0:
            raise ValueError("the usage interval must be a positive number of seconds")
        self.interval = interval
        #: Days of history the store keeps (for a store that keeps history).
        self.retention_days = retention_days
        self._sync = store if isinstance(store, KeyStore) else None
        self._async = store if isinstance(store, AsyncKeyStore) else None
        self._history = isinstance(store, UsageHistoryStore)
        self._ahistory = isinstance(store, AsyncUsageHistoryStore)
        self._clock = clock
        self._lock = threading.Lock()
        # Bounded: if no flush can drain it (a store down for long), the oldest notes go.
        self._max_pending = max_pending
        self._pending: deque[str] = deque(maxlen=max_pending)
        #: Route template -> the ids of the keys whose requests it answered since the last take.
        self._routes: dict[str, deque[str]] = {}
        #: Batches the store refused, merged into the next one.
        self._unsent = Batch({}, {})
        #: Count one request of a key: the deque's own ``append`` once a flusher runs, and
        #: until then a function that appends and starts one.
        self.note: Callable[[str], None] = self._note_and_start
        self._started = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._writing: asyncio.Future[Any] | None = None
        self._logged_at = -math.inf
        #: Batches that could not be written (and were kept for the next flush).
        self.failures = 0

    def __repr__(self) -> str:
        return f"UsageRecorder(interval={self.interval}, pending={len(self._pending)} requests)"

    def _note_and_start(self, key_id: str) -> None:
        self._pending.append(key_id)
        self._start_in_background()

    def _running(self) -> None:
        """A flusher runs: notes go straight to the deque."""
        self._started = True
        self.note = self._pending.append

    def _stopped(self) -> None:
        self._started = False
        self.note = self._note_and_start

    def note_route(self, template: str, key_id: str) -> None:
        """Count one request of a key as answered by the route ``template``: an append to
        that template's deque (made on its first request)."""
        pending = self._routes.get(template)
        if pending is None:
            with self._lock:
                if len(self._routes) >= MAX_ROUTES:
                    return
                pending = self._routes.setdefault(template, deque(maxlen=self._max_pending))
        pending.append(key_id)

    # -- batches ---------------------------------------------------------------------------------

    def take(self) -> Batch:
        """Everything counted since the last take (and any refused batch), as one batch."""
        counts = _drain(self._pending)
        routes: dict[str, dict[str, int]] = {}
        for template, pending in list(self._routes.items()):
            for key_id, n in _drain(pending).items():
                routes.setdefault(key_id, {})[template] = n
        with self._lock:
            unsent, self._unsent = self._unsent, Batch({}, {})
        if not counts and not routes:
            return unsent
        now = datetime.fromtimestamp(self._clock(), timezone.utc)
        # A key whose routes arrive without requests (they were counted at admission, in an
        # earlier batch, and answered since) is written with none: its routes need its row.
        used = counts.keys() | routes.keys()
        batch = Batch({key_id: Usage(counts.get(key_id, 0), now) for key_id in used}, routes)
        _merge(batch, unsent, now)
        return batch

    def _put_back(self, batch: Batch) -> None:
        """A batch the store refused is kept, so the next flush writes it."""
        with self._lock:
            _merge(self._unsent, batch, None)

    def _write(self, store: KeyStore, batch: Batch) -> None:
        if self._history:
            assert isinstance(store, UsageHistoryStore)
            store.record_usage(batch.usage, batch.routes, retention_days=self.retention_days)
        else:
            store.record_usage(batch.usage)

    def flush(self) -> int:
        """Write what is pending through the blocking face; the number of keys written."""
        if self._sync is None:
            raise TypeError("this store has no blocking face: use aflush()")
        batch = self.take()
        if batch:
            try:
                self._write(self._sync, batch)
            except Exception as exc:
                self._put_back(_unwritten(exc, batch))
                raise
        return len(batch.usage)

    async def aflush(self) -> int:
        """Write what is pending through the async face (the blocking one if there is none).

        The write is shielded: cancelling the caller (a shutdown) cannot leave a batch both
        written and kept for the next flush, which would count it twice.
        """
        if self._async is None:
            write: asyncio.Future[int] = asyncio.ensure_future(asyncio.to_thread(self.flush))
            self._writing = write
            return await asyncio.shield(write)
        batch = self.take()
        if batch:
            self._writing = asyncio.ensure_future(self._awrite(self._async, batch))
            await asyncio.shield(self._writing)
        return len(batch.usage)

    async def _awrite(self, store: AsyncKeyStore, batch: Batch) -> None:
        try:
            if self._ahistory:
                assert isinstance(store, AsyncUsageHistoryStore)
                await store.arecord_usage(
                    batch.usage, batch.routes, retention_days=self.retention_days
                )
            else:
                await store.arecord_usage(batch.usage)
        except Exception as exc:
            self._put_back(_unwritten(exc, batch))
            raise

    def _failed(self) -> None:
        self.failures += 1
        now = time.monotonic()
        if now - self._logged_at >= 60:
            self._logged_at = now
            log.warning("could not record key usage; it is kept for the next flush", exc_info=True)

    # -- flushers --------------------------------------------------------------------------------

    def _start_in_background(self) -> None:
        with self._lock:
            if self._started:
                return
            self._running()
        if self._sync is not None:
            self._stop.clear()
            thread = threading.Thread(
                target=_flush_loop, args=(weakref.ref(self),), name="keysentry-usage", daemon=True
            )
            self._thread = thread
            thread.start()
            _LIVE.add(self)
            return
        with contextlib.suppress(RuntimeError):  # no loop: the next note() tries again
            self._task = asyncio.get_running_loop().create_task(self._run())
            return
        self._stopped()

    def start(self) -> None:
        """Start the asyncio flusher on the running loop (the ASGI lifespan's startup)."""
        with self._lock:
            if self._task is not None and not self._task.done():
                return
            self._running()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.aflush()
            except Exception:  # whatever a store raises, the flusher lives on
                self._failed()

    async def aclose(self) -> None:
        """Stop the asyncio flusher (and the thread, if any) and write what is pending."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()  # a write in progress is shielded: let it finish first
            with contextlib.suppress(asyncio.CancelledError):
                await task
        writing, self._writing = self._writing, None
        if writing is not None and not writing.done():  # a done one may be of a closed loop
            await asyncio.wait([writing])
        await asyncio.to_thread(self._stop_thread)
        self._stopped()
        try:
            await self.aflush()
        except Exception:
            self._failed()

    def lifespan(
        self, receive: Callable[[], Awaitable[MutableMapping[str, Any]]]
    ) -> Callable[[], Awaitable[MutableMapping[str, Any]]]:
        """An ASGI ``receive`` for the lifespan scope that starts the flusher at startup and
        flushes at shutdown, before the app hears of it (its shutdown may close the store)."""

        async def receive_lifespan() -> MutableMapping[str, Any]:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start()
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
            return message

        return receive_lifespan

    def close(self) -> None:
        """Stop the flusher thread and write what is pending (through the blocking face)."""
        self._stop_thread()
        self._stopped()
        if self._sync is None:
            return
        try:
            self.flush()
        except Exception:
            self._failed()

    def _stop_thread(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout=5)
            _LIVE.discard(self)


def _drain(pending: deque[str]) -> Counter[str]:
    """Count the ids in a deque, taking only what is there now: appends go on meanwhile."""
    counts: Counter[str] = Counter()
    popleft = pending.popleft
    try:
        for _ in range(len(pending)):
            counts[popleft()] += 1
    except IndexError:  # another flush drained the rest
        pass
    return counts


def _merge(into: Batch, other: Batch, now: datetime | None) -> None:
    """Add ``other``'s counts to ``into``: a key in both gets ``now`` as its ``last_used_at``
    (None: the later of the two)."""
    for key_id, (count, when) in other.usage.items():
        kept = into.usage.get(key_id)
        if kept is not None:
            count += kept.requests
            when = now if now is not None else max(when, kept.last_used_at)
        into.usage[key_id] = Usage(count, when)
    for key_id, routes in other.routes.items():
        merged = into.routes.setdefault(key_id, {})
        for template, n in routes.items():
            merged[template] = merged.get(template, 0) + n


#: Recorders with a flusher thread, flushed once more at interpreter exit (held weakly).
_LIVE: weakref.WeakSet[UsageRecorder] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    for recorder in list(_LIVE):
        recorder.close()


def _flush_loop(ref: weakref.ref[UsageRecorder]) -> None:
    """The thread's loop. It holds the recorder weakly: a forgotten guard is not kept alive."""
    recorder = ref()
    if recorder is None:
        return
    stop, interval = recorder._stop, recorder.interval
    del recorder
    while not stop.wait(interval):
        recorder = ref()
        if recorder is None:
            return
        try:
            recorder.flush()
        except Exception:  # whatever a store raises, the flusher lives on
            recorder._failed()
        del recorder

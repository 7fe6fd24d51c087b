"""Usage off the hot path: ``last_used_at`` and request counts, written in batches.

A request that is let through costs one locked dict update here (:meth:`UsageRecorder.note`);
nothing reaches the store until a flush hands the store one batch of all keys used since the
last one (:meth:`~keysentry.stores.base.KeyStore.record_usage`: per key, a count to add and
the time of its latest request). So a crash loses at most one ``interval`` of usage, and a
store outage loses none: a batch that cannot be written is merged back and retried.

Who flushes, and when:

* ASGI: the middleware starts an asyncio task on ``lifespan.startup`` and flushes once more on
  ``lifespan.shutdown``, before the app sees it (the app may close the store there).
* WSGI, or an ASGI server that runs no lifespan: a daemon thread, started by the first use,
  through the store's blocking face; it flushes at interpreter exit too (``atexit``).
* An async-only store and no lifespan: a task on the loop of the first request.

``Keysentry.close()`` / ``aclose()`` stop the flusher and write what is pending.
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
from collections.abc import Callable
from datetime import datetime, timezone

from .errors import KeysentryError
from .stores.base import AsyncKeyStore, KeyStore, Usage

__all__ = ["UsageRecorder"]

log = logging.getLogger("keysentry")


class UsageRecorder:
    """Counts requests per key id and writes them to the store every ``interval`` seconds."""

    def __init__(
        self,
        store: KeyStore | AsyncKeyStore,
        interval: float = 10.0,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not math.isfinite(interval) or interval <= 0:
            raise ValueError("the usage interval must be a positive number of seconds")
        self.interval = interval
        self._sync = store if isinstance(store, KeyStore) else None
        self._async = store if isinstance(store, AsyncKeyStore) else None
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._last: dict[str, float] = {}
        #: A flusher runs (or was asked for): note() checks only this.
        self._started = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._logged_at = -math.inf
        #: Batches that could not be written (and were kept for the next flush).
        self.failures = 0

    def __repr__(self) -> str:
        return f"UsageRecorder(interval={self.interval}, pending={len(self._counts)} keys)"

    # -- the hot path ----------------------------------------------------------------------------

    def note(self, key_id: str) -> None:
        """Count one request of this key."""
        now = self._clock()
        with self._lock:
            counts = self._counts
            counts[key_id] = counts.get(key_id, 0) + 1
            self._last[key_id] = now
        if not self._started:
            self._start_in_background()

    # -- batches ---------------------------------------------------------------------------------

    def take(self) -> dict[str, Usage]:
        """Everything counted since the last take, as a batch for ``record_usage``."""
        with self._lock:
            counts, last = self._counts, self._last
            if not counts:
                return {}
            self._counts, self._last = {}, {}
        return {
            key_id: Usage(count, datetime.fromtimestamp(last[key_id], timezone.utc))
            for key_id, count in counts.items()
        }

    def _put_back(self, batch: dict[str, Usage]) -> None:
        """A batch the store refused goes back in, so the next flush writes it."""
        with self._lock:
            for key_id, (count, when) in batch.items():
                self._counts[key_id] = self._counts.get(key_id, 0) + count
                stamp = when.timestamp()
                if self._last.get(key_id, -math.inf) < stamp:
                    self._last[key_id] = stamp

    def flush(self) -> int:
        """Write what is pending through the blocking face; the number of keys written."""
        if self._sync is None:
            raise TypeError("this store has no blocking face: use aflush()")
        batch = self.take()
        if batch:
            try:
                self._sync.record_usage(batch)
            except BaseException:
                self._put_back(batch)
                raise
        return len(batch)

    async def aflush(self) -> int:
        """Write what is pending through the async face (the blocking one if there is none)."""
        if self._async is None:
            return await asyncio.to_thread(self.flush)
        batch = self.take()
        if batch:
            try:
                await self._async.arecord_usage(batch)
            except BaseException:
                self._put_back(batch)
                raise
        return len(batch)

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
            self._started = True
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
        self._started = False

    def start(self) -> None:
        """Start the asyncio flusher on the running loop (the ASGI lifespan's startup)."""
        with self._lock:
            if self._task is not None and not self._task.done():
                return
            self._started = True
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.aflush()
            except (KeysentryError, OSError):
                self._failed()

    async def aclose(self) -> None:
        """Stop the asyncio flusher (and the thread, if any) and write what is pending."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(self._stop_thread)
        self._started = False
        try:
            await self.aflush()
        except (KeysentryError, OSError):
            self._failed()

    def close(self) -> None:
        """Stop the flusher thread and write what is pending (through the blocking face)."""
        self._stop_thread()
        self._started = False
        if self._sync is None:
            return
        try:
            self.flush()
        except (KeysentryError, OSError):
            self._failed()

    def _stop_thread(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout=5)
            _LIVE.discard(self)


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
        except (KeysentryError, OSError):
            recorder._failed()
        del recorder

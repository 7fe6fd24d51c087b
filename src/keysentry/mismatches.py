"""A known key id presented with a key that does not match its digest: a warning for the
operator, who may have given the app another digest secret than the place the key was made.

A key created under one ``KEYSENTRY_SECRET`` (or none) and presented to an app under another
(or none) is refused like any wrong key: 401, and the client learns nothing more, rightly.
The operator should learn more. When the store holds a record for the presented key's id but
the digests differ, the guard logs a WARNING on the ``keysentry`` logger naming the key id
(never the key, nor a digest) and what the record's ``digest_mode`` says against this guard's
own: digested with a secret here and without one there, or the other way round, or both with
a secret (then another secret, or simply a wrong key). Both sides without a secret leave a
wrong key as the only cause: that is not logged. One warning per key id per ``interval``;
at most ``most`` ids remembered.

The work must not tell known ids from unknown ones (see the README, "Guessing keys"): every
lookup refused as an unknown key is noted the same way, whether the store knew the id or
not: one append to a bounded queue and one clock read. The queue is reviewed (the digests
compared, the warnings logged) at most once per ``review_every`` seconds, by whichever such
lookup comes next, so its cost falls on no particular kind of request. The first mismatch
is logged at once; another key's within the same ``review_every`` at the next review.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections import deque

from .records import DIGEST_MODES, KeyRecord

__all__ = ["DigestMismatches"]

log = logging.getLogger("keysentry")

_KEYED, _PLAIN = DIGEST_MODES
_SETTING = "KEYSENTRY_SECRET"  # the setting's name


def likely_cause(stored: str | None, here: str) -> str | None:
    """Why a key whose record has digest mode ``stored`` may fail under mode ``here``; None
    when no secret is involved on either side (a wrong key, nothing to configure)."""
    if stored == _PLAIN and here == _KEYED:
        return (
            f"its record was digested without a secret ({_PLAIN}) and this app digests with "
            f"one ({_KEYED}): was the key created where {_SETTING} was not set?"
        )
    if stored == _KEYED and here == _PLAIN:
        return (
            f"its record was digested with a secret ({_KEYED}) and this app has none "
            f"({_PLAIN}): give it the {_SETTING} the key was created with"
        )
    if stored == _KEYED:
        return (
            f"both its record and this app digest with a secret ({_KEYED}): was the key "
            f"created under another {_SETTING}? (or a wrong key was presented)"
        )
    if stored is None:
        return (
            f"its record does not say how it was digested, and this app digests "
            f"{'with' if here == _KEYED else 'without'} a secret ({here}): was the key "
            f"created under another {_SETTING}, or {'without' if here == _KEYED else 'with'} "
            "one?"
        )
    return None


class DigestMismatches:
    """Notes refused lookups; warns, rate-limited per key id, about known ids whose digest
    did not match. Thread-safe; built by the pipeline."""

    __slots__ = ("_due", "_interval", "_lock", "_mode", "_most", "_queue", "_review_every",
                 "_warned")  # fmt: skip

    def __init__(
        self,
        mode: str,
        *,
        interval: float = 60.0,
        review_every: float = 0.25,
        most: int = 1024,
        pending: int = 64,
    ) -> None:
        self._mode = mode
        self._interval = interval
        self._review_every = review_every
        self._most = most
        self._queue: deque[tuple[bytes, KeyRecord | None, bytes]] = deque(maxlen=pending)
        self._due = 0.0  # monotonic time of the next review
        self._lock = threading.Lock()
        #: Key id -> when it was last warned about, oldest first.
        self._warned: dict[bytes, float] = {}

    def note(self, key_id: bytes, record: KeyRecord | None, digest: bytes) -> None:
        """A lookup of ``key_id`` refused the presented key (digest ``digest``); ``record``
        is what the store held (None: nothing). The same steps for every refusal."""
        self._queue.append((key_id, record, digest))
        if time.monotonic() >= self._due:
            self._review()

    def _review(self) -> None:
        if not self._lock.acquire(blocking=False):
            return  # another thread is reviewing
        try:
            now = time.monotonic()
            self._due = now + self._review_every
            queue = self._queue
            while queue:
                key_id, record, digest = queue.popleft()
                # Nothing stored, or the presented key's own record (revoked): no mismatch.
                if record is None or hmac.compare_digest(record.digest, digest):
                    continue
                cause = likely_cause(record.digest_mode, self._mode)
                last = self._warned.get(key_id)
                if cause is None or (last is not None and now - last < self._interval):
                    continue
                self._remember(key_id, now)
                # The id passed the key format (letters and digits): safe to print as it is.
                log.warning(
                    "key %s was refused: the key presented does not match its stored digest; %s",
                    key_id.decode("ascii", "replace"),
                    cause,
                )
        finally:
            self._lock.release()

    def _remember(self, key_id: bytes, now: float) -> None:
        warned = self._warned
        warned.pop(key_id, None)
        while len(warned) >= self._most:
            del warned[next(iter(warned))]
        warned[key_id] = now

"""A key store of your own, proven by keysentry's conformance kit.

This one keeps records as the codec's plain rows (strings, integers, None) in a dict, as a
document database or a key-value service would hold them; swap the dict for your client. It
offers the blocking face (``KeyStore``: WSGI, the CLI); an ``AsyncKeyStore`` adds the same
methods prefixed with ``a``. The kit runs against it in ``tests/test_examples.py``::

    class TestRowStore(KeyStoreContract):
        @pytest.fixture
        def store(self):
            return RowStore()

The contract, in short: ``update``, ``delete`` and ``spend_credits`` are atomic (here, one
lock; in a database, a transaction or a conditional write), ``spend_credits`` runs a due
refill first (``keysentry.refills.apply_refill``), ``update`` and ``delete`` honour
``expect``, errors are
``KeyNotFound``, ``DuplicateKey``, ``Conflict``, ``InsufficientCredits`` and, for anything
that could not reach the backend, ``StoreUnavailable``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from keysentry import DuplicateKey, InsufficientCredits, KeyNotFound, KeyRecord
from keysentry.records import utcnow
from keysentry.refills import apply_refill
from keysentry.stores.base import KeyChanges, Usage, apply_changes, check_expected
from keysentry.stores.codec import decode, encode


class RowStore:
    """Records as codec rows in a dict, one lock for atomicity."""

    def __init__(self) -> None:
        self._rows: dict[str, dict[str, Any]] = {}
        self._by_digest: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, key_id: str) -> KeyRecord | None:
        row = self._rows.get(key_id)
        return None if row is None else decode(row)

    def find_by_digest(self, digest: bytes) -> KeyRecord | None:
        key_id = self._by_digest.get(digest.hex())
        return None if key_id is None else self.get(key_id)

    def create(self, record: KeyRecord) -> None:
        row = encode(record)
        with self._lock:
            if record.id in self._rows or row["digest"] in self._by_digest:
                raise DuplicateKey(f"a key with id {record.id!r} or its digest exists")
            self._rows[record.id] = row
            self._by_digest[str(row["digest"])] = record.id

    def update(
        self, key_id: str, changes: KeyChanges, expect: Mapping[str, object] | None = None
    ) -> KeyRecord:
        with self._lock:
            current = self._current(key_id)
            check_expected(current, expect)
            record = apply_changes(current, changes)
            self._rows[key_id] = encode(record)
            return record

    def delete(self, key_id: str, expect: Mapping[str, object] | None = None) -> KeyRecord:
        with self._lock:
            current = self._current(key_id)
            check_expected(current, expect)
            del self._rows[key_id]
            del self._by_digest[current.digest.hex()]
            return current

    def list_keys(
        self, *, owner: str | None = None, after: str | None = None, limit: int = 100
    ) -> Sequence[KeyRecord]:
        ids = sorted(
            key_id
            for key_id, row in self._rows.items()
            if (owner is None or row["owner"] == owner) and (after is None or key_id > after)
        )
        return [decode(self._rows[key_id]) for key_id in ids[: max(limit, 0)]]

    def spend_credits(self, key_id: str, amount: int = 1) -> int | None:
        if amount == 0:
            raise ValueError("an amount of credits cannot be zero")
        with self._lock:
            row = self._rows.get(key_id)
            if row is None:
                raise KeyNotFound(f"no key with id {key_id[:12]!r}")
            record = decode(row)
            credits, refilled_at = record.credits, record.refilled_at
            # A refill that is due runs first, in the same atomic step.
            refilled = apply_refill(credits, record.refill, refilled_at, utcnow())
            if refilled is not None:
                credits, refilled_at = refilled
            if credits is None:
                return None
            if amount > 0 and credits < amount:
                raise InsufficientCredits(credits)
            row["credits"] = credits - amount
            row["refilled_at"] = None if refilled_at is None else refilled_at.isoformat()
            return int(row["credits"])

    def record_usage(self, usage: Mapping[str, Usage]) -> None:
        with self._lock:
            for key_id, (count, last) in usage.items():
                row = self._rows.get(key_id)
                if row is None:
                    continue
                row["request_count"] += count
                stamp = last.isoformat()
                if row["last_used_at"] is None or row["last_used_at"] < stamp:
                    row["last_used_at"] = stamp

    def close(self) -> None:
        pass

    def _current(self, key_id: str) -> KeyRecord:
        row = self._rows.get(key_id)
        if row is None:
            raise KeyNotFound(f"no key with id {key_id[:12]!r}")
        return decode(row)


if __name__ == "__main__":
    from keysentry import Denial, Keysentry

    ks = Keysentry(RowStore())
    issued = ks.issue(name="example", credits=2)
    verdict = ks.authenticate(issued.key.reveal().encode())
    if isinstance(verdict, Denial):
        print(f"refused: {verdict.code}")
    else:
        print(f"authenticated {verdict.identity.prefix}... ({verdict.identity.name}) by a RowStore")

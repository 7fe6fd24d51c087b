"""The store contract as a reusable pytest suite: prove your own KeyStore in a few lines.

    import pytest
    from keysentry.testing import AsyncKeyStoreContract, KeyStoreContract

    class TestMyStore(KeyStoreContract):
        @pytest.fixture
        def store(self):
            store = MyStore(...)          # empty, or in a namespace of its own
            yield store
            store.close()

    class TestMyStoreAsync(AsyncKeyStoreContract):
        @pytest.fixture
        def store(self):
            ...

Every test uses only the public protocol (``stores/base.py``). The async suite drives each
test with :func:`asyncio.run` (one event loop per test, as an ASGI server would keep one), so
it needs no pytest plugin. keysentry runs this suite against each built-in store.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest

from .accounts import AccountRecord
from .errors import Conflict, DuplicateKey, InsufficientCredits, KeyNotFound
from .history import DailyUsage
from .keys import Digester, mint
from .records import KeyRecord, Rate, utcnow
from .refills import Refill, period_start
from .stores.base import (
    AccountStore,
    AsyncAccountStore,
    AsyncDeletingKeyStore,
    AsyncKeyStore,
    AsyncUsageHistoryStore,
    DeletingKeyStore,
    KeyStore,
    Usage,
    UsageHistoryStore,
)

__all__ = ["AsyncKeyStoreContract", "KeyStoreContract", "make_record"]

T = TypeVar("T")
_DIGEST = Digester(b"conformance-kit-secret-0123456789")


def make_record(**fields: Any) -> KeyRecord:
    """A fresh, valid record with a unique id and digest; ``fields`` override the defaults."""
    key_id, key = mint("sk_test")
    values: dict[str, Any] = {
        "id": key_id,
        "digest": _DIGEST(key.reveal().encode()),
        "prefix": key.public,
        "name": "conformance",
        "created_at": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc),
        "digest_mode": _DIGEST.mode,
    }
    values.update(fields)
    return KeyRecord(**values)


def _full_record() -> KeyRecord:
    return make_record(
        name="every field",
        owner="acct_42",
        scopes={"read", "write"},
        expires_at=datetime(2030, 5, 6, 7, 8, 9, tzinfo=timezone.utc),
        last_used_at=datetime(2026, 2, 3, 4, 5, 6, tzinfo=timezone.utc),
        disabled=True,
        rate_limit=(Rate(10, 1.0, burst=20), Rate(1000, 86400.0)),
        allowed_networks=("10.0.0.0/8", "2001:db8::/32"),
        credits=7,
        metadata={"plan": "pro", "tags": ["a", "b"], "nested": {"n": 1}},
        request_count=12,
        rotated_to="successor12x",
        credits_from="firstkey12x",
        line="firstkey12x",
    )


def _deleting(store: KeyStore) -> DeletingKeyStore:
    """``delete`` is optional: a store without it skips the tests of it."""
    if not isinstance(store, DeletingKeyStore):
        pytest.skip("the store has no delete (optional: DeletingKeyStore)")
    return store


def _accounts(store: KeyStore) -> AccountStore:
    """Accounts are optional: a store without them skips the tests of them."""
    if not isinstance(store, AccountStore):
        pytest.skip("the store keeps no accounts (optional: AccountStore)")
    return store


def _aaccounts(store: AsyncKeyStore) -> AsyncAccountStore:
    if not isinstance(store, AsyncAccountStore):
        pytest.skip("the store keeps no accounts (optional: AsyncAccountStore)")
    return store


def _owner() -> str:
    """An owner no other test uses (stores are shared between tests in some suites)."""
    return "acct-" + mint("sk_test")[0]


#: Long before any current period: a refill whose last run was then is due now.
_LONG_AGO = datetime(2020, 1, 1, tzinfo=timezone.utc)


def _adeleting(store: AsyncKeyStore) -> AsyncDeletingKeyStore:
    if not isinstance(store, AsyncDeletingKeyStore):
        pytest.skip("the store has no adelete (optional: AsyncDeletingKeyStore)")
    return store


def _history(store: KeyStore) -> UsageHistoryStore:
    """Usage history is optional: a store without it skips the tests of it."""
    if not isinstance(store, UsageHistoryStore):
        pytest.skip("the store keeps no usage history (optional: UsageHistoryStore)")
    return store


def _ahistory(store: AsyncKeyStore) -> AsyncUsageHistoryStore:
    if not isinstance(store, AsyncUsageHistoryStore):
        pytest.skip("the store keeps no usage history (optional: AsyncUsageHistoryStore)")
    return store


def _days(
    read: Mapping[str, Sequence[DailyUsage]], key_id: str
) -> dict[date, tuple[int, dict[str, int]]]:
    """One key's days as read, comparable: day -> (requests, routes)."""
    return {entry.day: (entry.requests, dict(entry.routes)) for entry in read.get(key_id, ())}


#: Days of the history tests, and a route template with characters a store must keep as they are.
_DAY = date(2026, 4, 1)
_ODD_ROUTE = "/v1/ünïcode/{id}:x y|*"


class KeyStoreContract:
    """The blocking face. Subclass it and provide a ``store`` fixture (a fresh, empty store)."""

    @pytest.fixture
    def store(self) -> KeyStore:
        raise NotImplementedError("define a `store` fixture returning your store")

    def test_is_a_key_store(self, store: KeyStore) -> None:
        assert isinstance(store, KeyStore)

    def test_get_unknown_is_none(self, store: KeyStore) -> None:
        assert store.get("nosuchkeyid0") is None
        assert store.find_by_digest(bytes(32)) is None

    def test_create_then_get_round_trips_every_field(self, store: KeyStore) -> None:
        record = _full_record()
        store.create(record)
        assert store.get(record.id) == record
        assert store.find_by_digest(record.digest) == record

    def test_minimal_record_round_trips(self, store: KeyStore) -> None:
        record = make_record()
        store.create(record)
        assert store.get(record.id) == record

    def test_the_digest_mode_is_kept_and_fixed(self, store: KeyStore) -> None:
        """Each record says how its digest was made (never with what secret); a record
        written before records carried it reads back as unknown (None)."""
        modes = {mode: make_record(digest_mode=mode) for mode in ("sha256", "hmac-sha256", None)}
        for record in modes.values():
            store.create(record)
        for mode, record in modes.items():
            got = store.get(record.id)
            assert got is not None
            assert got.digest_mode == mode
            assert store.find_by_digest(record.digest) == got
        assert {r.digest_mode for r in store.list_keys()} == set(modes)
        record = modes["sha256"]
        assert store.update(record.id, {"name": "renamed"}).digest_mode == "sha256"
        with pytest.raises(ValueError, match="cannot be changed"):
            store.update(record.id, {"digest_mode": None})  # type: ignore[typeddict-unknown-key]

    def test_duplicate_id_or_digest_is_refused(self, store: KeyStore) -> None:
        record = make_record()
        store.create(record)
        with pytest.raises(DuplicateKey):
            store.create(make_record(id=record.id))
        with pytest.raises(DuplicateKey):
            store.create(make_record(digest=record.digest))
        assert store.get(record.id) == record

    def test_update_changes_only_what_it_names(self, store: KeyStore) -> None:
        record = make_record(owner="a", scopes={"read"})
        store.create(record)
        updated = store.update(record.id, {"disabled": True, "scopes": {"read", "admin"}})
        assert updated.disabled
        assert updated.scopes == {"read", "admin"}
        assert updated.owner == "a"
        assert updated.digest == record.digest
        assert store.get(record.id) == updated

    def test_update_clears_optional_fields(self, store: KeyStore) -> None:
        record = _full_record()
        store.create(record)
        cleared = store.update(
            record.id, {"expires_at": None, "rate_limit": None, "credits": None, "owner": None}
        )
        assert store.get(record.id) == cleared
        assert cleared.expires_at is None
        assert cleared.rate_limit is None
        assert cleared.credits is None

    def test_update_on_a_condition(self, store: KeyStore) -> None:
        record = make_record(owner="a")
        store.create(record)
        moved = store.update(record.id, {"owner": "b"}, expect={"owner": "a", "rotated_to": None})
        assert moved.owner == "b"
        with pytest.raises(Conflict):
            store.update(record.id, {"owner": "c"}, expect={"owner": "a"})
        with pytest.raises(Conflict):
            store.update(record.id, {"name": "x"}, expect={"revoked_at": None, "disabled": True})
        got = store.get(record.id)
        assert got == moved
        assert [r.id for r in store.list_keys(owner="b")] == [record.id]
        assert store.list_keys(owner="c") == []

    def test_only_one_of_two_racing_conditional_updates_wins(self, store: KeyStore) -> None:
        record = make_record()
        store.create(record)
        won: list[str] = []
        lost: list[str] = []
        barrier = threading.Barrier(8)

        def claim(name: str) -> None:
            barrier.wait()
            try:
                store.update(record.id, {"rotated_to": name}, expect={"rotated_to": None})
                won.append(name)
            except Conflict:
                lost.append(name)

        threads = [threading.Thread(target=claim, args=(f"succ{i:08d}",)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(won) == 1
        assert len(lost) == 7
        got = store.get(record.id)
        assert got is not None
        assert got.rotated_to == won[0]

    def test_updates_succeed_while_credits_are_spent(self, store: KeyStore) -> None:
        """Spending and usage write the record all the time: a revocation must still land."""
        record = make_record(credits=1_000_000)
        store.create(record)
        stop = threading.Event()
        when = datetime(2026, 4, 1, tzinfo=timezone.utc)

        def spend() -> None:
            while not stop.is_set():
                store.spend_credits(record.id)
                store.record_usage({record.id: Usage(1, when)})

        spenders = [threading.Thread(target=spend) for _ in range(3)]
        for t in spenders:
            t.start()
        try:
            for i in range(10):
                store.update(record.id, {"name": f"n{i}", "owner": f"o{i % 2}"})
            revoked = store.update(record.id, {"revoked_at": when})
        finally:
            stop.set()
            for t in spenders:
                t.join()
        assert revoked.revoked_at == when
        got = store.get(record.id)
        assert got is not None
        assert (got.revoked_at, got.name, got.owner) == (when, "n9", "o1")
        assert got.credits is not None
        assert got.credits + got.request_count == 1_000_000
        assert [r.id for r in store.list_keys(owner="o1")] == [record.id]
        assert store.list_keys(owner="o0") == []

    def test_update_unknown_raises_key_not_found(self, store: KeyStore) -> None:
        with pytest.raises(KeyNotFound):
            store.update("nosuchkeyid0", {"disabled": True})

    def test_update_refuses_fixed_fields(self, store: KeyStore) -> None:
        record = make_record()
        store.create(record)
        with pytest.raises(ValueError, match="cannot be changed"):
            store.update(record.id, {"digest": bytes(32)})  # type: ignore[typeddict-unknown-key]
        assert store.get(record.id) == record

    def test_a_rotation_line_is_kept_and_fixed(self, store: KeyStore) -> None:
        """A successor names the first key of its rotation line (``line``), which every
        read returns and no update changes: the line's keys share one rate-limit state."""
        first = make_record(owner="line")
        second = make_record(owner="line", line=first.id)
        store.create(first)
        store.create(second)
        assert store.get(first.id) == first
        assert first.line is None
        got = store.get(second.id)
        assert got is not None
        assert got.line == first.id
        assert store.find_by_digest(second.digest) == got
        assert [r.line for r in store.list_keys(owner="line")] == [
            r.line for r in sorted((first, second), key=lambda r: r.id)
        ]
        renamed = store.update(second.id, {"name": "renamed", "rotated_to": "third0000000"})
        assert renamed.line == first.id
        with pytest.raises(ValueError, match="cannot be changed"):
            store.update(second.id, {"line": None})  # type: ignore[typeddict-unknown-key]
        assert store.get(second.id) == renamed

    def test_revocation_is_an_update(self, store: KeyStore) -> None:
        record = make_record()
        store.create(record)
        when = datetime(2026, 3, 4, tzinfo=timezone.utc)
        store.update(record.id, {"revoked_at": when})
        got = store.get(record.id)
        assert got is not None
        assert got.revoked_at == when
        assert got.revoked

    def test_delete_removes_the_record_and_all_that_finds_it(self, store: KeyStore) -> None:
        store = _deleting(store)
        kept = make_record(owner="del")
        gone = make_record(owner="del", credits=5)
        store.create(kept)
        store.create(gone)
        assert store.delete(gone.id) == gone
        assert store.get(gone.id) is None
        assert store.find_by_digest(gone.digest) is None
        assert [r.id for r in store.list_keys()] == [kept.id]
        assert [r.id for r in store.list_keys(owner="del")] == [kept.id]
        assert store.get(kept.id) == kept
        # Gone for good: nothing acts on it, nothing brings it back...
        with pytest.raises(KeyNotFound):
            store.delete(gone.id)
        with pytest.raises(KeyNotFound):
            store.update(gone.id, {"name": "again"})
        with pytest.raises(KeyNotFound):
            store.spend_credits(gone.id)
        store.record_usage({gone.id: Usage(1, datetime(2026, 4, 1, tzinfo=timezone.utc))})
        assert store.get(gone.id) is None
        # ...and its id and digest are free again.
        store.create(gone)
        assert store.get(gone.id) == gone
        assert store.find_by_digest(gone.digest) == gone

    def test_delete_on_a_condition(self, store: KeyStore) -> None:
        store = _deleting(store)
        record = make_record(owner="a")
        store.create(record)
        with pytest.raises(Conflict):
            store.delete(record.id, expect={"rotated_to": "someone0000x"})
        assert store.get(record.id) == record
        assert store.delete(record.id, expect={"rotated_to": None, "owner": "a"}) == record
        assert store.get(record.id) is None
        assert store.list_keys(owner="a") == []

    def test_delete_unknown_raises_key_not_found(self, store: KeyStore) -> None:
        store = _deleting(store)
        with pytest.raises(KeyNotFound):
            store.delete("nosuchkeyid0")

    def test_list_is_ordered_paginated_and_filtered(self, store: KeyStore) -> None:
        mine = [make_record(owner="me") for _ in range(5)]
        others = [make_record(owner="them") for _ in range(3)]
        for r in mine + others:
            store.create(r)
        every = store.list_keys(limit=100)
        assert [r.id for r in every] == sorted(r.id for r in mine + others)
        page1 = list(store.list_keys(owner="me", limit=2))
        page2 = list(store.list_keys(owner="me", after=page1[-1].id, limit=2))
        page3 = list(store.list_keys(owner="me", after=page2[-1].id, limit=2))
        assert [r.id for r in page1 + page2 + page3] == sorted(r.id for r in mine)
        assert all(r.owner == "me" for r in page1 + page2 + page3)
        assert store.list_keys(owner="nobody") == []

    def test_concurrent_creates_and_updates_lose_nothing(self, store: KeyStore) -> None:
        records = [make_record(owner="race", credits=0) for _ in range(40)]
        errors: list[BaseException] = []

        def work(chunk: list[KeyRecord]) -> None:
            try:
                for r in chunk:
                    store.create(r)
                    store.update(r.id, {"name": f"renamed {r.id}"})
                    store.update(r.id, {"disabled": True})
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(records[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        for r in records:
            got = store.get(r.id)
            assert got is not None
            assert got.name == f"renamed {r.id}"
            assert got.disabled

    def test_timestamps_are_utc_and_exact_to_the_millisecond(self, store: KeyStore) -> None:
        odd = datetime(2026, 7, 8, 9, 10, 11, 123000, tzinfo=timezone(timedelta(hours=5)))
        record = make_record(expires_at=odd)
        store.create(record)
        got = store.get(record.id)
        assert got is not None
        assert got.expires_at == odd
        assert got.expires_at is not None
        assert got.expires_at.utcoffset() == timedelta(0)

    def test_spend_credits_counts_down_to_zero_and_stops(self, store: KeyStore) -> None:
        record = make_record(credits=3)
        unlimited = make_record()
        store.create(record)
        store.create(unlimited)
        assert store.spend_credits(record.id) == 2
        assert store.spend_credits(record.id, 2) == 0
        with pytest.raises(InsufficientCredits) as refused:
            store.spend_credits(record.id)
        assert refused.value.balance == 0
        got = store.get(record.id)
        assert got is not None
        assert got.credits == 0
        assert store.spend_credits(unlimited.id) is None
        assert store.get(unlimited.id) == unlimited
        with pytest.raises(KeyNotFound):
            store.spend_credits("nosuchkeyid0")
        with pytest.raises(ValueError, match="zero"):
            store.spend_credits(record.id, 0)
        assert store.spend_credits(record.id, -2) == 2  # a refund
        assert store.spend_credits(unlimited.id, -1) is None

    def test_spend_more_than_left_takes_nothing(self, store: KeyStore) -> None:
        record = make_record(credits=2)
        store.create(record)
        with pytest.raises(InsufficientCredits):
            store.spend_credits(record.id, 3)
        assert store.spend_credits(record.id, 2) == 0

    def test_concurrent_spending_never_overdraws(self, store: KeyStore) -> None:
        record = make_record(credits=25)
        store.create(record)
        spent: list[int] = []
        refused: list[int] = []
        errors: list[BaseException] = []

        def work() -> None:
            for _ in range(10):
                try:
                    store.spend_credits(record.id)
                    spent.append(1)
                except InsufficientCredits:  # noqa: PERF203
                    refused.append(1)
                except BaseException as exc:  # pragma: no cover - reported below
                    errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert (len(spent), len(refused)) == (25, 25)
        got = store.get(record.id)
        assert got is not None
        assert got.credits == 0

    # -- refills -------------------------------------------------------------------------------

    def test_a_due_refill_runs_once_in_the_spend(self, store: KeyStore) -> None:
        """A refill whose period began after its last run tops the balance up (to its amount,
        or by it with ``+``) in the same atomic step as the spend that finds it due, and
        then not again until the next period."""
        to = make_record(credits=1, refill=Refill(10, "day"), refilled_at=_LONG_AGO)
        add = make_record(credits=4, refill=Refill(5, "week", add=True), refilled_at=_LONG_AGO)
        fresh = make_record(credits=2, refill=Refill(10, "month"), refilled_at=utcnow())
        for record in (to, add, fresh):
            store.create(record)
        before = utcnow()
        assert store.spend_credits(to.id, 3) == 7
        assert store.spend_credits(to.id, 3) == 4  # not twice in a day
        got = store.get(to.id)
        assert got is not None
        assert got.refilled_at is not None
        assert got.refilled_at >= period_start("day", before)
        assert (got.credits, got.refill) == (4, Refill(10, "day"))
        assert store.spend_credits(add.id) == 8
        assert store.spend_credits(fresh.id) == 1  # it ran this month already

    def test_a_refused_spend_runs_no_refill(self, store: KeyStore) -> None:
        record = make_record(credits=0, refill=Refill(2, "day"), refilled_at=_LONG_AGO)
        store.create(record)
        with pytest.raises(InsufficientCredits):
            store.spend_credits(record.id, 5)
        assert store.get(record.id) == record
        assert store.spend_credits(record.id, 2) == 0

    def test_concurrent_spends_see_one_refill(self, store: KeyStore) -> None:
        record = make_record(credits=0, refill=Refill(30, "day"), refilled_at=_LONG_AGO)
        store.create(record)
        results: list[int | BaseException] = []

        def work() -> None:
            for _ in range(8):
                try:
                    results.append(store.spend_credits(record.id) or 0)
                except BaseException as exc:  # noqa: PERF203
                    results.append(exc)

        threads = [threading.Thread(target=work) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(isinstance(r, int) for r in results) == 30
        assert all(isinstance(r, int | InsufficientCredits) for r in results)
        got = store.get(record.id)
        assert got is not None
        assert got.credits == 0

    # -- accounts -------------------------------------------------------------------------------

    def test_an_account_is_made_by_its_first_change_and_round_trips(self, store: KeyStore) -> None:
        accounts = _accounts(store)
        owner = _owner()
        assert accounts.get_account(owner) is None
        made = accounts.update_account(owner, {"credits": 3})
        assert made == AccountRecord(owner, credits=3)
        assert accounts.get_account(owner) == made
        when = datetime(2026, 3, 4, 5, 6, 7, 8000, tzinfo=timezone.utc)
        every = accounts.update_account(
            owner,
            {
                "disabled": True,
                "rate_limit": (Rate(10, 60.0), Rate(1000, 86400.0, burst=50)),
                "refill": Refill(100, "month", add=True),
                "refilled_at": when,
            },
        )
        assert every == AccountRecord(
            owner, True, 3, (Rate(10, 60.0), Rate(1000, 86400.0, burst=50)),
            Refill(100, "month", add=True), when,
        )  # fmt: skip
        assert accounts.get_account(owner) == every
        cleared = accounts.update_account(
            owner, {"disabled": False, "credits": None, "rate_limit": None, "refill": None}
        )
        assert cleared == AccountRecord(owner, refilled_at=when)
        assert accounts.get_account(owner) == cleared
        odd = "owner with spaces, {braces} and ünïcode@example.com"
        assert accounts.update_account(odd, {"disabled": True}).owner == odd
        assert accounts.get_account(odd) == AccountRecord(odd, disabled=True)

    def test_account_credits_are_spent_like_a_keys(self, store: KeyStore) -> None:
        accounts = _accounts(store)
        owner, plain = _owner(), _owner()
        assert accounts.spend_account_credits(owner) is None  # no record: nothing taken
        accounts.update_account(owner, {"credits": 3})
        accounts.update_account(plain, {"disabled": False})
        assert accounts.spend_account_credits(plain) is None  # no balance: nothing taken
        assert accounts.spend_account_credits(owner, 2) == 1
        with pytest.raises(InsufficientCredits) as refused:
            accounts.spend_account_credits(owner, 2)
        assert refused.value.balance == 1
        assert accounts.spend_account_credits(owner, -4) == 5  # a refund
        with pytest.raises(ValueError, match="zero"):
            accounts.spend_account_credits(owner, 0)
        got = accounts.get_account(owner)
        assert got is not None
        assert got.credits == 5

    def test_an_account_refill_runs_once_in_the_spend(self, store: KeyStore) -> None:
        accounts = _accounts(store)
        owner = _owner()
        accounts.update_account(
            owner, {"credits": 0, "refill": Refill(4, "day"), "refilled_at": _LONG_AGO}
        )
        assert accounts.spend_account_credits(owner) == 3
        assert accounts.spend_account_credits(owner) == 2
        got = accounts.get_account(owner)
        assert got is not None
        assert got.refilled_at is not None
        assert got.refilled_at > _LONG_AGO

    def test_concurrent_account_spending_never_overdraws(self, store: KeyStore) -> None:
        accounts = _accounts(store)
        owner = _owner()
        accounts.update_account(owner, {"credits": 20})
        results: list[object] = []

        def work() -> None:
            for _ in range(8):
                try:
                    results.append(accounts.spend_account_credits(owner))
                except InsufficientCredits as exc:  # noqa: PERF203
                    results.append(exc)

        threads = [threading.Thread(target=work) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(isinstance(r, int) for r in results) == 20
        assert sum(isinstance(r, InsufficientCredits) for r in results) == 20
        got = accounts.get_account(owner)
        assert got is not None
        assert got.credits == 0

    def test_spends_do_not_undo_account_changes(self, store: KeyStore) -> None:
        """An account change and concurrent spends each keep what the other wrote."""
        accounts = _accounts(store)
        owner = _owner()
        accounts.update_account(owner, {"credits": 1000})
        stop = threading.Event()

        def spend() -> None:
            with contextlib.suppress(InsufficientCredits):
                while not stop.is_set():
                    accounts.spend_account_credits(owner)

        spender = threading.Thread(target=spend)
        spender.start()
        try:
            for i in range(20):
                accounts.update_account(owner, {"disabled": i % 2 == 0})
        finally:
            stop.set()
            spender.join()
        got = accounts.get_account(owner)
        assert got is not None
        assert got.disabled is False
        assert got.credits is not None
        assert 0 <= got.credits < 1000

    def test_record_usage_adds_counts_and_moves_last_used_forward(self, store: KeyStore) -> None:
        early = datetime(2026, 4, 1, 12, 0, 0, tzinfo=timezone.utc)
        late = datetime(2026, 4, 1, 12, 0, 0, 500000, tzinfo=timezone.utc)
        a, b = make_record(), make_record(last_used_at=late, request_count=5)
        store.create(a)
        store.create(b)
        store.record_usage(
            {a.id: Usage(3, early), b.id: Usage(2, early), "nosuchkeyid0": Usage(1, early)}
        )
        store.record_usage({a.id: Usage(4, late)})
        store.record_usage({})
        got_a, got_b = store.get(a.id), store.get(b.id)
        assert got_a is not None
        assert got_b is not None
        assert (got_a.request_count, got_a.last_used_at) == (7, late)
        assert (got_b.request_count, got_b.last_used_at) == (7, late)
        assert store.get("nosuchkeyid0") is None

    def test_usage_and_updates_do_not_overwrite_each_other(self, store: KeyStore) -> None:
        record = make_record(credits=100)
        store.create(record)
        when = datetime(2026, 4, 1, tzinfo=timezone.utc)

        def use() -> None:
            for _ in range(20):
                store.record_usage({record.id: Usage(1, when)})
                store.spend_credits(record.id)

        def rename() -> None:
            for i in range(20):
                store.update(record.id, {"name": f"n{i}"})

        threads = [threading.Thread(target=use), threading.Thread(target=rename)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = store.get(record.id)
        assert got is not None
        assert (got.request_count, got.credits, got.name) == (20, 80, "n19")

    def test_usage_history_counts_requests_per_utc_day_and_route(self, store: KeyStore) -> None:
        store = _history(store)
        a, b = make_record(), make_record()
        store.create(a)
        store.create(b)
        morning = datetime(2026, 4, 1, 9, tzinfo=timezone.utc)
        # 02:00 at +05:00 on April 2 is still April 1 in UTC.
        late = datetime(2026, 4, 2, 2, tzinfo=timezone(timedelta(hours=5)))
        next_day = datetime(2026, 4, 2, 12, tzinfo=timezone.utc)
        store.record_usage(
            {a.id: Usage(3, morning), b.id: Usage(1, morning), "nosuchkeyid0": Usage(9, morning)},
            {a.id: {"/items": 2}, "nosuchkeyid0": {"/items": 9}},
        )
        store.record_usage({a.id: Usage(2, late)}, {a.id: {"/items": 1, _ODD_ROUTE: 1}})
        store.record_usage({a.id: Usage(4, next_day)}, {a.id: {_ODD_ROUTE: 3}})
        store.record_usage({a.id: Usage(1, next_day)})  # routes unknown: counted in the day
        read = store.usage_history([a.id, b.id, "nosuchkeyid0"], _DAY)
        assert _days(read, a.id) == {
            _DAY: (5, {"/items": 3, _ODD_ROUTE: 1}),
            date(2026, 4, 2): (5, {_ODD_ROUTE: 3}),
        }
        assert _days(read, b.id) == {_DAY: (1, {})}
        assert _days(read, "nosuchkeyid0") == {}
        # From a later day on, the earlier one is left out.
        assert _days(store.usage_history([a.id], date(2026, 4, 2)), a.id) == {
            date(2026, 4, 2): (5, {_ODD_ROUTE: 3})
        }
        assert not any(store.usage_history([], _DAY).values())
        # The totals of the record itself go on as before.
        got = store.get(a.id)
        assert got is not None
        assert (got.request_count, got.last_used_at) == (10, next_day)

    def test_usage_history_drops_days_past_the_retention(self, store: KeyStore) -> None:
        store = _history(store)
        record = make_record()
        store.create(record)
        for offset in (0, 1, 2):
            when = datetime(2026, 4, 1, 12, tzinfo=timezone.utc) + timedelta(days=offset)
            store.record_usage({record.id: Usage(offset + 1, when)}, retention_days=30)
        assert set(_days(store.usage_history([record.id], _DAY), record.id)) == {
            _DAY + timedelta(days=i) for i in range(3)
        }
        # Five days on, with two days kept: only the last two (and the new one) are left.
        later = datetime(2026, 4, 5, 12, tzinfo=timezone.utc)
        store.record_usage({record.id: Usage(7, later)}, {record.id: {"/x": 7}}, retention_days=2)
        since = date(2026, 3, 1)
        assert _days(store.usage_history([record.id], since), record.id) == {
            date(2026, 4, 3): (3, {}),
            date(2026, 4, 5): (7, {"/x": 7}),
        }

    def test_usage_history_adds_up_under_concurrency(self, store: KeyStore) -> None:
        store = _history(store)
        record = make_record()
        store.create(record)
        when = datetime(2026, 4, 1, 12, tzinfo=timezone.utc)
        errors: list[BaseException] = []

        def flush() -> None:
            try:
                for _ in range(10):
                    store.record_usage({record.id: Usage(2, when)}, {record.id: {"/r": 1}})
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=flush) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert _days(store.usage_history([record.id], _DAY), record.id) == {_DAY: (80, {"/r": 40})}

    def test_usage_history_goes_with_a_deleted_key(self, store: KeyStore) -> None:
        store = _history(store)
        if not isinstance(store, DeletingKeyStore):
            pytest.skip("the store has no delete (optional: DeletingKeyStore)")
        record = make_record()
        store.create(record)
        store.record_usage(
            {record.id: Usage(2, datetime(2026, 4, 1, tzinfo=timezone.utc))}, {record.id: {"/": 2}}
        )
        store.delete(record.id)
        store.create(record)  # the same id again: a key with no past
        assert _days(store.usage_history([record.id], _DAY), record.id) == {}


class AsyncKeyStoreContract:
    """The async face. Subclass it and provide a ``store`` fixture (a fresh, empty store)."""

    @pytest.fixture
    def store(self) -> AsyncKeyStore:
        raise NotImplementedError("define a `store` fixture returning your store")

    @staticmethod
    def run(test: Callable[[], Awaitable[T]]) -> T:
        return asyncio.run(test())  # type: ignore[arg-type]

    def test_is_an_async_key_store(self, store: AsyncKeyStore) -> None:
        assert isinstance(store, AsyncKeyStore)

    def test_round_trip(self, store: AsyncKeyStore) -> None:
        async def test() -> None:
            record = _full_record()
            assert await store.aget(record.id) is None
            await store.acreate(record)
            assert await store.aget(record.id) == record
            assert await store.afind_by_digest(record.digest) == record
            with pytest.raises(DuplicateKey):
                await store.acreate(make_record(id=record.id))
            await store.aclose()

        self.run(test)

    def test_update_and_list(self, store: AsyncKeyStore) -> None:
        async def test() -> None:
            records = [make_record(owner="async") for _ in range(4)]
            for r in records:
                await store.acreate(r)
            updated = await store.aupdate(records[0].id, {"disabled": True, "name": "x"})
            assert updated.disabled
            assert await store.aget(records[0].id) == updated
            with pytest.raises(KeyNotFound):
                await store.aupdate("nosuchkeyid0", {"disabled": True})
            listed = await store.alist_keys(owner="async", limit=3)
            assert [r.id for r in listed] == sorted(r.id for r in records)[:3]
            await store.aclose()

        self.run(test)

    def test_delete(self, store: AsyncKeyStore) -> None:
        store = _adeleting(store)

        async def test() -> None:
            kept, gone = make_record(owner="adel"), make_record(owner="adel")
            await store.acreate(kept)
            await store.acreate(gone)
            with pytest.raises(Conflict):
                await store.adelete(gone.id, expect={"disabled": True})
            assert await store.adelete(gone.id) == gone
            assert await store.aget(gone.id) is None
            assert await store.afind_by_digest(gone.digest) is None
            assert [r.id for r in await store.alist_keys(owner="adel")] == [kept.id]
            with pytest.raises(KeyNotFound):
                await store.adelete(gone.id)
            await store.aclose()

        self.run(test)

    def test_concurrent_updates_lose_nothing(self, store: AsyncKeyStore) -> None:
        async def test() -> None:
            records = [make_record(owner="arace") for _ in range(20)]
            await asyncio.gather(*(store.acreate(r) for r in records))
            await asyncio.gather(*(store.aupdate(r.id, {"name": "n" + r.id}) for r in records))
            got = await asyncio.gather(*(store.aget(r.id) for r in records))
            assert [g.name if g else None for g in got] == ["n" + r.id for r in records]
            await store.aclose()

        self.run(test)

    def test_credits_and_usage(self, store: AsyncKeyStore) -> None:
        async def test() -> None:
            record = make_record(credits=30)
            await store.acreate(record)
            results = await asyncio.gather(
                *(store.aspend_credits(record.id) for _ in range(40)), return_exceptions=True
            )
            assert sum(isinstance(r, int) for r in results) == 30
            assert sum(isinstance(r, InsufficientCredits) for r in results) == 10
            when = datetime(2026, 4, 1, tzinfo=timezone.utc)
            await store.arecord_usage({record.id: Usage(6, when)})
            got = await store.aget(record.id)
            assert got is not None
            assert (got.credits, got.request_count, got.last_used_at) == (0, 6, when)
            await store.aclose()

        self.run(test)

    def test_usage_history(self, store: AsyncKeyStore) -> None:
        store = _ahistory(store)

        async def test() -> None:
            record = make_record()
            await store.acreate(record)
            when = datetime(2026, 4, 1, 23, 59, 59, tzinfo=timezone.utc)
            await store.arecord_usage({record.id: Usage(4, when)}, {record.id: {"/a": 3}})
            await store.arecord_usage(
                {record.id: Usage(1, when + timedelta(seconds=1))}, retention_days=5
            )
            read = await store.ausage_history([record.id], _DAY)
            assert _days(read, record.id) == {_DAY: (4, {"/a": 3}), date(2026, 4, 2): (1, {})}
            await store.aclose()

        self.run(test)

    def test_accounts_and_refills(self, store: AsyncKeyStore) -> None:
        accounts = _aaccounts(store)

        async def test() -> None:
            owner = _owner()
            assert await accounts.aget_account(owner) is None
            made = await accounts.aupdate_account(
                owner, {"credits": 0, "refill": Refill(25, "day"), "refilled_at": _LONG_AGO}
            )
            assert await accounts.aget_account(owner) == made
            results = await asyncio.gather(
                *(accounts.aspend_account_credits(owner) for _ in range(30)),
                return_exceptions=True,
            )
            assert sum(isinstance(r, int) for r in results) == 25
            assert sum(isinstance(r, InsufficientCredits) for r in results) == 5
            record = make_record(credits=0, refill=Refill(3, "week"), refilled_at=_LONG_AGO)
            await store.acreate(record)
            assert await store.aspend_credits(record.id, 2) == 1
            assert await accounts.aspend_account_credits(_owner()) is None
            await store.aclose()

        self.run(test)

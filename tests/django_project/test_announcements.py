"""Changes made inside a transaction (the admin's views, ATOMIC_REQUESTS) are announced to
other processes after the commit, when they can see them, not before."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.test import override_settings

from keysentry.accounts import AccountRecord
from keysentry.django.conf import guard

from . import settings as test_settings


class Recorder:
    """An invalidator that records what it is asked to announce."""

    def __init__(self) -> None:
        self.published: list[str] = []

    def start(self, *, cache: Any) -> None:
        pass

    def publish(self, key_id: str, digest: bytes | None = None) -> int:
        self.published.append(key_id)
        return 1

    async def apublish(self, key_id: str, digest: bytes | None = None) -> int:
        return self.publish(key_id, digest)

    def publish_account(self, owner: str) -> int:
        self.published.append(f"account {owner}")
        return 1

    def close(self) -> None:
        pass


def test_a_change_in_a_transaction_is_announced_after_the_commit() -> None:
    recorder = Recorder()
    options = {**test_settings.SETTINGS["KEYSENTRY"], "INVALIDATOR": recorder}
    with override_settings(KEYSENTRY=options):
        ks = guard()
        first, second = ks.issue(name="a"), ks.issue(name="b")
        with transaction.atomic():
            ks.revoke(first.record.id)
            assert recorder.published == []
        assert recorder.published == [first.record.id]
        with transaction.atomic():
            ks.disable(second.record.id)
            transaction.set_rollback(True)
        assert recorder.published == [first.record.id]  # rolled back: nothing to announce
        assert not ks.get(second.record.id).disabled
        ks.disable(second.record.id)  # outside a transaction: at once
        assert recorder.published == [first.record.id, second.record.id]


def test_an_account_changed_in_a_transaction_is_announced_after_the_commit() -> None:
    recorder = Recorder()
    options = {**test_settings.SETTINGS["KEYSENTRY"], "INVALIDATOR": recorder}
    with override_settings(KEYSENTRY=options):
        ks = guard()
        with transaction.atomic():
            ks.update_account("acct_t", credits=5)
            assert recorder.published == []
        assert recorder.published == ["account acct_t"]
        with transaction.atomic():
            ks.disable_account("acct_t")
            transaction.set_rollback(True)
        assert recorder.published == ["account acct_t"]
        assert ks.account("acct_t") == AccountRecord("acct_t", credits=5)
        ks.disable_account("acct_t")
        assert recorder.published == ["account acct_t", "account acct_t"]

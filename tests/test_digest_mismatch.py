"""A key created under one digest secret and presented to an app under another (or none):
the client gets a plain 401, and the operator one warning naming the key id and the likely
cause, never the key, a digest or a secret."""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from zlib import crc32

import pytest

from keysentry import Keysentry, MemoryStore
from keysentry.keys import ALPHABET, SECRET_LENGTH
from keysentry.mismatches import DigestMismatches

from .apps import Client

CREATOR_SECRET = "the-secret-keys-were-made-with-0123"
OTHER_SECRET = "another-apps-secret-456789abcdef"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "keysentry" and r.levelno == logging.WARNING
    ]


def _forged(key_id: str, prefix: str = "sk_live") -> str:
    """A well-formed key (valid checksum) for a known id, with a secret nobody issued."""
    body = "".join(secrets.choice(ALPHABET) for _ in range(SECRET_LENGTH))
    head = f"{prefix}_{key_id}{body}".encode()
    return (head + b"%08x" % crc32(head)).decode()


def _ask(client: Client, key: str) -> tuple[int, str | None]:
    r = client.get("/", {"Authorization": f"Bearer {key}"})
    return r.status, r.code


def _nothing_secret_in(text: str, key: str, *secrets_: str | None) -> None:
    assert key not in text
    assert key[20:45] not in text  # nor any stretch of its secret part
    for secret in secrets_:
        if secret is not None:
            assert secret not in text


MISMATCHES = [
    pytest.param(
        CREATOR_SECRET,
        None,
        "its record was digested with a secret (hmac-sha256) and this app has none "
        "(sha256): give it the KEYSENTRY_SECRET the key was created with",
        id="secret-then-none",
    ),
    pytest.param(
        None,
        CREATOR_SECRET,
        "its record was digested without a secret (sha256) and this app digests with one "
        "(hmac-sha256): was the key created where KEYSENTRY_SECRET was not set?",
        id="none-then-secret",
    ),
    pytest.param(
        CREATOR_SECRET,
        OTHER_SECRET,
        "both its record and this app digest with a secret (hmac-sha256): was the key "
        "created under another KEYSENTRY_SECRET? (or a wrong key was presented)",
        id="another-secret",
    ),
]


@pytest.mark.parametrize("framework", ["starlette", "flask"])
@pytest.mark.parametrize(("made_with", "app_with", "cause"), MISMATCHES)
def test_a_key_made_under_another_secret_is_refused_with_one_warning(
    framework: str,
    made_with: str | None,
    app_with: str | None,
    cause: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="keysentry")
    store = MemoryStore()
    issued = Keysentry(store, secret=made_with, usage_interval=None).issue(name="elsewhere")
    key, record = issued.key.reveal(), issued.record
    app = Keysentry(store, secret=app_with, usage_interval=None)
    client = Client(framework, app)

    r = client.get("/", {"X-API-Key": key})
    assert (r.status, r.code) == (401, "INVALID_API_KEY")
    assert "secret" not in str(r.body).lower()  # the client is told nothing more
    assert _warnings(caplog) == [
        f"key {record.id} was refused: the key presented does not match its stored digest; " + cause
    ]
    # Asked again, from the cache and from the store: still the one warning.
    assert _ask(client, key) == (401, "INVALID_API_KEY")
    app.invalidate(record)
    assert _ask(client, key) == (401, "INVALID_API_KEY")
    assert len(_warnings(caplog)) == 1
    _nothing_secret_in(caplog.text, key, made_with, app_with, record.digest.hex())


def test_no_warning_where_no_secret_can_be_the_cause(caplog: pytest.LogCaptureFixture) -> None:
    """Unknown ids, revoked keys, valid keys, and a wrong key where neither side has a
    secret: nothing to configure, nothing logged."""
    caplog.set_level(logging.DEBUG, logger="keysentry")
    store = MemoryStore()
    plain = Keysentry(store, usage_interval=None)
    client = Client("starlette", plain)
    valid = plain.issue(name="valid")
    revoked = plain.issue(name="revoked")
    plain.revoke(revoked.record.id)
    assert _ask(client, valid.key.reveal()) == (200, None)
    assert _ask(client, revoked.key.reveal()) == (401, "INVALID_API_KEY")
    assert _ask(client, _forged("nosuchkeyid0")) == (401, "INVALID_API_KEY")
    assert _ask(client, _forged(valid.record.id)) == (401, "INVALID_API_KEY")
    assert _warnings(caplog) == []

    # The same wrong key under a guard with a secret is worth a warning: the record says
    # it was made without one.
    keyed = Keysentry(store, secret=CREATOR_SECRET, usage_interval=None)
    wrong = _forged(valid.record.id)
    assert _ask(Client("flask", keyed), wrong) == (401, "INVALID_API_KEY")
    (line,) = _warnings(caplog)
    assert line.startswith(f"key {valid.record.id} was refused")
    _nothing_secret_in(caplog.text, wrong, CREATOR_SECRET)


def test_one_warning_per_key_id_and_each_key_its_own(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="keysentry")
    store = MemoryStore()
    maker = Keysentry(store, secret=CREATOR_SECRET, usage_interval=None)
    first, second = maker.issue(name="first"), maker.issue(name="second")
    app = Keysentry(store, secret=OTHER_SECRET, usage_interval=None)
    client = Client("starlette", app)
    assert _ask(client, first.key.reveal()) == (401, "INVALID_API_KEY")
    assert [line.split()[1] for line in _warnings(caplog)] == [first.record.id]
    # Past a review of the refusals (at most four a second), the first key again and the
    # second one for the first time: only the second is new.
    time.sleep(0.3)
    for _ in range(3):
        app.invalidate(first.record)  # each request a store lookup, as after a cache expiry
        assert _ask(client, first.key.reveal()) == (401, "INVALID_API_KEY")
    assert _ask(client, second.key.reveal()) == (401, "INVALID_API_KEY")
    time.sleep(0.3)
    app.invalidate(first.record)
    assert _ask(client, first.key.reveal()) == (401, "INVALID_API_KEY")  # reviews the rest
    assert [line.split()[1] for line in _warnings(caplog)] == [first.record.id, second.record.id]


def test_a_record_from_before_the_digest_mode_gets_a_warning_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="keysentry")
    store = MemoryStore()
    issued = Keysentry(store, secret=CREATOR_SECRET, usage_interval=None).issue(name="old")
    old = dataclasses.replace(issued.record, digest_mode=None)  # as an older release stored it
    store = MemoryStore([old])
    app = Keysentry(store, usage_interval=None)
    assert _ask(Client("flask", app), issued.key.reveal()) == (401, "INVALID_API_KEY")
    assert _warnings(caplog) == [
        f"key {old.id} was refused: the key presented does not match its stored digest; its "
        "record does not say how it was digested, and this app digests without a secret "
        "(sha256): was the key created under another KEYSENTRY_SECRET, or with one?"
    ]


def test_the_ids_remembered_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    """Past ``most`` ids, the oldest is forgotten (and may be warned about again)."""
    caplog.set_level(logging.DEBUG, logger="keysentry")
    store = MemoryStore()
    maker = Keysentry(store, secret=CREATOR_SECRET, usage_interval=None)
    records = [maker.issue(name=str(i)).record for i in range(3)]
    mismatches = DigestMismatches("sha256", review_every=0.0, most=2)
    for record in [*records, records[2], records[0]]:
        mismatches.note(record.id.encode(), record, bytes(32))
    ids = [line.split()[1] for line in _warnings(caplog)]
    assert ids == [records[0].id, records[1].id, records[2].id, records[0].id]

"""SPEC §3 and §9: a key is shown once, at creation, and nowhere after.

No log line, exception message, ``repr()`` or pickle carries a key, whatever the request path
did with it: accepted, refused as garbage, too long, unknown, revoked, or stuck on a store
that is down. Nor does anything print the server's digest secret.
"""

from __future__ import annotations

import logging
import pickle
import secrets
from datetime import timedelta

import pytest

from keysentry import (
    Denial,
    DuplicateKey,
    ImportedFormat,
    InvalidKeyFormat,
    KeyNotFound,
    KeyRecord,
    Keysentry,
    MemoryStore,
    StoreUnavailable,
)
from keysentry.records import utcnow

from .apps import Client
from .conftest import SECRET


def _secret_part(key: str) -> str:
    return key.rsplit("_", 1)[1][12:45]


def _assert_nowhere(text: str, *keys: str) -> None:
    for key in keys:
        assert key not in text
        assert _secret_part(key) not in text


@pytest.fixture
def everything_logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def test_no_key_reaches_a_log_line(
    client: Client, ks: Keysentry, everything_logged: pytest.LogCaptureFixture
) -> None:
    valid = ks.issue(name="valid").key.reveal()
    revoked = ks.issue(name="revoked")
    ks.revoke(revoked.record.id)
    expired = ks.issue(name="expired", expires_at=utcnow() - timedelta(seconds=1))
    disabled = ks.issue(name="disabled")
    ks.store.update(disabled.record.id, {"disabled": True})  # type: ignore[union-attr]
    unknown = ks.new_key(name="never stored").key.reveal()
    typo = valid[:-1] + ("0" if valid[-1] != "0" else "1")  # the secret part intact

    requests = [
        ({"Authorization": f"Bearer {valid}"}, 200),
        ({"X-API-Key": valid}, 200),
        ({"X-API-Key": typo}, 401),
        ({"Authorization": valid}, 401),
        ({"X-API-Key": f"Bearer {valid}"}, 401),
        ({"X-API-Key": valid * 200}, 401),
        ({"X-API-Key": unknown}, 401),
        ({"X-API-Key": revoked.key.reveal()}, 401),
        ({"X-API-Key": expired.key.reveal()}, 401),
        ({"X-API-Key": disabled.key.reveal()}, 403),
        ({"Authorization": f"Bearer {valid}", "X-API-Key": unknown}, 400),
    ]
    for headers, status in requests:
        assert client.get("/", headers).status == status

    keys = (valid, unknown, revoked.key.reveal(), expired.key.reveal(), disabled.key.reveal())
    _assert_nowhere(everything_logged.text, *keys)
    assert SECRET not in everything_logged.text


class DownStore(MemoryStore):
    """Holds keys but cannot be reached when asked for one."""

    def get(self, key_id: str) -> KeyRecord | None:
        raise StoreUnavailable("timed out after 0.25 s talking to 10.0.0.5:6379")

    def find_by_digest(self, digest: bytes) -> KeyRecord | None:
        raise StoreUnavailable("timed out after 0.25 s talking to 10.0.0.5:6379")

    async def aget(self, key_id: str) -> KeyRecord | None:
        return self.get(key_id)

    async def afind_by_digest(self, digest: bytes) -> KeyRecord | None:
        return self.find_by_digest(digest)


def test_store_down_is_503_and_logged_without_the_key(
    client: Client, everything_logged: pytest.LogCaptureFixture
) -> None:
    grx = ImportedFormat("grx_sk_", length=48, alphabet="0123456789abcdef")
    ks = Keysentry(DownStore(), secret=SECRET, retry_after=7, imported=[grx])
    key = ks.issue(name="unreachable").key.reveal()
    imported = "grx_sk_" + secrets.token_hex(24)
    ks.import_key(imported)
    c = Client(client.framework, ks)

    for token in (key, imported):
        r = c.get("/", {"Authorization": f"Bearer {token}"})
        assert (r.status, r.code) == (503, "AUTH_UNAVAILABLE")
        assert r.headers["Retry-After"] == "7"
        assert "WWW-Authenticate" not in r.headers

    warnings = [rec for rec in everything_logged.records if rec.name == "keysentry"]
    assert len(warnings) == 1  # an outage is logged once per retry_after, not per request
    assert all(rec.levelno == logging.WARNING for rec in warnings)
    assert "unavailable" in warnings[0].getMessage()
    assert "10.0.0.5:6379" in everything_logged.text  # the cause is logged, with its traceback
    _assert_nowhere(everything_logged.text, key)
    assert imported not in everything_logged.text
    assert imported[7:] not in everything_logged.text


def test_repr_and_str_mask_the_key(ks: Keysentry) -> None:
    issued = ks.issue(name="shown once", owner="acct_1", metadata={"plan": "pro"})
    key = issued.key.reveal()
    verdict = ks.authenticate(key.encode())
    assert not isinstance(verdict, Denial)
    refusals = [
        ks.authenticate(key[:-1].encode() + b"x"),
        ks.authenticate((key * 10).encode()),
        ks.settings.reader.read(f"Bearer {key}".encode(), b"other"),
        ks.settings.reader.read(key.encode(), None),
    ]
    assert all(isinstance(d, Denial) for d in refusals)
    for thing in (issued.key, issued, issued.record, ks, verdict, verdict.identity, *refusals):
        for text in (repr(thing), str(thing), f"{thing}", format(thing)):
            _assert_nowhere(text, key)
            assert SECRET not in text
    assert issued.record.id in repr(issued.key)
    assert repr(issued.key) == f"SecretKey('{issued.record.prefix}...')"


def test_library_exceptions_do_not_carry_the_key(store: MemoryStore) -> None:
    grx = ImportedFormat("grx_sk_", length=48, alphabet="0123456789abcdef")
    ks = Keysentry(store, secret=SECRET, imported=[grx])
    key = ks.issue(name="k").key.reveal()
    imported = "grx_sk_" + secrets.token_hex(24)
    ks.import_key(imported)

    with pytest.raises(InvalidKeyFormat) as bad_import:
        ks.import_key(imported[:-1])
    with pytest.raises(InvalidKeyFormat) as native_import:
        ks.import_key(key)
    with pytest.raises(DuplicateKey) as duplicate:
        ks.import_key(imported)
    with pytest.raises(KeyNotFound) as unknown_id:
        ks.revoke("nosuchkeyid0")
    # A key passed where its id belongs, a common slip: the refusal must not echo it.
    with pytest.raises(KeyNotFound) as key_for_id:
        ks.revoke(key)
    with pytest.raises(KeyNotFound) as imported_for_id:
        ks.revoke(imported)

    for raised in (bad_import, native_import, duplicate, unknown_id, key_for_id, imported_for_id):
        text = f"{raised.value} {raised.value!r} {raised.value.args}"
        _assert_nowhere(text, key)
        assert imported[: len("grx_sk_") + 12] not in text


def test_a_secret_key_is_not_pickled(ks: Keysentry) -> None:
    issued = ks.issue(name="k")
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(issued.key)
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(issued)


def test_no_repr_on_the_request_path_shows_a_tag_or_a_digest() -> None:
    """The warm-hit tag and the digests are secrets of the process: neither a cache entry, a
    verdict, a pending lookup nor the guard prints them."""
    from keysentry import Keysentry, MemoryStore
    from keysentry.decision import Entry, Lookup, Verdict

    ks = Keysentry(MemoryStore(), secret="s" * 32, usage_interval=None)
    issued = ks.issue(name="k")
    token = issued.key.reveal().encode()
    pending = ks._pipeline.check(token)
    assert isinstance(pending, Lookup)
    assert isinstance(ks.authenticate(token), Verdict)
    entry = ks.cache.get(issued.record.id.encode())
    assert isinstance(entry, Entry)
    assert entry.verdict is not None
    secrets_ = [entry.tag, entry.digest, issued.record.digest, pending.digest]
    for shown in map(repr, (entry, entry.verdict, pending, ks, ks.cache, issued.record)):
        for value in secrets_:
            assert repr(value) not in shown, shown
            assert value.hex() not in shown, shown

"""SPEC §3: the key format. What a minted key looks like, what the parser accepts, and how the
digest ties a key to the server secret it was minted under."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keysentry import Denial, ImportedFormat, InvalidKeyFormat, Keysentry, MemoryStore
from keysentry.keys import (
    ALPHABET,
    BODY_LENGTH,
    CHECKSUM_LENGTH,
    KEY_ID_LENGTH,
    SECRET_LENGTH,
    KeyFormat,
)

from .apps import Client
from .conftest import SECRET

URL_SAFE = frozenset(string.ascii_letters + string.digits + "-_")


def _secret_part(key: str) -> str:
    body = key.rsplit("_", 1)[1]
    return body[KEY_ID_LENGTH : KEY_ID_LENGTH + SECRET_LENGTH]


def test_secret_part_carries_at_least_192_bits() -> None:
    assert len(set(ALPHABET)) == len(ALPHABET) == 62
    assert SECRET_LENGTH * math.log2(len(ALPHABET)) >= 192
    assert KEY_ID_LENGTH + SECRET_LENGTH + CHECKSUM_LENGTH == BODY_LENGTH


def test_minted_keys_have_the_prefix_and_only_url_safe_characters(ks: Keysentry) -> None:
    for _ in range(50):
        issued = ks.issue(name="k")
        key = issued.key.reveal()
        assert key.startswith("sk_live_")
        assert len(key) == len("sk_live_") + BODY_LENGTH
        assert set(key) <= URL_SAFE
        assert key.rsplit("_", 1)[1].isalnum()
        assert issued.record.prefix == issued.key.public == f"sk_live_{issued.record.id}"
        assert key.startswith(issued.record.prefix)


def test_configured_prefix_is_used(store: MemoryStore) -> None:
    ks = Keysentry(store, secret=SECRET, prefix="sk_test")
    assert ks.issue().key.reveal().startswith("sk_test_")
    assert ks.issue(prefix="grx_sk").key.reveal().startswith("grx_sk_")


def test_minted_keys_are_distinct_and_use_the_whole_alphabet(ks: Keysentry) -> None:
    keys = [ks.new_key().key.reveal() for _ in range(1000)]
    assert len(set(keys)) == 1000
    assert len({k.rsplit("_", 1)[1][:KEY_ID_LENGTH] for k in keys}) == 1000
    secrets_ = [_secret_part(k) for k in keys]
    assert len(set(secrets_)) == 1000
    assert all(len(s) == SECRET_LENGTH for s in secrets_)
    # 33 000 characters drawn from 62: a generator narrower than the alphabet shows here.
    assert set("".join(secrets_)) == set(ALPHABET)


@pytest.fixture(scope="module")
def minted() -> tuple[Keysentry, bytes]:
    ks = Keysentry(MemoryStore(), secret=SECRET)
    return ks, ks.issue(name="typo target").key.reveal().encode()


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_single_character_change_is_refused(
    minted: tuple[Keysentry, bytes], data: st.DataObject
) -> None:
    ks, key = minted
    position = data.draw(st.integers(0, len(key) - 1), label="position")
    replacement = data.draw(st.integers(0, 255).filter(lambda b: b != key[position]))
    changed = key[:position] + bytes([replacement]) + key[position + 1 :]
    assert isinstance(ks.settings.format.identify(changed), Denial)
    verdict = ks.authenticate(changed)
    assert isinstance(verdict, Denial)
    assert verdict.code == "INVALID_API_KEY"
    assert not isinstance(ks.authenticate(key), Denial)


FORMATS = [
    KeyFormat(),
    KeyFormat(prefixes=["sk_live", "sk_test"]),
    KeyFormat(imported=[ImportedFormat("grx_sk_", length=48, alphabet="0123456789abcdef")]),
    KeyFormat(imported=[ImportedFormat("legacy-")]),
]


@settings(max_examples=300, deadline=None)
@given(
    fmt=st.sampled_from(FORMATS),
    token=st.one_of(
        st.binary(max_size=400),
        st.builds(
            bytes.__add__,
            st.sampled_from([b"sk_live_", b"grx_sk_", b"legacy-", b"_", b"sk__", b"a_b_"]),
            st.binary(max_size=BODY_LENGTH + 8),
        ),
        st.text(st.sampled_from(ALPHABET + "_-"), max_size=80).map(str.encode),
    ),
)
def test_identify_never_raises(fmt: KeyFormat, token: bytes) -> None:
    result = fmt.identify(token)
    if isinstance(result, Denial):
        assert (result.status, result.code) == (401, "INVALID_API_KEY")
    elif result is not None:
        assert len(result) == KEY_ID_LENGTH
        assert result.isalnum()


def test_prefixes_restrict_accepted_keys(client: Client, store: MemoryStore) -> None:
    ks = Keysentry(store, secret=SECRET, prefixes=["sk_live"])
    c = Client(client.framework, ks)
    live = ks.issue(name="live").key.reveal()
    test = ks.issue(name="test", prefix="sk_test").key.reveal()
    assert c.get("/", {"X-API-Key": live}).status == 200
    r = c.get("/", {"X-API-Key": test})
    assert (r.status, r.code) == (401, "INVALID_API_KEY")
    assert "prefix" in r.message
    # Without the restriction the same stored key is accepted.
    assert client.get("/", {"X-API-Key": test}).status == 200


@pytest.mark.parametrize(
    "prefix",
    ["", "SK_live", "sk-live", "sk live", "sk__live", "_sk", "sk_", "sk_lïve", "a" * 33, "sk\n"],
)
def test_invalid_prefix_is_refused_at_configuration(store: MemoryStore, prefix: str) -> None:
    with pytest.raises(InvalidKeyFormat):
        Keysentry(store, prefix=prefix)
    with pytest.raises(InvalidKeyFormat):
        Keysentry(store, prefixes=["sk_live", prefix])
    ks = Keysentry(store)
    with pytest.raises(InvalidKeyFormat):
        ks.new_key(prefix=prefix)
    assert len(store) == 0


@pytest.mark.parametrize(
    ("prefix", "alphabet"), [("", "abc"), ("grx sk\n", "abc"), ("gr€_", "abc"), ("g_", "ab ,")]
)
def test_invalid_imported_format_is_refused(prefix: str, alphabet: str) -> None:
    with pytest.raises(InvalidKeyFormat):
        ImportedFormat(prefix, alphabet=alphabet)


def test_digest_is_hmac_with_a_secret_and_sha256_without(store: MemoryStore) -> None:
    keyed = Keysentry(store, secret=SECRET).issue(name="keyed")
    plain = Keysentry(store).issue(name="plain")
    keyed_raw = keyed.key.reveal().encode()
    plain_raw = plain.key.reveal().encode()
    assert keyed.record.digest == hmac.new(SECRET.encode(), keyed_raw, "sha256").digest()
    assert keyed.record.digest != hashlib.sha256(keyed_raw).digest()
    assert plain.record.digest == hashlib.sha256(plain_raw).digest()
    assert plain.record.digest != hmac.new(SECRET.encode(), plain_raw, "sha256").digest()


def test_short_digest_secret_is_refused(store: MemoryStore) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        Keysentry(store, secret="too-short")


def test_key_minted_under_one_secret_is_refused_under_another(
    client: Client, store: MemoryStore, key: str
) -> None:
    assert client.get("/", {"X-API-Key": key}).status == 200
    for other in (
        Keysentry(store, secret="another-server-secret-0123456789"),
        Keysentry(store),
    ):
        r = Client(client.framework, other).get("/", {"X-API-Key": key})
        assert (r.status, r.code) == (401, "INVALID_API_KEY")


GRX = ImportedFormat("grx_sk_", length=48, alphabet="0123456789abcdef")


def test_imported_keys_authenticate_by_digest(client: Client, store: MemoryStore) -> None:
    ks = Keysentry(store, secret=SECRET, imported=[GRX])
    legacy = "grx_sk_" + secrets.token_hex(24)
    record = ks.import_key(legacy, name="legacy", owner="acct_9")
    assert record.digest == hmac.new(SECRET.encode(), legacy.encode(), "sha256").digest()
    c = Client(client.framework, ks)

    r = c.get("/", {"Authorization": f"Bearer {legacy}"})
    assert r.status == 200
    assert (r.body["id"], r.body["name"], r.body["owner"]) == (record.id, "legacy", "acct_9")
    assert c.get("/", {"X-API-Key": legacy}).status == 200

    i = len("grx_sk_") + 10
    for replacement in ("0" if legacy[i] != "0" else "1", "G", "F"):
        changed = legacy[:i] + replacement + legacy[i + 1 :]
        r = c.get("/", {"X-API-Key": changed})
        assert (r.status, r.code) == (401, "INVALID_API_KEY")
    assert c.get("/", {"X-API-Key": legacy + "0"}).status == 401
    # A vendor's keys are recognised only where their format is configured.
    assert client.get("/", {"X-API-Key": legacy}).status == 401


def test_import_refuses_keys_outside_the_configured_formats(store: MemoryStore) -> None:
    ks = Keysentry(store, secret=SECRET, imported=[GRX])
    for bad in ("grx_sk_" + "a" * 47, "grx_sk_" + "A" * 48, "sk_" + "a" * 48, ""):
        with pytest.raises(InvalidKeyFormat):
            ks.import_key(bad)
    assert len(store) == 0


@settings(max_examples=200, deadline=None)
@given(secret=st.binary(min_size=16, max_size=200), key=st.binary(max_size=300))
def test_digester_is_exactly_rfc2104_hmac_sha256(secret: bytes, key: bytes) -> None:
    """The precomputed-pad HMAC equals the standard library's for short and long secrets."""
    from keysentry.keys import Digester

    assert Digester(secret)(key) == hmac.digest(secret, key, "sha256")

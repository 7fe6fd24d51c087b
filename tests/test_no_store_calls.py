"""SPEC §3 and §8: what a presented key costs the store.

Garbage and typos are refused from the bytes alone; a valid key is fetched once and then served
from the cache; an unknown well-formed key is asked about once per negative-cache TTL. Every
verdict on a well-formed key still runs one constant-time comparison, whether the id exists,
is remembered as unknown, or is cached.
"""

from __future__ import annotations

import hmac
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

import keysentry.pipeline
from keysentry import ImportedFormat, KeyChanges, KeyRecord, Keysentry, MemoryStore
from keysentry.cache import TTLCache
from keysentry.stores.base import Usage

from .apps import FRAMEWORKS, Client
from .conftest import SECRET


class CountingStore:
    """A :class:`MemoryStore` that counts the lookups the request path makes."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.calls: Counter[str] = Counter()

    @property
    def lookups(self) -> int:
        return sum(self.calls.values())

    def get(self, key_id: str) -> KeyRecord | None:
        self.calls["get"] += 1
        return self.inner.get(key_id)

    def find_by_digest(self, digest: bytes) -> KeyRecord | None:
        self.calls["find_by_digest"] += 1
        return self.inner.find_by_digest(digest)

    async def aget(self, key_id: str) -> KeyRecord | None:
        self.calls["aget"] += 1
        return self.inner.get(key_id)

    async def afind_by_digest(self, digest: bytes) -> KeyRecord | None:
        self.calls["afind_by_digest"] += 1
        return self.inner.find_by_digest(digest)

    def create(self, record: KeyRecord) -> None:
        self.inner.create(record)

    async def acreate(self, record: KeyRecord) -> None:
        self.inner.create(record)

    def update(self, key_id: str, changes: KeyChanges) -> KeyRecord:
        return self.inner.update(key_id, changes)

    async def aupdate(self, key_id: str, changes: KeyChanges) -> KeyRecord:
        return self.inner.update(key_id, changes)

    def delete(self, key_id: str, expect: Mapping[str, object] | None = None) -> KeyRecord:
        return self.inner.delete(key_id, expect)

    async def adelete(self, key_id: str, expect: Mapping[str, object] | None = None) -> KeyRecord:
        return self.inner.delete(key_id, expect)

    def list_keys(
        self, *, owner: str | None = None, after: str | None = None, limit: int = 100
    ) -> Sequence[KeyRecord]:
        return self.inner.list_keys(owner=owner, after=after, limit=limit)

    async def alist_keys(
        self, *, owner: str | None = None, after: str | None = None, limit: int = 100
    ) -> Sequence[KeyRecord]:
        return self.inner.list_keys(owner=owner, after=after, limit=limit)

    def spend_credits(self, key_id: str, amount: int = 1) -> int | None:
        self.calls["spend_credits"] += 1
        return self.inner.spend_credits(key_id, amount)

    async def aspend_credits(self, key_id: str, amount: int = 1) -> int | None:
        self.calls["aspend_credits"] += 1
        return self.inner.spend_credits(key_id, amount)

    def record_usage(self, usage: Mapping[str, Usage]) -> None:
        self.inner.record_usage(usage)

    async def arecord_usage(self, usage: Mapping[str, Usage]) -> None:
        self.inner.record_usage(usage)

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


GRX = ImportedFormat("grx_sk_", length=48, alphabet="0123456789abcdef")
NEGATIVE_TTL = 5.0


class Setup:
    def __init__(self, framework: str) -> None:
        self.store = CountingStore()
        self.clock = FakeClock()
        self.ks = Keysentry(
            self.store, secret=SECRET, imported=[GRX], cache_ttl=30, negative_ttl=NEGATIVE_TTL
        )
        # Keysentry builds its cache on the monotonic clock and takes no clock for it, so the
        # test swaps in an identical cache that reads a clock it can move.
        self.ks.cache = TTLCache(10_000, 30, NEGATIVE_TTL, clock=self.clock)
        self.client = Client(framework, self.ks)
        issued = self.ks.issue(name="valid")
        self.key = issued.key.reveal()
        self.record = issued.record
        self.asgi = self.client.asgi

    def get(self, key: str) -> int:
        return self.client.get("/", {"Authorization": f"Bearer {key}"}).status

    @property
    def kinds(self) -> set[str]:
        return set(self.store.calls)


@pytest.fixture(params=FRAMEWORKS)
def setup(request: pytest.FixtureRequest) -> Setup:
    return Setup(request.param)


def _typo(key: str, at: int) -> str:
    return key[:at] + ("x" if key[at] != "x" else "y") + key[at + 1 :]


def test_garbage_and_checksum_failures_cost_no_store_call(setup: Setup) -> None:
    key = setup.key
    bad = [
        "hunter2",
        "sk_live_" + "A" * 53,
        key[:-1],
        key + "0",
        _typo(key, 10),
        _typo(key, len(key) - 1),
        key.replace("sk_live_", "sk_test_"),
        "grx_sk_" + "g" * 48,
        "A" * 10_000,
    ]
    for token in bad * 3:
        assert setup.get(token) == 401
    assert setup.store.lookups == 0
    assert len(setup.ks.cache) == 0


def test_valid_key_costs_one_lookup_then_none(setup: Setup) -> None:
    assert setup.get(setup.key) == 200
    assert setup.store.lookups == 1
    assert setup.kinds == ({"aget"} if setup.asgi else {"get"})
    for _ in range(5):
        assert setup.get(setup.key) == 200
    assert setup.store.lookups == 1


def test_unknown_key_costs_one_lookup_per_negative_ttl(setup: Setup) -> None:
    unknown = setup.ks.new_key(name="never stored").key.reveal()
    for _ in range(5):
        assert setup.get(unknown) == 401
    assert setup.store.lookups == 1
    setup.clock.now += NEGATIVE_TTL - 0.5
    assert setup.get(unknown) == 401
    assert setup.store.lookups == 1
    setup.clock.now += 1
    for _ in range(5):
        assert setup.get(unknown) == 401
    assert setup.store.lookups == 2


def test_unknown_imported_key_costs_one_digest_lookup_per_negative_ttl(setup: Setup) -> None:
    unknown = "grx_sk_" + "0123456789abcdef" * 3
    for _ in range(5):
        assert setup.get(unknown) == 401
    assert setup.store.lookups == 1
    assert setup.kinds == ({"afind_by_digest"} if setup.asgi else {"find_by_digest"})
    setup.clock.now += NEGATIVE_TTL + 0.5
    assert setup.get(unknown) == 401
    assert setup.store.lookups == 2


@pytest.fixture
def compares(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    """Every ``hmac.compare_digest`` the decision makes, with its arguments."""
    calls: list[tuple[bytes, bytes]] = []
    real: Callable[[Any, Any], bool] = hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(keysentry.pipeline.hmac, "compare_digest", counting)
    return calls


def test_unknown_key_id_still_compares_digests(
    setup: Setup, compares: list[tuple[bytes, bytes]]
) -> None:
    unknown = setup.ks.new_key(name="never stored").key.reveal()
    assert setup.get(unknown) == 401  # the store says: no such id
    assert len(compares) == 1
    assert len(compares[0][0]) == len(compares[0][1]) == 32
    compares.clear()
    assert setup.get(unknown) == 401  # the negative cache says so...
    # ...by the steps a wrong secret for a cached id takes: the tag, then the digest.
    assert [(len(a), len(b)) for a, b in compares] == [(8, 8), (32, 32)]


def test_cache_hits_compare_digests(setup: Setup, compares: list[tuple[bytes, bytes]]) -> None:
    assert setup.get(setup.key) == 200
    compares.clear()
    assert setup.get(setup.key) == 200
    assert setup.store.lookups == 1
    # A warm hit is one constant-time comparison: of the key's process-local tag, recorded
    # when the key first matched the stored digest.
    assert len(compares) == 1
    presented, cached = compares[0]
    assert presented == cached
    assert len(presented) == 8  # SipHash under CPython's random hash key (see Keysentry._tag)
    # A wrong secret for the cached id fails the tag, then the digest comparison too.
    forged = Keysentry(setup.store, secret="another-secret-0123456789abcdef")
    spliced = _same_id_other_secret(setup.key, forged)
    compares.clear()
    assert setup.get(spliced) == 401
    assert len(compares) == 2
    assert compares[1] == (setup.ks.digest(spliced.encode()), setup.record.digest)
    assert setup.store.lookups == 1
    # ...and the real key still passes afterwards.
    assert setup.get(setup.key) == 200


@pytest.mark.parametrize("seed", ["0", "123"])
def test_the_tag_is_a_keyed_blake2s_when_the_hash_key_is_fixed(seed: str) -> None:
    """With PYTHONHASHSEED set to a number, hash() is keyed by a known value: the cache's
    tag must then not be hash(), and warm hits must still tell a real key from a forged one.
    ``0`` turns randomization off; any other number leaves ``sys.flags.hash_randomization``
    at 1 but derives the key from the seed."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    code = textwrap.dedent(
        """
        import zlib
        from keysentry import Keysentry, MemoryStore
        from keysentry.decision import Verdict
        ks = Keysentry(MemoryStore(), secret="s" * 32, usage_interval=None)
        key = ks.issue(name="k").key.reveal().encode()
        assert isinstance(ks.authenticate(key), Verdict)
        cached = ks.cache.get(key[8:20])
        assert len(cached.tag) == 16 and cached.tag == ks._pipeline.tag(key)
        assert cached.tag != hash(key).to_bytes(8, "little", signed=True)
        assert isinstance(ks.authenticate(key), Verdict)  # the warm path
        head = key[:-9] + (b"A" if key[-9:-8] != b"A" else b"B")
        forged = head + b"%08x" % zlib.crc32(head)
        assert not isinstance(ks.authenticate(forged), Verdict)
        print("ok")
        """
    )
    root = Path(__file__).resolve().parent.parent
    env = {**__import__("os").environ, "PYTHONHASHSEED": seed}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True
    )
    assert out.stdout.strip() == "ok", out.stderr


def test_garbage_runs_no_comparison(setup: Setup, compares: list[tuple[bytes, bytes]]) -> None:
    for token in ("hunter2", _typo(setup.key, 12), "A" * 1000):
        assert setup.get(token) == 401
    assert compares == []


def _same_id_other_secret(key: str, other: Keysentry) -> str:
    """A well-formed key with ``key``'s id but a secret that is not ``key``'s."""
    fresh = other.new_key().key.reveal()
    head = key[: len("sk_live_") + 12] + fresh[len("sk_live_") + 12 : -8]
    return head + f"{zlib.crc32(head.encode()):08x}"


class CountingCache(TTLCache[Any]):
    """A TTLCache that counts its reads."""

    reads = 0

    def get(self, key: Any) -> Any:
        self.reads += 1
        return super().get(key)


def test_garbage_never_reaches_the_cache_even_once_keys_are_warm(setup: Setup) -> None:
    """The warm path finds a verified key by its tag before parsing it; anything else, typos
    of that very key included, is parsed and refused on its format or checksum first."""
    cache = CountingCache(10_000, 30, NEGATIVE_TTL, clock=setup.clock)
    setup.ks.cache = cache
    for _ in range(3):
        assert setup.get(setup.key) == 200
    reads = cache.reads
    key = setup.key
    for token in ["hunter2", key[:-1], key + "0", _typo(key, 10), _typo(key, len(key) - 1)]:
        assert setup.get(token) == 401
    assert cache.reads == reads
    assert setup.store.lookups == 1


@pytest.mark.parametrize(
    "header",
    [
        "Bearer {key} ",  # trailing whitespace
        "Bearer  {key}",  # two spaces
        "Bearer {key}\t",
        "Basic {key}",
        "{key}",  # no scheme
    ],
)
def test_a_verified_key_in_a_malformed_header_is_still_refused(setup: Setup, header: str) -> None:
    assert setup.get(setup.key) == 200
    assert setup.get(setup.key) == 200  # now recognised by its tag
    value = header.format(key=setup.key)
    response = setup.client.get("/", {"Authorization": value})
    assert response.status == 401


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_warm_path_sees_a_change_at_once(framework: str) -> None:
    """Recognising a key by its tag never outlives its cache entry: a disabled, then
    revoked, then expired key is refused on the next request."""
    from datetime import timedelta

    ks = Keysentry(MemoryStore(), secret=SECRET)
    client = Client(framework, ks)
    issued = ks.issue(name="k")
    key_id = issued.record.id

    def status() -> int:
        return client.get("/", {"Authorization": f"Bearer {issued.key.reveal()}"}).status

    assert [status() for _ in range(3)] == [200, 200, 200]
    ks.disable(key_id)
    assert status() == 403
    ks.enable(key_id)
    assert [status() for _ in range(3)] == [200, 200, 200]
    ks.set_expiry(key_id, timedelta(microseconds=1))
    assert status() == 401
    ks.set_expiry(key_id, None)
    assert [status() for _ in range(3)] == [200, 200, 200]
    ks.revoke(key_id)
    assert status() == 401

"""The hot-path cache: bounded, unknown keys cannot evict known ones, revocation sticks."""

from __future__ import annotations

import threading
from typing import Any

from keysentry import Keysentry, MemoryStore
from keysentry.cache import MISS, NEGATIVE, TTLCache
from keysentry.decision import Verdict

from .conftest import SECRET


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    def get(self, key_id: str) -> Any:
        self.gets += 1
        return super().get(key_id)


def test_a_flood_of_unknown_keys_does_not_evict_known_ones() -> None:
    store = CountingStore()
    ks = Keysentry(store, secret=SECRET, cache_size=100)
    key = ks.issue(name="known").key.reveal().encode()
    assert isinstance(ks.authenticate(key), Verdict)
    strangers = [ks.new_key().key.reveal().encode() for _ in range(1000)]
    for s in strangers:
        ks.authenticate(s)
    before = store.gets
    assert isinstance(ks.authenticate(key), Verdict)
    assert store.gets == before  # still cached
    assert len(ks.cache) == 1


def test_cache_is_bounded_both_ways() -> None:
    cache: TTLCache[int] = TTLCache(maxsize=10, negative_size=5)
    for i in range(100):
        cache.put(f"p{i}", i)
        cache.put_negative(f"n{i}")
    assert len(cache) == 10
    assert cache.get("p99") == 99
    assert cache.get("p0") is MISS
    assert cache.get("n99") is NEGATIVE
    assert cache.get("n0") is MISS


def test_ttl_expiry() -> None:
    now = [0.0]
    cache: TTLCache[str] = TTLCache(ttl=10, negative_ttl=2, clock=lambda: now[0])
    cache.put("a", "x")
    cache.put_negative("b")
    now[0] = 5
    assert cache.get("a") == "x"
    assert cache.get("b") is MISS
    now[0] = 10
    assert cache.get("a") is MISS


class SlowStore(MemoryStore):
    """A store whose lookups can be held mid-flight."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.hold = False

    def get(self, key_id: str) -> Any:
        record = super().get(key_id)
        if self.hold:
            self.entered.set()
            self.release.wait(5)
        return record


def test_a_lookup_in_flight_cannot_undo_a_revocation() -> None:
    store = SlowStore()
    ks = Keysentry(store, secret=SECRET)
    issued = ks.issue(name="doomed")
    key = issued.key.reveal().encode()
    store.hold = True
    results: list[object] = []
    t = threading.Thread(target=lambda: results.append(ks.authenticate(key)))
    t.start()
    assert store.entered.wait(5)  # the lookup has read the live record...
    store.hold = False
    ks.revoke(issued.record.id)  # ...and the key is revoked before it returns
    store.release.set()
    t.join(5)
    assert isinstance(results[0], Verdict)  # that request raced the revocation
    after = ks.authenticate(key)
    assert not isinstance(after, Verdict)
    assert after.code == "INVALID_API_KEY"  # type: ignore[union-attr]


class FlakyStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def get(self, key_id: str) -> Any:
        if self.down:
            from keysentry import StoreUnavailable

            raise StoreUnavailable("test store is down")
        return super().get(key_id)


def test_cached_keys_outlive_a_store_outage_for_the_stale_window() -> None:
    now = [0.0]
    store = FlakyStore()
    ks = Keysentry(store, secret=SECRET, cache_ttl=10, stale_for=60)
    ks.cache = TTLCache(ttl=10, clock=lambda: now[0])
    known = ks.issue(name="known").key.reveal().encode()
    unknown = ks.issue(name="never cached").key.reveal().encode()
    assert isinstance(ks.authenticate(known), Verdict)
    store.down = True
    now[0] = 30  # past the TTL, inside the stale window
    assert isinstance(ks.authenticate(known), Verdict)
    refused = ks.authenticate(unknown)
    assert refused.code == "AUTH_UNAVAILABLE"  # type: ignore[union-attr]
    now[0] = 100  # past the stale window too
    assert ks.authenticate(known).code == "AUTH_UNAVAILABLE"  # type: ignore[union-attr]
    store.down = False
    assert isinstance(ks.authenticate(known), Verdict)  # recovery needs nothing


def test_expire_all_distrusts_every_entry_but_keeps_it_for_stale_serving() -> None:
    """What the invalidator does when announcements may have been missed: every key is asked
    of the store again, but a store outage meanwhile still finds the stale copy."""
    now = [0.0]
    cache: TTLCache[str] = TTLCache(ttl=10, negative_ttl=5, clock=lambda: now[0])
    cache.put("a", "x")
    cache.put_negative("n")
    now[0] = 4
    generation = cache.generation
    cache.expire_all()
    assert cache.generation != generation
    assert cache.get("a") is MISS  # no longer trusted: the next request asks the store
    assert cache.get("n") is MISS  # unknown ids alike
    assert cache.get_stale("a", 60) == "x"  # but kept for when the store cannot answer...
    assert cache.get_stale("n", 60) is NEGATIVE  # ...as unknown ids are (no outage oracle)
    assert len(cache) == 1
    # The stale window still runs from the entry's own TTL (cached at 0: 10 + 60), so the
    # promise "cached within cache_ttl + stale_for keeps working" holds across the mark.
    now[0] = 69.9
    assert cache.get_stale("a", 60) == "x"
    now[0] = 70
    assert cache.get_stale("a", 60) is None


def test_an_answer_in_flight_across_expire_all_is_not_cached_as_fresh() -> None:
    cache: TTLCache[str] = TTLCache(ttl=600)
    cache.put("a", "old")
    generation = cache.generation  # a lookup starts...
    cache.expire_all()  # ...announcements may have been missed meanwhile...
    cache.put("a", "fetched before the mark", generation)  # ...and it returns
    cache.put_negative("b", generation)
    assert cache.get("a") is MISS
    assert cache.get("b") is MISS
    cache.put("a", "fetched after", cache.generation)
    assert cache.get("a") == "fetched after"

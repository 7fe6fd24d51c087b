"""The Redis store on a real 3-master Redis Cluster with a namespace of no hash tag: the store
contract on both faces, keys on every master through real apps, usage across slots, and what
a crash between the one-slot steps of a write leaves behind (on one server too): index entries
no record backs, which readers ignore, a later create takes over and ``repair()`` removes."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from keysentry import DuplicateKey, Keysentry, StoreUnavailable
from keysentry.keys import ImportedFormat
from keysentry.ratelimit.redis import RedisLimiter
from keysentry.records import KeyRecord
from keysentry.stores import _redis_steps as steps
from keysentry.stores._redis_calls import call
from keysentry.stores.base import Usage, UsageNotRecorded
from keysentry.stores.redis import RedisStore, Repaired
from keysentry.testing import AsyncKeyStoreContract, KeyStoreContract, make_record
from keysentry.usage import UsageRecorder

from .apps import Client
from .conftest import SECRET
from .services import REDIS_URL, RedisCluster, _wait, namespace

GRX = ImportedFormat("grx_sk_", length=48, alphabet="0123456789abcdef")


@pytest.fixture
def cluster_store(redis_cluster: RedisCluster) -> Iterator[RedisStore]:
    ns = namespace()
    assert "{" not in ns
    store = RedisStore(redis_cluster.url, namespace=ns, timeout=2.0)
    yield store
    store.close()
    redis_cluster.delete_namespace(ns)


class TestRedisStoreOnACluster(KeyStoreContract):
    @pytest.fixture
    def store(self, cluster_store: RedisStore) -> RedisStore:
        return cluster_store


class TestRedisStoreOnAClusterAsync(AsyncKeyStoreContract):
    @pytest.fixture
    def store(self, cluster_store: RedisStore) -> RedisStore:
        return cluster_store


def on_every_master(
    cluster: RedisCluster, store: RedisStore, make: Any, per_master: int = 1
) -> list[Any]:
    """Records (or issued keys) made by ``make()`` until each master owns ``per_master``."""
    found: dict[int, list[Any]] = {i: [] for i in range(len(cluster.servers))}
    while any(len(v) < per_master for v in found.values()):
        made = make()
        record = made if isinstance(made, KeyRecord) else made.record
        node = found[cluster.node_of(store.record_key(record.id))]
        if len(node) < per_master:
            node.append(made)
    return [made for n in sorted(found) for made in found[n]]


@pytest.mark.parametrize("framework", ["starlette", "werkzeug"])
def test_keys_on_every_master_serve_requests(
    redis_cluster: RedisCluster, cluster_store: RedisStore, framework: str
) -> None:
    store = cluster_store
    limiter = RedisLimiter(redis_cluster.url, namespace=store.namespace, timeout=2.0)
    ks = Keysentry(store, secret=SECRET, limiter=limiter, imported=[GRX], fail_open=False)
    issued = on_every_master(
        redis_cluster,
        store,
        lambda: ks.issue(name="spread", owner="acct", rate_limit="3/minute", credits=10),
    )
    legacy: dict[str, str] = {}

    def imported() -> KeyRecord:
        key = "grx_sk_" + secrets.token_hex(24)
        record = ks.import_key(key, name="imported", owner="acct", rate_limit="3/minute")
        legacy[record.id] = key
        return record

    imports = on_every_master(redis_cluster, store, imported)
    keys = [(i.record.id, i.key.reveal()) for i in issued] + [(r.id, legacy[r.id]) for r in imports]
    client = Client(framework, ks)
    for _, key in keys:
        statuses = [client.get("/", {"X-API-Key": key}).status for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        assert client.get("/", {"X-API-Key": key}).body["error"]["code"] == "RATE_LIMITED"
    ids = {key_id for key_id, _ in keys}
    assert ids <= {r.id for r in store.list_keys(owner="acct")}  # with those not kept
    for key_id in ids:
        assert store.update(key_id, {"owner": "moved"}).owner == "moved"
        ks.revoke(key_id)
    assert not ids & {r.id for r in store.list_keys(owner="acct")}
    assert {r.id for r in store.list_keys(owner="moved")} == ids
    for issued_key in issued:  # three requests let through, three credits spent
        assert store.spend_credits(issued_key.record.id) == 6
    for _, key in keys:
        assert client.get("/", {"X-API-Key": key}).status == 401
    assert store.repair() == Repaired()  # nothing to repair after all of that
    ks.close()
    limiter.close()


def test_record_usage_across_slots_counts_everything(
    redis_cluster: RedisCluster, cluster_store: RedisStore
) -> None:
    store = cluster_store
    records = on_every_master(redis_cluster, store, make_record, per_master=8)
    for record in records:
        store.create(record)
    when = datetime(2026, 5, 1, tzinfo=timezone.utc)
    later = when + timedelta(seconds=10)
    store.record_usage({r.id: Usage(i + 1, when) for i, r in enumerate(records)})

    async def flush() -> None:
        await store.arecord_usage({r.id: Usage(2, later) for r in records})
        await store.aclose()

    asyncio.run(flush())
    for i, record in enumerate(records):
        got = store.get(record.id)
        assert got is not None
        assert (got.request_count, got.last_used_at) == (i + 3, later)


def test_a_hash_tagged_namespace_still_works(redis_cluster: RedisCluster) -> None:
    """What older releases asked for on a cluster: the whole store on one slot."""
    ns = "{" + namespace() + "}"
    store = RedisStore(redis_cluster.url, namespace=ns, timeout=2.0)
    try:
        records = [make_record(owner="a") for _ in range(5)]
        for record in records:
            store.create(record)
        nodes = {redis_cluster.node_of(store.record_key(r.id)) for r in records}
        assert len(nodes) == 1
        store.update(records[0].id, {"owner": "b"})
        store.record_usage(
            {r.id: Usage(1, datetime(2026, 5, 1, tzinfo=timezone.utc)) for r in records}
        )
        assert [r.request_count for r in store.list_keys(owner="a")] == [1] * 4
        assert [r.id for r in store.list_keys(owner="b")] == [records[0].id]
        assert store.repair() == Repaired()
    finally:
        store.close()
        redis_cluster.delete_namespace(ns)


# -- crashes between steps, on one server and on a cluster -------------------------------------


@pytest.fixture(params=["redis", "cluster"])
def store(request: pytest.FixtureRequest) -> Iterator[RedisStore]:
    if request.param == "redis":
        ns = request.getfixturevalue("ns")
        store = RedisStore(REDIS_URL, namespace=ns, timeout=2.0)
        yield store
        store.close()
    else:
        yield request.getfixturevalue("cluster_store")


def raw(store: RedisStore) -> Any:
    """A client of the test's own on the store's Redis, to write and read behind its back."""
    return store._client()


def names(store: RedisStore) -> set[str]:
    return {n.decode() for n in raw(store).scan_iter(match=f"{store.namespace}:*")}


def layout(store: RedisStore, *records: KeyRecord) -> set[str]:
    """The names a store holding exactly these records has."""
    found = {store.index_key(None)} if records else set()
    for r in records:
        found |= {store.record_key(r.id), store.digest_key(r.digest)}
        if r.owner is not None:
            found.add(store.index_key(r.owner))
    return found


def members(store: RedisStore, owner: str | None) -> list[str]:
    return [m.decode() for m in raw(store).zrange(store.index_key(owner), 0, -1)]


def crash(store: RedisStore, job: steps.Steps[Any], after: int) -> None:
    """Run the first ``after`` Redis calls of a write, then stop, as a process killed there."""
    client, reply = raw(store), None
    for _ in range(after):
        reply = call(client, job.send(reply), store._errors)
    job.close()


CREATE_CALLS = 4  # mark the id, claim the digest, add to the id list and owner set, write


@pytest.mark.parametrize("after", range(CREATE_CALLS))
def test_a_create_cut_short_leaves_only_entries_readers_ignore(
    store: RedisStore, after: int
) -> None:
    crashed = make_record(owner="crash")
    crash(store, steps.create(store.names, crashed), after)
    # Nothing of the crashed key is readable, listed or found.
    assert store.get(crashed.id) is None
    assert store.find_by_digest(crashed.digest) is None
    assert store.list_keys() == []
    assert store.list_keys(owner="crash") == []
    # Its marker holds the id, and the digest once claimed, for a while: no other create
    # may take them until it expires (it would take the digest of a live creation).
    twin = make_record(digest=crashed.digest, owner="crash")
    if after >= 2:
        with pytest.raises(DuplicateKey, match="being created"):
            store.create(twin)
    if after >= 1:
        with pytest.raises(DuplicateKey, match="being created"):
            store.create(make_record(id=crashed.id))
        assert raw(store).pttl(store.creating_key(crashed.id)) > 0  # it expires by itself
        raw(store).delete(store.creating_key(crashed.id))  # as it does
    # Then a create takes the digest over, and the crashed key stays unreadable.
    store.create(twin)
    assert store.find_by_digest(crashed.digest) == twin
    assert store.get(crashed.id) is None
    assert [r.id for r in store.list_keys(owner="crash")] == [twin.id]
    # repair() removes what the crash left (an id in the list and the owner's set).
    left = 1 if after >= 3 else 0
    assert store.repair() == Repaired(ids=left, owners=left)
    assert names(store) == layout(store, twin)
    assert members(store, None) == members(store, "crash") == [twin.id]


def test_a_dangling_digest_entry_is_not_found_then_taken_over_and_repaired(
    store: RedisStore,
) -> None:
    record = make_record(owner="o")
    other = make_record()
    client = raw(store)
    for dangling, ghost in ((record, "ghost0000001"), (other, "ghost0000002")):
        client.set(store.digest_key(dangling.digest), ghost)  # a create that died long ago
        client.zadd(store.index_key(None), {ghost: 0})
        client.zadd(store.index_key("o"), {ghost: 0})
    assert store.find_by_digest(record.digest) is None
    assert store.get("ghost0000001") is None
    assert store.list_keys() == []
    assert store.list_keys(owner="o") == []
    store.create(record)  # takes the first entry over
    assert store.find_by_digest(record.digest) == record
    assert store.list_keys() == store.list_keys(owner="o") == [record]
    with pytest.raises(DuplicateKey, match="exists"):
        store.create(make_record(digest=record.digest))
    assert store.repair() == Repaired(digests=1, ids=2, owners=2)
    assert names(store) == layout(store, record)
    assert store.repair() == Repaired()


def test_a_digest_entry_naming_a_record_of_another_digest_is_dangling(
    store: RedisStore,
) -> None:
    """A create of id X with digest D died after its claim; later X was created with digest
    E. The entry D -> X is dangling although X has a record."""
    first = make_record()
    store.create(first)
    crashed_digest = make_record().digest
    raw(store).set(store.digest_key(crashed_digest), first.id)
    assert store.find_by_digest(crashed_digest) is None
    taker = make_record(digest=crashed_digest)
    store.create(taker)
    assert store.find_by_digest(crashed_digest) == taker
    assert store.find_by_digest(first.digest) == first


def test_repair_writes_back_entries_a_record_misses(store: RedisStore) -> None:
    """A failover that lost one master's last writes can lose an index entry, not only
    leave one behind: repair() writes it back from the record."""
    record = make_record(owner="o")
    store.create(record)
    client = raw(store)
    client.delete(store.digest_key(record.digest))
    client.zrem(store.index_key(None), record.id)
    client.zrem(store.index_key("o"), record.id)
    assert store.find_by_digest(record.digest) is None
    assert store.list_keys(owner="o") == []

    async def arepair() -> Repaired:
        repaired = await store.arepair()
        await store.aclose()
        return repaired

    assert asyncio.run(arepair()) == Repaired(restored=3)
    assert store.find_by_digest(record.digest) == record
    assert store.list_keys(owner="o") == [record]
    assert names(store) == layout(store, record)


MOVE_CALLS = 6  # read, join the new owner's set, update, leave the old one (2), join again


@pytest.mark.parametrize("after", range(MOVE_CALLS))
def test_an_owner_change_cut_short_lists_the_key_under_its_owner_only(
    store: RedisStore, after: int
) -> None:
    record = make_record(owner="a")
    store.create(record)
    crash(store, steps.update(store.names, record.id, {"owner": "b"}, None), after)
    got = store.get(record.id)
    assert got is not None
    owner, other = ("b", "a") if after >= 3 else ("a", "b")
    assert got.owner == owner
    assert store.list_keys(owner=owner) == [got]
    assert store.list_keys(owner=other) == []
    store.repair()
    assert names(store) == layout(store, got)
    assert members(store, owner) == [record.id]


DELETE_CALLS = 5  # read, remove the record, release the digest, leave the id list, the owner's


@pytest.mark.parametrize("after", range(2, DELETE_CALLS))
def test_a_delete_cut_short_leaves_only_entries_readers_ignore(
    store: RedisStore, after: int
) -> None:
    """The record goes first: cut after it, the key is gone for every reader, its id and
    digest can be taken again, and repair() leaves exactly the live layout."""
    kept, gone = make_record(owner="d"), make_record(owner="d")
    store.create(kept)
    store.create(gone)
    crash(store, steps.delete(store.names, gone.id, None), after)
    assert store.get(gone.id) is None
    assert store.find_by_digest(gone.digest) is None
    assert store.list_keys() == [kept]
    assert store.list_keys(owner="d") == [kept]
    store.repair()
    assert names(store) == layout(store, kept)
    store.create(gone)  # its id and digest are free
    assert store.find_by_digest(gone.digest) == gone


def test_a_racing_create_of_one_digest_has_one_winner(store: RedisStore) -> None:
    """Creates of one digest under different ids, all at once: one wins, the others are
    told so, whichever master each id lives on."""
    import threading

    digest = make_record().digest
    records = [make_record(digest=digest) for _ in range(8)]
    won: list[KeyRecord] = []
    lost: list[Exception] = []
    barrier = threading.Barrier(len(records))

    def create(record: KeyRecord) -> None:
        barrier.wait()
        try:
            store.create(record)
            won.append(record)
        except DuplicateKey as exc:
            lost.append(exc)

    threads = [threading.Thread(target=create, args=(r,)) for r in records]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert len(lost) == 7
    assert store.find_by_digest(digest) == won[0]
    assert [r.id for r in store.list_keys()] == [won[0].id]
    assert store.repair() == Repaired()


# -- a master down: usage of the others is written once -----------------------------------------


def test_usage_on_a_dead_master_is_kept_and_the_rest_counted_once() -> None:
    cluster = RedisCluster(3, "--cluster-require-full-coverage", "no")
    try:
        cluster.start()
        store = RedisStore(cluster.url, timeout=0.5, failures=100)
        records = on_every_master(cluster, store, make_record, per_master=2)
        for record in records:
            store.create(record)
        on_dead = {r.id for r in records if cluster.node_of(store.record_key(r.id)) == 1}
        day = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
        recorder = UsageRecorder(store, interval=3600, clock=day.timestamp)
        for record in records:
            recorder.note(record.id)
            recorder.note_route("/v1/items/{id}", record.id)

        async def with_a_master_down() -> None:
            # The asyncio client maps the cluster while every master answers, as a running
            # app's has (one made while a master is down may pick it to ask for COMMAND).
            assert await store.aget(records[0].id) is not None
            cluster.servers[1].stop_keeping_data()
            with pytest.raises(UsageNotRecorded) as refused:
                recorder.flush()
            assert set(refused.value.unwritten) == on_dead
            assert isinstance(refused.value, StoreUnavailable)
            when = datetime(2026, 5, 1, tzinfo=timezone.utc)
            with pytest.raises(UsageNotRecorded) as again:
                await store.arecord_usage({r.id: Usage(1, when) for r in records})
            assert set(again.value.unwritten) == on_dead
            await store.aclose()

        asyncio.run(with_a_master_down())
        cluster.servers[1].start()
        _wait(lambda: store.get(sorted(on_dead)[0]) is not None, "the master's return")
        recorder.flush()  # only what the dead master missed
        counts = {r.id: store.get(r.id).request_count for r in records}  # type: ignore[union-attr]
        assert counts == {r.id: 1 if r.id in on_dead else 2 for r in records}
        # The history too: the recorder's day once for every key, routes included.
        history = store.usage_history([r.id for r in records], day.date())
        assert {key_id: [(d.day, d.requests, dict(d.routes)) for d in days]
                for key_id, days in history.items()} == {
            r.id: [(day.date(), 1, {"/v1/items/{id}": 1})] for r in records
        }  # fmt: skip
        recorder.close()
        store.close()
    finally:
        cluster.stop()


def test_the_store_follows_slots_moved_to_another_master() -> None:
    """After a reshard the store's client still maps the slots to the old master: every
    write is told MOVED and follows it, usage recording included, on both faces."""
    cluster = RedisCluster()
    try:
        cluster.start()
        store = RedisStore(cluster.url, timeout=2.0)
        records = on_every_master(cluster, store, lambda: make_record(owner="o"), per_master=3)
        for record in records:
            store.create(record)
        when = datetime(2026, 5, 1, tzinfo=timezone.utc)
        store.record_usage({r.id: Usage(1, when) for r in records})  # the layout is known
        moved = [r for r in records if cluster.node_of(store.record_key(r.id)) == 0]
        cluster.move_slots(0, 1)
        assert {cluster.node_of(store.record_key(r.id)) for r in moved} == {1}
        store.record_usage({r.id: Usage(1, when) for r in records})

        async def on_the_async_face() -> None:
            await store.arecord_usage({r.id: Usage(1, when) for r in records})
            assert (await store.aupdate(moved[1].id, {"owner": "q"})).owner == "q"
            await store.aclose()

        asyncio.run(on_the_async_face())
        assert store.update(moved[0].id, {"owner": "p"}).owner == "p"
        late = make_record(owner="o")
        store.create(late)
        got = [store.get(r.id) for r in records]
        assert [g.request_count if g else None for g in got] == [3] * len(records)
        assert [r.id for r in store.list_keys(owner="p")] == [moved[0].id]
        assert [r.id for r in store.list_keys(owner="q")] == [moved[1].id]
        assert store.find_by_digest(late.digest) == late
        assert store.repair() == Repaired()
        store.close()
    finally:
        cluster.stop()

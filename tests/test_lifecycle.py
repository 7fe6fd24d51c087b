"""The lifecycle API (SPEC §4, §5): every change made through the guard is what the next request
sees, on ASGI and WSGI alike: disable/enable, revoke, expiry, scopes and limits, rotation with
a grace period, credits."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from keysentry import KeyNotFound, Keysentry, MemoryStore, StoreUnavailable
from keysentry.decision import Verdict
from keysentry.ratelimit import MemoryLimiter

from .apps import FRAMEWORKS, Client
from .conftest import SECRET
from .test_configuration import SyncOnlyStore


class Clock:
    """POSIX time that a test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc).timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def guard(store: MemoryStore, clock: Clock) -> Keysentry:
    return Keysentry(store, secret=SECRET, limiter=MemoryLimiter(), clock=clock)


@pytest.fixture(params=FRAMEWORKS)
def client(request: pytest.FixtureRequest, guard: Keysentry) -> Client:
    return Client(request.param, guard)


def _ask(client: Client, key: str) -> tuple[int, str | None]:
    r = client.get("/", {"Authorization": f"Bearer {key}"})
    return r.status, r.code


def test_disable_and_enable(guard: Keysentry, client: Client) -> None:
    issued = guard.issue(name="toggle")
    key = issued.key.reveal()
    assert _ask(client, key) == (200, None)
    assert guard.disable(issued.record.id).disabled
    assert _ask(client, key) == (403, "API_KEY_DISABLED")
    assert not guard.enable(issued.record.id).disabled
    assert _ask(client, key) == (200, None)


def test_revoke_is_for_good(guard: Keysentry, client: Client) -> None:
    issued = guard.issue(name="gone")
    key = issued.key.reveal()
    assert _ask(client, key) == (200, None)
    record = guard.revoke(issued.record.id)
    assert record.revoked
    assert _ask(client, key) == (401, "INVALID_API_KEY")
    with pytest.raises(ValueError, match="is revoked: it cannot be enabled again"):
        guard.enable(issued.record.id)  # enabling does not bring it back
    assert guard.get(issued.record.id).revoked_at == record.revoked_at
    assert _ask(client, key) == (401, "INVALID_API_KEY")


def test_delete_removes_a_key_for_good(guard: Keysentry, client: Client) -> None:
    issued = guard.issue(name="doomed", owner="acct_1")
    kept = guard.issue(name="kept", owner="acct_1")
    key = issued.key.reveal()
    assert _ask(client, key) == (200, None)  # cached by this guard
    gone = guard.delete(issued.record.id)
    assert gone.id == issued.record.id
    assert gone.name == "doomed"
    assert _ask(client, key) == (401, "INVALID_API_KEY")  # the cached copy was dropped
    with pytest.raises(KeyNotFound):
        guard.get(issued.record.id)
    assert [r.id for r in guard.list_keys(owner="acct_1")] == [kept.record.id]
    with pytest.raises(KeyNotFound):
        guard.delete(issued.record.id)
    assert _ask(client, kept.key.reveal()) == (200, None)


def test_a_line_holding_credits_keeps_its_first_key(guard: Keysentry, client: Client) -> None:
    """The successor of a metered key spends the first key's balance: deleting that key
    would leave it without one, so it is refused; the successor itself may go."""
    first = guard.issue(name="metered", credits=5)
    second = guard.rotate(first.record.id, grace=60)
    with pytest.raises(ValueError, match="holds the credits of its rotation line"):
        guard.delete(first.record.id)
    assert _ask(client, second.key.reveal()) == (200, None)
    assert guard.get(first.record.id).credits == 4
    guard.delete(second.record.id)
    assert _ask(client, second.key.reveal()) == (401, "INVALID_API_KEY")
    # An unmetered line has no balance to keep: its first key may go.
    plain = guard.issue(name="plain")
    guard.rotate(plain.record.id, grace=60)
    guard.delete(plain.record.id)
    assert _ask(client, plain.key.reveal()) == (401, "INVALID_API_KEY")


def test_set_and_clear_expiry(guard: Keysentry, client: Client, clock: Clock) -> None:
    issued = guard.issue(name="temp")
    key = issued.key.reveal()
    guard.set_expiry(issued.record.id, timedelta(hours=1))
    assert _ask(client, key) == (200, None)
    clock.now += 3601
    r = client.get("/", {"X-API-Key": key})
    assert (r.status, r.code) == (401, "EXPIRED_API_KEY")
    expired_at = datetime.fromisoformat(r.body["error"]["details"]["expired_at"])
    assert expired_at == guard.get(issued.record.id).expires_at
    assert guard.set_expiry(issued.record.id, None).expires_at is None
    assert _ask(client, key) == (200, None)
    with pytest.raises(ValueError, match="positive"):
        guard.set_expiry(issued.record.id, timedelta(0))


def test_update_scopes_limits_allowlist_and_metadata(guard: Keysentry, client: Client) -> None:
    issued = guard.issue(name="tuned", scopes=["read"])
    key = issued.key.reveal()
    assert client.get("/", {"X-API-Key": key}).body["scopes"] == ["read"]
    guard.update(issued.record.id, scopes=["read", "write"], metadata={"plan": "pro"})
    body = client.get("/", {"X-API-Key": key}).body
    assert (body["scopes"], body["metadata"]) == (["read", "write"], {"plan": "pro"})

    guard.update(issued.record.id, rate_limit="1/minute")
    first = client.get("/", {"X-API-Key": key})
    assert first.status == 200
    assert first.headers["RateLimit-Policy"] == '"per-minute";q=1;w=60'
    assert client.get("/", {"X-API-Key": key}).code == "RATE_LIMITED"
    guard.update(issued.record.id, rate_limit=None)
    assert client.get("/", {"X-API-Key": key}).status == 200

    guard.update(issued.record.id, allowed_networks=["203.0.113.0/24"])
    assert client.get("/", {"X-API-Key": key}).code == "IP_NOT_ALLOWED"
    guard.update(issued.record.id, allowed_networks=[])
    assert client.get("/", {"X-API-Key": key}).status == 200


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"allowed_networks": ["not-a-cidr"]}, "allowed_networks: .not-a-cidr. is not an IP"),
        ({"rate_limit": "lots"}, "not a rate"),
        ({"credits": -5}, "credits must be from 0"),
        ({"digest": bytes(32)}, "cannot be changed"),
        ({"revoked_at": None}, "use revoke"),
        ({"rotated_to": "abc"}, "use revoke"),
    ],
)
def test_bad_changes_change_nothing(
    guard: Keysentry, changes: dict[str, Any], message: str
) -> None:
    issued = guard.issue(name="steady", scopes=["read"])
    with pytest.raises(ValueError, match=message):
        guard.update(issued.record.id, **changes)
    assert guard.get(issued.record.id) == issued.record


def test_unknown_ids_and_whole_keys_are_key_not_found(guard: Keysentry) -> None:
    issued = guard.issue(name="steady")
    with pytest.raises(KeyNotFound):
        guard.disable("nosuchkeyid0")
    with pytest.raises(KeyNotFound) as missing:
        guard.get(issued.key.reveal())  # a whole key where its id belongs
    assert issued.key.reveal() not in str(missing.value)


def test_list_by_owner_in_pages(guard: Keysentry) -> None:
    mine = {guard.issue(name=f"k{i}", owner="acct_1").record.id for i in range(7)}
    guard.issue(name="other", owner="acct_2")
    seen: list[str] = []
    after = None
    while True:
        page = guard.list_keys(owner="acct_1", after=after, limit=3)
        if not page:
            break
        assert len(page) <= 3
        seen += [r.id for r in page]
        after = page[-1].id
    assert seen == sorted(mine)
    with pytest.raises(ValueError, match="page"):
        guard.list_keys(limit=0)


def test_rotation_keeps_the_old_key_for_the_grace_period_only(
    guard: Keysentry, client: Client, clock: Clock
) -> None:
    old = guard.issue(
        name="rotating", owner="acct_9", scopes=["read"], rate_limit="100/minute", prefix="sk_test"
    )
    old_key = old.key.reveal()
    new = guard.rotate(old.record.id, grace=timedelta(hours=24))
    new_key = new.key.reveal()
    assert new_key != old_key
    assert new_key.startswith("sk_test_")
    assert (new.record.name, new.record.owner, new.record.scopes) == (
        "rotating",
        "acct_9",
        {"read"},
    )
    assert new.record.rate_limit == old.record.rate_limit
    stored_old = guard.get(old.record.id)
    assert stored_old.rotated_to == new.record.id
    assert _ask(client, old_key) == (200, None)
    assert _ask(client, new_key) == (200, None)

    clock.now += 24 * 3600 - 5
    assert _ask(client, old_key) == (200, None)
    clock.now += 10
    assert _ask(client, old_key) == (401, "EXPIRED_API_KEY")
    assert _ask(client, new_key) == (200, None)
    with pytest.raises(ValueError, match="already rotated"):
        guard.rotate(old.record.id)


def test_rotation_without_grace_revokes_at_once(guard: Keysentry, client: Client) -> None:
    old = guard.issue(name="now")
    assert _ask(client, old.key.reveal()) == (200, None)
    new = guard.rotate(old.record.id)
    assert _ask(client, old.key.reveal()) == (401, "INVALID_API_KEY")
    assert _ask(client, new.key.reveal()) == (200, None)
    with pytest.raises(ValueError, match="revoked"):
        guard.rotate(old.record.id)
    with pytest.raises(ValueError, match="grace"):
        guard.rotate(new.record.id, grace=-1)


def test_rotation_keeps_an_earlier_expiry(guard: Keysentry) -> None:
    soon = datetime.now(timezone.utc) + timedelta(minutes=5)
    old = guard.issue(name="short-lived", expires_at=soon)
    new = guard.rotate(old.record.id, grace=timedelta(days=1))
    assert guard.get(old.record.id).expires_at == soon
    assert new.record.expires_at == soon  # rotation is not renewal


def test_credits_count_down_then_402(guard: Keysentry, client: Client) -> None:
    issued = guard.issue(name="metered", credits=3)
    key = issued.key.reveal()
    assert [_ask(client, key) for _ in range(3)] == [(200, None)] * 3
    r = client.get("/", {"X-API-Key": key})
    assert (r.status, r.code) == (402, "INSUFFICIENT_CREDITS")
    assert guard.get(issued.record.id).credits == 0
    guard.update(issued.record.id, credits=1)  # topped up
    assert _ask(client, key) == (200, None)
    assert _ask(client, key) == (402, "INSUFFICIENT_CREDITS")


def test_refusals_spend_no_credits(guard: Keysentry, client: Client) -> None:
    issued = guard.issue(name="careful", credits=5, rate_limit="1/minute")
    key = issued.key.reveal()
    assert _ask(client, key) == (200, None)
    assert _ask(client, key) == (429, "RATE_LIMITED")
    guard.update(issued.record.id, allowed_networks=["203.0.113.0/24"])
    assert _ask(client, key) == (403, "IP_NOT_ALLOWED")
    guard.disable(issued.record.id)
    assert _ask(client, key) == (403, "API_KEY_DISABLED")
    assert guard.get(issued.record.id).credits == 4


def test_a_rotation_line_shares_one_balance(guard: Keysentry, client: Client) -> None:
    old = guard.issue(name="paid", credits=4)
    new = guard.rotate(old.record.id, grace=3600)
    assert new.record.credits_from == old.record.id
    assert _ask(client, old.key.reveal()) == (200, None)
    assert _ask(client, new.key.reveal()) == (200, None)
    assert _ask(client, old.key.reveal()) == (200, None)
    assert guard.credits_of(guard.get(new.record.id)) == 1
    assert _ask(client, new.key.reveal()) == (200, None)
    assert _ask(client, old.key.reveal()) == (402, "INSUFFICIENT_CREDITS")
    assert _ask(client, new.key.reveal()) == (402, "INSUFFICIENT_CREDITS")
    # Topping up the successor tops up the line's balance.
    guard.update(new.record.id, credits=2)
    assert guard.credits_of(guard.get(new.record.id)) == 2
    assert guard.get(new.record.id).credits is None
    assert _ask(client, new.key.reveal()) == (200, None)


def test_a_chain_of_rotations_and_stale_caches_spend_one_balance(
    store: MemoryStore, clock: Clock
) -> None:
    """A -> B -> C, and a second guard that still has A cached from before: together they
    get exactly the balance, never a copy of it."""
    a_guard = Keysentry(store, secret=SECRET, clock=clock, usage_interval=None)
    stale = Keysentry(store, secret=SECRET, clock=clock, usage_interval=None, cache_ttl=3600)
    a = a_guard.issue(name="line", credits=6)
    stale_client = Client("werkzeug", stale)
    assert _ask(stale_client, a.key.reveal()) == (200, None)  # cached there for an hour
    b = a_guard.rotate(a.record.id, grace=3600)
    c = a_guard.rotate(b.record.id, grace=3600)
    assert c.record.credits_from == a.record.id
    client = Client("werkzeug", a_guard)
    answers = [_ask(client, key.key.reveal()) for key in (a, b, c, a, b, c) for _ in range(1)] + [
        _ask(stale_client, a.key.reveal()) for _ in range(3)
    ]
    assert answers.count((200, None)) == 5  # 6 credits, one spent before the rotations
    assert answers.count((402, "INSUFFICIENT_CREDITS")) == 4


def test_racing_rotations_leave_one_successor(guard: Keysentry) -> None:
    import threading

    old = guard.issue(name="contested", credits=5)
    won: list[str] = []
    lost: list[str] = []
    barrier = threading.Barrier(6)

    def rotate() -> None:
        barrier.wait()
        try:
            won.append(guard.rotate(old.record.id, grace=60).record.id)
        except ValueError:
            lost.append("lost")

    threads = [threading.Thread(target=rotate) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert len(lost) == 5
    assert guard.get(old.record.id).rotated_to == won[0]
    live = [r for r in guard.list_keys() if r.revoked_at is None and r.id != old.record.id]
    assert [r.id for r in live] == won


def test_rotating_a_disabled_key_gives_a_disabled_key(guard: Keysentry, client: Client) -> None:
    old = guard.issue(name="off")
    guard.disable(old.record.id)
    new = guard.rotate(old.record.id, grace=60)
    assert _ask(client, new.key.reveal()) == (403, "API_KEY_DISABLED")


def test_an_expired_key_cannot_be_rotated(guard: Keysentry) -> None:
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    old = guard.issue(name="late", expires_at=past)
    with pytest.raises(ValueError, match="expired"):
        guard.rotate(old.record.id)
    assert len(guard.list_keys()) == 1


class LostReply(MemoryStore):
    """Applies the rotation's change to the old key, then loses the reply (a timeout)."""

    def update(self, key_id: str, changes: Any, expect: Any = None) -> Any:
        record = super().update(key_id, changes, expect)
        if "rotated_to" in changes:
            raise StoreUnavailable("the reply timed out")
        return record


def test_a_rotation_whose_reply_was_lost_is_found_to_have_landed() -> None:
    guard = Keysentry(LostReply(), secret=SECRET, usage_interval=None)
    old = guard.issue(name="flaky", credits=3)
    new = guard.rotate(old.record.id)  # no grace: the old key is revoked
    assert guard.get(old.record.id).rotated_to == new.record.id
    assert guard.get(new.record.id).revoked_at is None  # the new key is not thrown away
    assert isinstance(guard.authenticate(new.key.reveal().encode()), Verdict)


def test_the_async_twins(store: MemoryStore) -> None:
    guard = Keysentry(store, secret=SECRET)

    async def scenario() -> None:
        issued = await guard.aissue(name="async", owner="a", credits=2)
        key_id = issued.record.id
        assert (await guard.aget(key_id)).name == "async"
        assert (await guard.adisable(key_id)).disabled
        assert not (await guard.aenable(key_id)).disabled
        assert (await guard.aupdate(key_id, name="renamed")).name == "renamed"
        assert (await guard.aset_expiry(key_id, timedelta(days=1))).expires_at is not None
        assert [r.id for r in await guard.alist_keys(owner="a")] == [key_id]
        new = await guard.arotate(key_id, grace=60)
        assert (await guard.aget(key_id)).rotated_to == new.record.id
        assert (await guard.arevoke(new.record.id)).revoked
        with pytest.raises(ValueError, match="is revoked"):
            await guard.aenable(new.record.id)
        assert (await guard.adelete(new.record.id)).id == new.record.id
        with pytest.raises(KeyNotFound):
            await guard.aget(new.record.id)

    asyncio.run(scenario())


def test_a_402_after_the_limiter_counted_carries_the_ratelimit_fields(
    guard: Keysentry, client: Client
) -> None:
    key = guard.issue(name="both", credits=1, rate_limit="10/minute").key.reveal()
    assert _ask(client, key) == (200, None)
    r = client.get("/", {"X-API-Key": key})
    assert (r.status, r.code) == (402, "INSUFFICIENT_CREDITS")
    assert r.headers["RateLimit-Policy"] == '"per-minute";q=10;w=60'
    assert r.headers["RateLimit"].startswith('"per-minute";r=8;t=')


def test_revoking_twice_keeps_the_first_time(guard: Keysentry) -> None:
    issued = guard.issue(name="once")
    first = guard.revoke(issued.record.id)
    again = guard.revoke(issued.record.id)
    assert again.revoked_at == first.revoked_at


class _NoDelete(SyncOnlyStore):
    """A store of a user's own written before ``delete`` existed: every method but it."""

    def __getattr__(self, name: str) -> Any:
        if name == "delete":
            raise AttributeError(name)
        return super().__getattr__(name)


def test_a_store_without_delete_still_serves_and_delete_says_to_revoke() -> None:
    from werkzeug.test import Client as WSGIClient

    from keysentry import WSGIMiddleware

    store = _NoDelete()
    ks = Keysentry(store, secret=SECRET)
    issued = ks.issue(name="old-store")
    key, key_id = issued.key.reveal(), issued.record.id

    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    client = WSGIClient(WSGIMiddleware(app, ks))
    assert client.get("/", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    with pytest.raises(TypeError, match="cannot delete keys: revoke them instead"):
        ks.delete(key_id)
    assert ks.get(key_id).id == key_id  # nothing was touched
    ks.revoke(key_id)
    assert client.get("/", headers={"Authorization": f"Bearer {key}"}).status_code == 401

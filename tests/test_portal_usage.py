"""What the portal shows of usage and of the account: a key's requests per day (JSON, and a
chart per key on the dashboard) and the account's shared credits, on both faces; another
account's key stays a 404, and a store that keeps no history or no accounts is answered
plainly, never with a 500."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timezone

import pytest

from keysentry import DailyUsage, Keysentry, MemoryStore

from .apps import Client
from .conftest import SECRET
from .portal_client import FACES, PortalClient, Session
from .test_usage_history import PlainStore


@pytest.fixture(params=FACES)
def portal(request: pytest.FixtureRequest, ks: Keysentry) -> PortalClient:
    return PortalClient(request.param, ks, grantable=["read"])


@pytest.fixture
def alice(portal: PortalClient) -> Session:
    return portal.sign_in("alice")


def _use(portal: PortalClient, ks: Keysentry, key: str, times: int, app: str = "") -> None:
    """Requests with ``key`` through a guarded app (of the portal's face), then written."""
    api = Client(app or ("starlette" if portal.face == "asgi" else "flask"), ks)
    for _ in range(times):
        assert api.get("/items/1", {"X-API-Key": key}).status == 200
    assert ks.usage_recorder is not None
    ks.usage_recorder.flush()


def _today() -> str:
    return datetime.now(timezone.utc).date().isoformat()


def test_a_keys_requests_show_in_its_usage_and_its_chart(
    portal: PortalClient, alice: Session, ks: Keysentry
) -> None:
    used = ks.issue(name="ci", owner="alice")
    idle = ks.issue(name="idle", owner="alice")
    _use(portal, ks, used.key.reveal(), 3)

    reply = portal.call("GET", f"/api/keys/{used.record.id}/usage", session=alice)
    assert reply.status == 200, reply.text
    body = reply.json()
    assert (body["key_id"], body["total"], len(body["days"])) == (used.record.id, 3, 30)
    assert body["days"][-1]["day"] == _today()
    assert body["days"][-1]["requests"] == 3
    assert sum(day["requests"] for day in body["days"][:-1]) == 0
    one = portal.call("GET", f"/api/keys/{used.record.id}/usage?days=1", session=alice).json()
    assert [(d["day"], d["requests"]) for d in one["days"]] == [(_today(), 3)]
    assert (
        portal.call("GET", f"/api/keys/{idle.record.id}/usage", session=alice).json()["total"] == 0
    )

    page = portal.call("GET", "/", session=alice).text
    charts = re.findall(r'<svg class="chart" role="img" aria-label="([^"]+)"', page)
    assert charts == [f"Requests per day of key ci: 3 from {body['days'][0]['day']} to {_today()}"
                      f", at most 3 on {_today()}"]  # fmt: skip
    assert f'data-day="{_today()}" data-count="3"' in page
    row = re.search(rf'data-usage-of="{idle.record.id}">(.*?)</tr>', page, re.S)
    assert row
    assert "No requests in the last 30 days." in row.group(1)
    assert "<svg" not in row.group(1)


def test_another_accounts_usage_is_no_key_at_all(portal: PortalClient, ks: Keysentry) -> None:
    bob = ks.issue(name="bob's", owner="bob")
    _use(portal, ks, bob.key.reveal(), 2)
    admin = ks.issue(name="root", owner="alice", scopes=["admin"]).key.reveal()
    for who in ({"session": portal.sign_in("alice")}, {"headers": {"X-API-Key": admin}}):
        theirs = portal.call("GET", f"/api/keys/{bob.record.id}/usage", **who)  # type: ignore[arg-type]
        nobody = portal.call("GET", "/api/keys/AAAAAAAAAAAA/usage", **who)  # type: ignore[arg-type]
        assert (theirs.status, theirs.code) == (404, "KEY_NOT_FOUND")
        assert theirs.text.replace(bob.record.id, "AAAAAAAAAAAA") == nobody.text
        account = portal.call("GET", "/api/account", **who).json()  # type: ignore[arg-type]
        assert bob.record.id not in account["usage"]["keys"]
        assert account["usage"]["total"] == 0


def test_the_account_its_credits_and_its_keys_usage(
    portal: PortalClient, alice: Session, ks: Keysentry
) -> None:
    key = ks.issue(name="ci", owner="alice")
    other = ks.issue(name="spare", owner="alice").record.id
    ks.issue(name="bob's", owner="bob")
    plain = portal.call("GET", "/api/account", session=alice).json()
    assert plain == {
        "owner": "alice",
        "credits": None,
        "disabled": False,
        "rate_limit": None,
        "refill": None,
        "refilled_at": None,
        "usage": plain["usage"],
    }
    assert plain["usage"]["keys"] == {key.record.id: 0, other: 0}
    page = portal.call("GET", "/", session=alice).text
    assert 'class="balance"' not in page
    assert '<td data-label="Credits">unlimited</td>' in page

    ks.update_account("alice", credits=500, refill="+100/day", rate_limit="10/second")
    _use(portal, ks, key.key.reveal(), 4)
    shown = portal.call("GET", "/api/account?days=7", session=alice).json()
    assert (shown["credits"], shown["refill"], shown["rate_limit"]) == (496, "+100/day",
                                                                        ["10/second"])  # fmt: skip
    assert shown["refilled_at"] is not None
    usage = shown["usage"]
    assert (usage["total"], usage["keys"], len(usage["days"])) == (4, {key.record.id: 4,
                                                                       other: 0}, 7)  # fmt: skip
    assert usage["days"][-1] == {"day": _today(), "requests": 4, "routes": {}}

    page = portal.call("GET", "/", session=alice).text
    top = page[page.index('<header class="top">') : page.index("</header>")]
    assert 'Credits <strong>496</strong> <span class="refill">(100 added every day)</span>' in top
    assert page.count('<td data-label="Credits">the account\'s</td>') == 2
    assert "This account is disabled" not in page
    ks.disable_account("alice")
    assert portal.call("GET", "/api/account", session=alice).json()["disabled"] is True
    assert "This account is disabled" in portal.call("GET", "/", session=alice).text


@pytest.mark.parametrize("path", ["/api/keys/AAAAAAAAAAAA/usage", "/api/account"])
@pytest.mark.parametrize("days", ["0", "91", "-1", "x", "²", "1.5"])
def test_the_window_is_1_to_90_days(
    portal: PortalClient, alice: Session, path: str, days: str
) -> None:
    reply = portal.call("GET", f"{path}?days={days}", session=alice)
    assert (reply.status, reply.code) == (400, "INVALID_REQUEST"), reply.text
    assert reply.json()["error"]["details"] == {"field": "days"}


def test_a_page_reads_the_history_of_the_keys_used_in_its_window_only() -> None:
    class Counting(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.asked: list[str] = []

        def usage_history(
            self, key_ids: Sequence[str], since: date
        ) -> Mapping[str, Sequence[DailyUsage]]:
            self.asked.extend(key_ids)
            return super().usage_history(key_ids, since)

    for face in FACES:
        store = Counting()
        ks = Keysentry(store, secret=SECRET)
        portal = PortalClient(face, ks)
        used = ks.issue(name="used", owner="alice")
        for i in range(3):
            ks.issue(name=f"idle {i}", owner="alice")
        _use(portal, ks, used.key.reveal(), 1)
        store.asked.clear()
        page = portal.call("GET", "/", headers={"Cookie": "who=alice"})
        assert page.status == 200
        assert page.text.count('<svg class="chart"') == 1
        assert page.text.count("No requests in the last 30 days.") == 3
        assert store.asked == [used.record.id], face


def test_a_store_without_history_or_accounts_says_so() -> None:
    for face in FACES:
        store = PlainStore()
        ks = Keysentry(store, secret=SECRET)
        portal = PortalClient(face, ks)
        key = ks.issue(name="old", owner="alice")
        _use(portal, ks, key.key.reveal(), 2, "flask")  # a store without an async face
        signed_in = {"Cookie": "who=alice"}
        usage = portal.call("GET", f"/api/keys/{key.record.id}/usage", headers=signed_in)
        assert (usage.status, usage.code) == (501, "USAGE_NOT_KEPT"), usage.text
        assert "keeps no usage history" in usage.json()["error"]["message"]
        account = portal.call("GET", "/api/account", headers=signed_in)
        assert account.status == 200, account.text
        assert (account.json()["credits"], account.json()["usage"]) == (None, None)
        page = portal.call("GET", "/", headers=signed_in)
        assert page.status == 200, page.text
        assert "<svg" not in page.text
        assert "usage-row" not in page.text
        assert '<td data-label="Requests">2</td>' in page.text


def test_the_openapi_document_declares_usage_and_the_account(portal: PortalClient) -> None:
    doc = portal.call("GET", "/api/openapi.json").json()
    usage = doc["paths"]["/keys/{id}/usage"]["get"]
    assert usage["operationId"] == "keyUsage"
    assert {"200", "400", "404", "501"} <= set(usage["responses"])
    (days,) = usage["parameters"]
    assert days["schema"] == {"type": "integer", "minimum": 1, "maximum": 90, "default": 30}
    account = doc["paths"]["/account"]["get"]
    assert account["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Account"
    }
    schemas = doc["components"]["schemas"]
    assert {"Usage", "Account"} <= set(schemas)
    codes = schemas["KeysentryError"]["properties"]["error"]["properties"]["code"]["enum"]
    assert "USAGE_NOT_KEPT" in codes

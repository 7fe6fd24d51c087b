"""The key portal's JSON API and dashboard, as an account's owner uses them: through a host app
that mounts it, on the ASGI face and the WSGI face alike."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timedelta, timezone

import pytest

from keysentry import Keysentry, MemoryStore
from keysentry.decision import Verdict
from keysentry.errors import Denial, StoreUnavailable
from keysentry.events import LogActions
from keysentry.portal.http import MAX_BODY
from keysentry.portal.routes import API, ROUTES

from .conftest import SECRET
from .portal_client import FACES, PortalClient, Session

GRANTABLE = ["read", "write"]


@pytest.fixture(params=FACES)
def portal(request: pytest.FixtureRequest, ks: Keysentry) -> PortalClient:
    return PortalClient(request.param, ks, grantable=GRANTABLE, rate_limits=["60/minute"])


@pytest.fixture
def alice(portal: PortalClient) -> Session:
    return portal.sign_in("alice")


def _works(ks: Keysentry, key: str) -> Verdict | Denial:
    return ks.authenticate(key.encode())


def test_the_lifecycle_through_the_json_api(
    portal: PortalClient, alice: Session, ks: Keysentry
) -> None:
    made = portal.call(
        "POST", "/api/keys", session=alice, json_body={"name": "ci", "scopes": ["read"]}
    )
    assert made.status == 201, made.text
    key, record = made.json()["key"], made.json()["record"]
    assert key.startswith(record["prefix"])
    assert isinstance(_works(ks, key), Verdict)
    assert ks.get(record["id"]).owner == "alice"
    key_id = record["id"]

    listed = portal.call("GET", "/api/keys", session=alice).json()
    assert [k["id"] for k in listed["keys"]] == [key_id]
    assert key not in json.dumps(listed)
    assert "digest" not in listed["keys"][0]

    changed = portal.call(
        "PATCH",
        f"/api/keys/{key_id}",
        session=alice,
        json_body={
            "name": "ci-2",
            "scopes": ["read", "write"],
            "expires_at": "2099-01-01T00:00:00Z",
            "allowed_networks": ["10.0.0.0/8"],
            "rate_limit": "60/minute",
        },
    )
    assert changed.status == 200, changed.text
    shown = portal.call("GET", f"/api/keys/{key_id}", session=alice).json()
    assert shown["name"] == "ci-2"
    assert shown["scopes"] == ["read", "write"]
    assert shown["expires_at"] == "2099-01-01T00:00:00+00:00"
    assert shown["allowed_networks"] == ["10.0.0.0/8"]
    assert shown["rate_limit"] == ["60/minute"]
    portal.call("PATCH", f"/api/keys/{key_id}", session=alice, json_body={"allowed_networks": []})

    assert portal.call("POST", f"/api/keys/{key_id}/disable", session=alice).json()["status"] == (
        "disabled"
    )
    assert _works(ks, key).code == "API_KEY_DISABLED"  # type: ignore[union-attr]
    assert portal.call("POST", f"/api/keys/{key_id}/enable", session=alice).status == 200
    assert isinstance(_works(ks, key), Verdict)

    rotated = portal.call("POST", f"/api/keys/{key_id}/rotate", session=alice, json_body={})
    assert rotated.status == 201, rotated.text
    new_key, new_id = rotated.json()["key"], rotated.json()["record"]["id"]
    assert _works(ks, key).code == "INVALID_API_KEY"  # type: ignore[union-attr]  (no grace)
    assert isinstance(_works(ks, new_key), Verdict)
    old = portal.call("GET", f"/api/keys/{key_id}", session=alice).json()
    assert (old["status"], old["rotated_to"]) == ("revoked", new_id)

    assert portal.call("POST", f"/api/keys/{new_id}/revoke", session=alice).json()["status"] == (
        "revoked"
    )
    assert _works(ks, new_key).code == "INVALID_API_KEY"  # type: ignore[union-attr]
    gone = portal.call("DELETE", f"/api/keys/{new_id}", session=alice)
    assert gone.status == 204
    assert portal.call("GET", f"/api/keys/{new_id}", session=alice).code == "KEY_NOT_FOUND"


def test_rotation_with_grace_keeps_the_old_key_for_a_while(
    portal: PortalClient, alice: Session, ks: Keysentry
) -> None:
    made = portal.call("POST", "/api/keys", session=alice, json_body={"name": "ci"}).json()
    rotated = portal.call(
        "POST", f"/api/keys/{made['record']['id']}/rotate", session=alice, json_body={"grace": 3600}
    )
    assert rotated.status == 201
    assert isinstance(_works(ks, made["key"]), Verdict)
    old = portal.call("GET", f"/api/keys/{made['record']['id']}", session=alice).json()
    assert old["status"] == "rotated"
    left = datetime.fromisoformat(old["expires_at"]) - datetime.now(timezone.utc)
    assert timedelta(minutes=59) < left <= timedelta(hours=1)


def test_the_list_comes_in_pages(portal: PortalClient, alice: Session, ks: Keysentry) -> None:
    ids = {ks.issue(name=f"k{i}", owner="alice").record.id for i in range(5)}
    ks.issue(name="other", owner="bob")
    seen: list[str] = []
    after = ""
    while True:
        page = portal.call("GET", f"/api/keys?limit=2{after}", session=alice).json()
        assert len(page["keys"]) <= 2
        seen += [k["id"] for k in page["keys"]]
        if page["next"] is None:
            break
        after = f"&after={page['next']}"
    assert sorted(seen) == sorted(ids)


def test_an_admin_key_manages_its_own_account(portal: PortalClient, ks: Keysentry) -> None:
    root = ks.issue(name="root", owner="alice", scopes=["admin"])
    admin = root.key.reveal()
    mine = ks.issue(name="mine", owner="alice").record.id
    ks.issue(name="theirs", owner="bob")
    bearer = {"Authorization": f"Bearer {admin}"}
    listed = portal.call("GET", "/api/keys", headers=bearer).json()
    assert {k["name"] for k in listed["keys"]} == {"root", "mine"}
    # No CSRF token: a key is no ambient credential.
    assert portal.call("POST", f"/api/keys/{mine}/disable", headers=bearer).status == 200
    made = portal.call("POST", "/api/keys", headers={"X-API-Key": admin}, json_body={"name": "x"})
    assert made.status == 201
    assert ks.get(made.json()["record"]["id"]).owner == "alice"
    assert portal.events[-1].actor == f"key:{root.record.id}"


@pytest.mark.parametrize(
    ("issue", "status", "code"),
    [
        ({"scopes": ["read"], "owner": "alice"}, 403, "INSUFFICIENT_SCOPE"),
        ({"scopes": ["admin"]}, 403, "NO_ACCOUNT"),
        ({"scopes": ["admin"], "owner": "alice", "allowed_networks": ["10.0.0.0/8"]}, 403,
         "IP_NOT_ALLOWED"),
        ({"scopes": ["admin"], "owner": "alice", "disabled": True}, 403, "API_KEY_DISABLED"),
    ],
    ids=["no-admin-scope", "no-owner", "not-from-here", "disabled"],
)  # fmt: skip
def test_keys_that_may_not_manage(
    portal: PortalClient, ks: Keysentry, issue: dict[str, object], status: int, code: str
) -> None:
    issue = dict(issue)  # shared by the faces' runs
    disabled = issue.pop("disabled", False)
    issued = ks.issue(name="k", **issue)
    if disabled:
        ks.disable(issued.record.id)
    reply = portal.call(
        "GET", "/api/keys", headers={"Authorization": f"Bearer {issued.key.reveal()}"}
    )
    assert (reply.status, reply.code) == (status, code)
    if code == "INSUFFICIENT_SCOPE":
        assert reply.json()["error"]["details"] == {"required": ["admin"]}
        assert 'error="insufficient_scope", scope="admin"' in reply.headers["www-authenticate"]


def test_no_sign_in_and_no_key_is_401(portal: PortalClient, ks: Keysentry) -> None:
    reply = portal.call("GET", "/api/keys")
    assert (reply.status, reply.code) == (401, "MISSING_API_KEY")
    assert reply.headers["www-authenticate"] == 'Bearer realm="api"'
    assert "Sign in" in reply.json()["error"]["message"]
    page = portal.call("GET", "/")
    assert page.status == 401
    assert "Sign in" in page.text
    bad = portal.call("GET", "/api/keys", headers={"Authorization": "Bearer sk_live_nope"})
    assert (bad.status, bad.code) == (401, "INVALID_API_KEY")
    unscheme = portal.call("GET", "/api/keys", headers={"Authorization": "sk_live_x"})
    assert "'Bearer ' prefix" in unscheme.json()["error"]["message"]


def test_a_sign_in_url_is_where_the_dashboard_sends_strangers(ks: Keysentry) -> None:
    portal = PortalClient("asgi", ks, sign_in_url="/login")
    reply = portal.call("GET", "/")
    assert (reply.status, reply.headers["location"]) == (303, "/login")


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code", "field"),
    [
        ("POST", "/api/keys", {"body": b"{nope", "headers": {"Content-Type": "application/json"}},
         400, "INVALID_REQUEST", None),
        ("POST", "/api/keys", {"json_body": []}, 400, "INVALID_REQUEST", None),
        ("POST", "/api/keys", {"json_body": {}}, 400, "INVALID_REQUEST", "name"),
        ("POST", "/api/keys", {"json_body": {"name": " "}}, 400, "INVALID_REQUEST", "name"),
        ("POST", "/api/keys", {"json_body": {"name": "x" * 101}}, 400, "INVALID_REQUEST", "name"),
        ("POST", "/api/keys", {"json_body": {"name": "a\nb"}}, 400, "INVALID_REQUEST", "name"),
        ("POST", "/api/keys", {"json_body": {"name": "x", "colour": 1}}, 400, "INVALID_REQUEST",
         "colour"),
        ("POST", "/api/keys", {"json_body": {"name": "x", "scopes": [1]}}, 400, "INVALID_REQUEST",
         "scopes"),
        ("POST", "/api/keys", {"json_body": {"name": "x", "allowed_networks": ["nowhere"]}}, 400,
         "INVALID_REQUEST", "allowed_networks"),
        ("POST", "/api/keys", {"json_body": {"name": "x", "expires_at": "2000-01-01T00:00:00Z"}},
         400, "INVALID_REQUEST", "expires_at"),
        ("POST", "/api/keys", {"json_body": {"name": "x", "expires_at": "2099-01-01T00:00:00"}},
         400, "INVALID_REQUEST", "expires_at"),
        ("POST", "/api/keys", {"json_body": {"name": "x", "credits": 10**6}}, 403,
         "NOT_GRANTABLE", "credits"),
        ("POST", "/api/keys", {"json_body": {"name": "x", "owner": "bob"}}, 403, "NOT_GRANTABLE",
         "owner"),
        ("POST", "/api/keys", {"json_body": {"name": "x", "rate_limit": "none"}}, 403,
         "NOT_GRANTABLE", "rate_limit"),
        ("POST", "/api/keys", {"json_body": {"name": "x", "scopes": ["admin"]}}, 403,
         "NOT_GRANTABLE", "scopes"),
        ("POST", "/api/keys", {"body": b"name=x", "headers": {"Content-Type": "text/plain"}}, 415,
         "UNSUPPORTED_MEDIA_TYPE", None),
        ("POST", "/api/keys", {"json_body": {"name": "x" * MAX_BODY}}, 413, "REQUEST_TOO_LARGE",
         None),
        ("GET", "/api/keys?limit=0", {}, 400, "INVALID_REQUEST", "limit"),
        ("GET", "/api/keys?limit=101", {}, 400, "INVALID_REQUEST", "limit"),
        ("GET", "/api/keys?limit=%C2%B2", {}, 400, "INVALID_REQUEST", "limit"),  # a digit, "²"
        ("GET", "/api/keys?after=..%2f", {}, 400, "INVALID_REQUEST", "after"),
        ("PUT", "/api/keys", {}, 405, "METHOD_NOT_ALLOWED", None),
        ("GET", "/api/nothing", {}, 404, "NOT_FOUND", None),
    ],
)  # fmt: skip
def test_bad_requests_are_refused_with_the_field_named(
    portal: PortalClient,
    alice: Session,
    ks: Keysentry,
    method: str,
    path: str,
    kwargs: dict[str, object],
    status: int,
    code: str,
    field: str | None,
) -> None:
    reply = portal.call(method, path, session=alice, **kwargs)  # type: ignore[arg-type]
    assert (reply.status, reply.code) == (status, code), reply.text
    if field is not None:
        assert reply.json()["error"]["details"]["field"] == field
    assert ks.list_keys(owner="alice") == []
    if status == 405:
        assert reply.headers["allow"] == "GET, POST"


def test_rotation_grace_is_bounded(portal: PortalClient, alice: Session, ks: Keysentry) -> None:
    key_id = ks.issue(name="k", owner="alice").record.id
    for grace in (-1, 8 * 86400, "soon", True):
        reply = portal.call(
            "POST", f"/api/keys/{key_id}/rotate", session=alice, json_body={"grace": grace}
        )
        assert (reply.status, reply.code) == (400, "INVALID_REQUEST"), grace
    assert ks.get(key_id).rotated_to is None


def test_changes_the_key_state_forbids_are_409(
    portal: PortalClient, alice: Session, ks: Keysentry
) -> None:
    key_id = ks.issue(name="k", owner="alice").record.id
    ks.revoke(key_id)
    for method, path, body in [
        ("POST", f"/api/keys/{key_id}/rotate", {}),
        ("POST", f"/api/keys/{key_id}/enable", None),
        ("POST", f"/api/keys/{key_id}/disable", None),
        ("PATCH", f"/api/keys/{key_id}", {"name": "again"}),
    ]:
        reply = portal.call(method, path, session=alice, json_body=body)
        assert (reply.status, reply.code) == (409, "KEY_STATE_CONFLICT"), path
    assert ks.get(key_id).name == "k"


def test_a_store_outage_is_503(ks: Keysentry) -> None:
    class Down(MemoryStore):
        def list_keys(self, **kwargs: object) -> list:  # type: ignore[override]
            raise StoreUnavailable("down")

        async def alist_keys(self, **kwargs: object) -> list:  # type: ignore[override]
            raise StoreUnavailable("down")

    for face in FACES:
        portal = PortalClient(face, Keysentry(Down(), secret=SECRET))
        reply = portal.call("GET", "/api/keys", headers={"Cookie": "who=alice"})
        assert (reply.status, reply.code) == (503, "AUTH_UNAVAILABLE")
        assert "retry-after" in reply.headers


def test_the_dashboard_shows_a_new_key_once(
    portal: PortalClient, alice: Session, ks: Keysentry
) -> None:
    page = portal.call(
        "POST", "/keys", session=alice, form={"name": "web", "scopes": ["read", "write"],
                                              "expires_in_days": "30"},
    )  # fmt: skip
    assert page.status == 200, page.text
    key = re.search(r'id="new-key"[^>]* value="([^"]+)"', page.text)
    assert key, page.text
    assert "shown only once" in page.text
    record = ks.list_keys(owner="alice")[0]
    assert (record.name, sorted(record.scopes)) == ("web", ["read", "write"])
    assert record.expires_at is not None
    assert isinstance(_works(ks, key.group(1)), Verdict)
    again = portal.call("GET", "/", session=alice)
    assert key.group(1) not in again.text
    assert record.prefix in again.text

    rotated = portal.call("POST", f"/keys/{record.id}/rotate", session=alice, form={"grace": "0"})
    new = re.search(r'id="new-key"[^>]* value="([^"]+)"', rotated.text)
    assert new
    assert isinstance(_works(ks, new.group(1)), Verdict)
    assert _works(ks, key.group(1)).code == "INVALID_API_KEY"  # type: ignore[union-attr]

    new_id = ks.get(record.id).rotated_to
    for action, state in [("disable", "disabled"), ("enable", "enabled"), ("revoke", "revoked")]:
        done = portal.call("POST", f"/keys/{new_id}/{action}", session=alice, form={})
        assert done.status == 303
        assert done.headers["location"] == f"/account/keys/?done={action}&key={new_id}"
        shown = portal.call("GET", f"/?done={action}&key={new_id}", session=alice)
        assert f"Key {new_id} {state}." in shown.text
    assert _works(ks, new.group(1)).code == "INVALID_API_KEY"  # type: ignore[union-attr]


def test_a_refused_form_shows_why_and_keeps_what_was_typed(
    portal: PortalClient, alice: Session, ks: Keysentry
) -> None:
    page = portal.call(
        "POST", "/keys", session=alice, form={"name": "web", "allowed_networks": "not-a-net"}
    )
    assert page.status == 400
    assert 'role="alert"' in page.text
    assert "INVALID_REQUEST" in page.text
    assert 'value="web"' in page.text
    assert ks.list_keys(owner="alice") == []
    for form in ({"name": "web", "expires_in_days": "²"}, {"name": "web", "expires_in_days": "x"}):
        assert portal.call("POST", "/keys", session=alice, form=form).status == 400
    assert ks.list_keys(owner="alice") == []
    key_id = ks.issue(name="k", owner="alice").record.id
    for grace in ("soon", "²", "-1"):
        page = portal.call("POST", f"/keys/{key_id}/rotate", session=alice, form={"grace": grace})
        assert page.status == 400, grace
        assert "grace must be a number of seconds" in page.text
    assert ks.get(key_id).rotated_to is None


def test_every_action_is_an_event_without_secrets(
    portal: PortalClient, alice: Session, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "keysentry.portal")
    log = LogActions()
    made = portal.call(
        "POST", "/api/keys", session=alice, json_body={"name": "ci", "scopes": ["read"]}
    ).json()
    key_id = made["record"]["id"]
    rotated = portal.call("POST", f"/api/keys/{key_id}/rotate", session=alice).json()
    portal.call("GET", f"/api/keys/{key_id}", session=alice)
    portal.call("POST", f"/api/keys/{key_id}/revoke", session=alice, csrf=False)
    for event in portal.events:
        log(event)
    actions = [(e.action, e.allowed, e.code) for e in portal.events]
    assert actions == [
        ("dashboard", True, None),
        ("create", True, None),
        ("rotate", True, None),
        ("show", True, None),
        ("revoke", False, "CSRF_FAILED"),
    ]
    create = portal.events[1]
    assert (create.account, create.actor, create.fields) == ("alice", "session", ("name", "scopes"))
    assert create.new_key_id == key_id
    rotate = portal.events[2]
    assert (rotate.key_id, rotate.new_key_id) == (key_id, rotated["record"]["id"])
    text = caplog.text + repr(portal.events)
    for key in (made["key"], rotated["key"]):
        assert key not in text
        assert key[len("sk_live_") + 12 :] not in text
    assert "revoke refused 403 CSRF_FAILED account=alice" in caplog.text


def test_the_openapi_document_declares_every_api_route(portal: PortalClient) -> None:
    reply = portal.call("GET", "/api/openapi.json")
    assert reply.status == 200
    doc = reply.json()
    declared = {
        (method.upper(), "/api" + path)
        for path, item in doc["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert declared == {(r.method, r.path) for r in ROUTES if r.face == API}
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()
           if isinstance(op, dict)]  # fmt: skip
    assert len(ids) == len(set(ids))
    codes = doc["components"]["schemas"]["KeysentryError"]["properties"]["error"]["properties"]
    assert {"KEY_NOT_FOUND", "CSRF_FAILED", "INVALID_API_KEY"} <= set(codes["code"]["enum"])
    create = doc["paths"]["/keys"]["post"]["requestBody"]["content"]["application/json"]
    assert create["schema"]["properties"]["scopes"]["items"]["enum"] == GRANTABLE

"""The portal is an admin surface: each account reaches its own keys and nothing else, every
state-changing request from a browser session carries the page's CSRF token, every answer
forbids caching and framing, and no caller grants more than the portal allows."""

from __future__ import annotations

import re

import pytest

from keysentry import Keysentry
from keysentry.portal.routes import API, ROUTES, Route

from .portal_client import FACES, PortalClient, Session

KEY_ROUTES = [r for r in ROUTES if "{id}" in r.path]
CHANGING = [r for r in ROUTES if r.method != "GET"]

#: A body that each route would accept from the key's owner.
BODIES = {
    "update": {"name": "taken over", "scopes": ["read"]},
    "rotate": {"grace": 0},
    "create": {"name": "made", "scopes": ["read"]},
}


@pytest.fixture(params=FACES)
def portal(request: pytest.FixtureRequest, ks: Keysentry) -> PortalClient:
    return PortalClient(request.param, ks, grantable=["read", "write"])


def _call(portal: PortalClient, route: Route, key_id: str, **kwargs: object) -> object:
    path = route.path.replace("{id}", key_id)
    body = BODIES.get(route.action)
    if route.face == API:
        return portal.call(route.method, path, json_body=body if route.method != "GET" else None,
                           **kwargs)  # type: ignore[arg-type]  # fmt: skip
    forms: dict[str, dict[str, object]] = {"rotate": {"grace": "0"}, "create": {"name": "made"}}
    form = forms.get(route.action, {})
    return portal.call(route.method, path, form=form, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("route", KEY_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_another_accounts_key_is_no_key_at_all(
    portal: PortalClient, ks: Keysentry, route: Route
) -> None:
    """Alice, signed in or with her admin key, gets for Bob's key exactly what she gets for
    an id nobody has: 404, and Bob's key is unchanged."""
    bob = ks.issue(name="bob's", owner="bob", scopes=["read"])
    before = ks.get(bob.record.id)
    alice = portal.sign_in("alice")
    admin = ks.issue(name="root", owner="alice", scopes=["admin"]).key.reveal()
    nobody = "AAAAAAAAAAAA"
    for who in ({"session": alice}, {"headers": {"Authorization": f"Bearer {admin}"}}):
        theirs = _call(portal, route, bob.record.id, **who)
        missing = _call(portal, route, nobody, **who)
        assert theirs.status == missing.status == 404, theirs.text  # type: ignore[attr-defined]
        if route.face == API:
            assert theirs.code == "KEY_NOT_FOUND"  # type: ignore[attr-defined]
            assert theirs.text.replace(bob.record.id, nobody) == missing.text  # type: ignore[attr-defined]
        else:
            assert "KEY_NOT_FOUND" in theirs.text  # type: ignore[attr-defined]
            assert "bob" not in theirs.text  # type: ignore[attr-defined]
    assert ks.get(bob.record.id) == before
    assert ks.list_keys(owner="bob") == [before]


def test_the_list_and_the_dashboard_hold_only_ones_own_keys(
    portal: PortalClient, ks: Keysentry
) -> None:
    theirs = ks.issue(name="bob's secret project", owner="bob").record
    ks.issue(name="mine", owner="alice")
    alice = portal.sign_in("alice")
    listed = portal.call("GET", "/api/keys", session=alice).json()
    assert [k["name"] for k in listed["keys"]] == ["mine"]
    page = portal.call("GET", "/", session=alice).text
    assert theirs.id not in page
    assert "bob" not in page
    assert portal.call("GET", f"/api/keys?after={theirs.id}", session=alice).status == 200


def test_non_key_ids_are_refused_without_the_store(portal: PortalClient, ks: Keysentry) -> None:
    alice = portal.sign_in("alice")
    for weird in ("x" * 13, "sk_live_abc", "abc%24defghijk", "%C3%A4bcdefghijk"):
        reply = portal.call("GET", f"/api/keys/{weird}", session=alice)
        assert (reply.status, reply.code) == (404, "KEY_NOT_FOUND")


@pytest.mark.parametrize("route", CHANGING, ids=lambda r: f"{r.method} {r.path}")
def test_every_state_change_from_a_session_needs_the_csrf_token(
    portal: PortalClient, ks: Keysentry, route: Route
) -> None:
    key_id = ks.issue(name="k", owner="alice", scopes=["read"]).record.id
    before = ks.list_keys(owner="alice")
    alice = portal.sign_in("alice")
    mallory = portal.sign_in("mallory")
    forged = [
        {"session": alice, "csrf": False},  # no token
        {"session": Session("alice", alice.nonce, mallory.token)},  # another account's token
        {"session": Session("alice", mallory.nonce, alice.token)},  # another cookie's token
        {"session": Session("alice", alice.nonce, alice.token[:-2] + "AA")},
        {"session": alice, "headers": {"Sec-Fetch-Site": "cross-site"}},
        {"session": alice, "headers": {"Sec-Fetch-Site": "same-site"}},
        {"session": alice, "headers": {"Origin": "http://evil.example"}},
    ]
    for attempt in forged:
        reply = _call(portal, route, key_id, **attempt)
        assert reply.status == 403, (attempt, reply.text)  # type: ignore[attr-defined]
        if route.face == API:
            assert reply.code == "CSRF_FAILED"  # type: ignore[attr-defined]
    assert ks.list_keys(owner="alice") == before
    done = _call(portal, route, key_id, session=alice)
    assert done.status < 400, done.text  # type: ignore[attr-defined]


def test_pages_carry_a_token_bound_to_the_account_and_a_strict_cookie(
    portal: PortalClient,
) -> None:
    page = portal.call("GET", "/", headers={"Cookie": "who=alice"})
    cookie = page.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/account/keys" in cookie
    nonce = re.search(r"keysentry_csrf=([^;]+)", cookie).group(1)  # type: ignore[union-attr]
    again = portal.call("GET", "/", headers={"Cookie": f"who=alice; keysentry_csrf={nonce}"})
    assert "set-cookie" not in again.headers  # the cookie is kept
    tokens = set(re.findall(r'name="csrf_token" value="([^"]+)"', again.text))
    assert len(tokens) == 1


def _every_response(portal: PortalClient, ks: Keysentry) -> list[tuple[str, object]]:
    key_id = ks.issue(name="k", owner="alice").record.id
    alice = portal.sign_in("alice")
    made = portal.call("POST", "/keys", session=alice, form={"name": "shown"})
    assert 'id="new-key"' in made.text
    replies: list[tuple[str, object]] = [("new key page", made)]
    for route in ROUTES:
        if route.action in ("delete", "revoke", "rotate"):
            continue
        replies.append(
            (f"{route.method} {route.path}", _call(portal, route, key_id, session=alice))
        )
    paths = ("/", "/api/keys", "/nowhere", "/static/portal.css", "/static/portal.js",
             "/api/openapi.json")  # fmt: skip
    replies.extend((f"GET {path} signed out", portal.call("GET", path)) for path in paths)
    return replies


def test_every_answer_is_uncached_unframed_and_unsniffed(
    portal: PortalClient, ks: Keysentry
) -> None:
    for name, reply in _every_response(portal, ks):
        headers = reply.headers  # type: ignore[attr-defined]
        assert headers["cache-control"] == "no-store", name
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp, name
        assert "default-src 'none'" in csp, name
        assert "script-src 'self'" in csp, name
        assert "'unsafe-inline'" not in csp, name
        assert headers["x-content-type-options"] == "nosniff", name
        assert headers["x-frame-options"] == "DENY", name


def test_no_page_runs_inline_script_or_style(portal: PortalClient, ks: Keysentry) -> None:
    alice = portal.sign_in("alice")
    page = portal.call("POST", "/keys", session=alice, form={"name": "x"}).text
    assert "<script>" not in page
    assert not re.search(r"<script(?![^>]*\ssrc=)", page)
    assert " style=" not in page
    tags = [re.sub(r'"[^"]*"', '""', tag) for tag in re.findall(r"<[^>]*>", page)]
    assert not [tag for tag in tags if re.search(r"\son[a-z]+=", tag)]


def test_scopes_granted_stay_within_the_grantable_set(portal: PortalClient, ks: Keysentry) -> None:
    alice = portal.sign_in("alice")
    refused = portal.call(
        "POST", "/api/keys", session=alice, json_body={"name": "x", "scopes": ["read", "admin"]}
    )
    assert (refused.status, refused.code) == (403, "NOT_GRANTABLE")
    assert refused.json()["error"]["details"]["refused"] == ["admin"]
    assert ks.list_keys(owner="alice") == []
    form = portal.call("POST", "/keys", session=alice, form={"name": "x", "scopes": ["billing"]})
    assert form.status == 403
    assert ks.list_keys(owner="alice") == []

    # A scope the host gave may be kept or dropped, not granted anew.
    held = ks.issue(name="k", owner="alice", scopes=["read", "billing"]).record.id
    for scopes, status in ((["read", "billing", "write"], 200), (["write"], 200),
                           (["billing"], 403)):  # fmt: skip
        reply = portal.call(
            "PATCH", f"/api/keys/{held}", session=alice, json_body={"scopes": scopes}
        )
        assert reply.status == status, (scopes, reply.text)
    assert ks.get(held).scopes == {"write"}


def test_a_key_grants_only_what_it_holds(ks: Keysentry) -> None:
    """Without scope implications, an admin key holding ``read`` may grant ``read`` only (of
    the grantable ``read`` and ``write``); with the default ones, ``admin`` implies all."""
    plain = Keysentry(ks.store, secret="test-digest-secret-0123456789abcdef", scope_implications={})
    admin = plain.issue(name="root", owner="alice", scopes=["admin", "read"]).key.reveal()
    for guard, allowed in ((plain, False), (ks, True)):
        portal = PortalClient("asgi", guard, grantable=["read", "write"])
        reply = portal.call(
            "POST",
            "/api/keys",
            headers={"Authorization": f"Bearer {admin}"},
            json_body={"name": "x", "scopes": ["write"]},
        )
        assert reply.status == (201 if allowed else 403), reply.text
        read = portal.call(
            "POST",
            "/api/keys",
            headers={"Authorization": f"Bearer {admin}"},
            json_body={"name": "x", "scopes": ["read"]},
        )
        assert read.status == 201

"""The keys in Django's admin site: listed, created (shown once), changed and revoked through
the guard, so the middleware sees each change at once."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from keysentry.accounts import AccountRecord, Rate, Refill
from keysentry.django.conf import guard
from keysentry.django.models import Account, APIKey

LIST = "/admin/keysentry/apikey/"
ACCOUNTS = "/admin/keysentry/account/"


@pytest.fixture
def admin_client() -> Client:
    User.objects.filter(username="admin").delete()
    user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def shown_keys(response: object) -> list[str]:
    return re.findall(r"<code>([^<]+)</code>", response.content.decode())  # type: ignore[attr-defined]


def test_the_admin_creates_a_key_and_shows_it_once(admin_client: Client) -> None:
    response = admin_client.post(
        f"{LIST}add/",
        {
            "name": "from the admin",
            "owner": "acct_7",
            "scopes": "read, write",
            "rate_limit": "10/minute",
            "allowed_networks": "",
            "metadata": "{}",
        },
        follow=True,
    )
    assert response.status_code == 200
    [key] = shown_keys(response)
    record = guard().get(APIKey.objects.get(name="from the admin").pk)
    assert record.scopes == {"read", "write"}
    assert [str(r) for r in record.rate_limit or ()] == ["10/minute"]
    assert Client().get("/plain", headers={"X-API-Key": key}).status_code == 200
    # The list shows the key without its secret; the next page shows it no more.
    listing = admin_client.get(LIST)
    text = listing.content.decode()
    assert "from the admin" in text
    assert f"{record.prefix}..." in text
    assert key not in text
    assert "active" in text


def test_a_bad_value_is_a_form_error(admin_client: Client) -> None:
    response = admin_client.post(
        f"{LIST}add/", {"name": "x", "rate_limit": "often", "metadata": "{}"}
    )
    assert response.status_code == 200
    assert "not a rate" in response.content.decode()
    assert not APIKey.objects.exists()


def test_admin_actions_disable_enable_revoke_and_rotate(admin_client: Client) -> None:
    ks = guard()
    issued = ks.issue(name="acted on")
    key, key_id = issued.key.reveal(), issued.record.id
    api = Client()
    assert api.get("/plain", headers={"X-API-Key": key}).status_code == 200

    def act(action: str) -> object:
        data = {"action": action, "_selected_action": [key_id]}
        return admin_client.post(LIST, data, follow=True)

    act("disable_keys")
    assert api.get("/plain", headers={"X-API-Key": key}).status_code == 403
    act("enable_keys")
    assert api.get("/plain", headers={"X-API-Key": key}).status_code == 200
    [new_key] = shown_keys(act("rotate_with_grace"))
    assert api.get("/plain", headers={"X-API-Key": new_key}).status_code == 200
    assert api.get("/plain", headers={"X-API-Key": key}).status_code == 200  # its grace
    act("revoke_keys")
    assert api.get("/plain", headers={"X-API-Key": key}).status_code == 401
    assert ks.get(key_id).revoked


def test_the_change_form_updates_through_the_guard(admin_client: Client) -> None:
    issued = guard().issue(name="before", scopes=["read"])
    key_id = issued.record.id
    page = admin_client.get(f"{LIST}{key_id}/change/")
    assert page.status_code == 200
    response = admin_client.post(
        f"{LIST}{key_id}/change/",
        {
            "name": "after",
            "owner": "",
            "scopes": "read",
            "rate_limit": "none",
            "allowed_networks": "",
            "metadata": "{}",
        },
    )
    assert response.status_code == 302
    record = guard().get(key_id)
    assert (record.name, record.rate_limit) == ("after", ())
    admin_client.post(f"{LIST}{key_id}/delete/", {"post": "yes"})
    assert not APIKey.objects.filter(pk=key_id).exists()


def test_the_key_form_sets_a_refill(admin_client: Client) -> None:
    admin_client.post(
        f"{LIST}add/",
        {"name": "metered", "credits": "1", "refill": "+5/day", "metadata": "{}"},
    )
    record = guard().get(APIKey.objects.get(name="metered").pk)
    assert (record.credits, record.refill) == (1, Refill(5, "day", add=True))
    assert record.refilled_at is not None  # set now: the first refill is tomorrow's
    response = admin_client.post(f"{LIST}add/", {"name": "bad", "refill": "lots", "metadata": "{}"})
    assert "not a refill" in response.content.decode()
    assert not APIKey.objects.filter(name="bad").exists()


def test_accounts_are_made_and_changed_through_the_guard(admin_client: Client) -> None:
    ks = guard()
    key = ks.issue(name="of an account", owner="acct_admin").key.reveal()
    api = Client()
    response = admin_client.post(
        f"{ACCOUNTS}add/",
        {"owner": "acct_admin", "credits": "1", "rate_limit": "100/minute", "refill": ""},
    )
    assert response.status_code == 302
    assert ks.account("acct_admin") == AccountRecord(
        "acct_admin", credits=1, rate_limit=(Rate.parse("100/minute"),)
    )
    assert api.get("/plain", headers={"X-API-Key": key}).status_code == 200
    assert api.get("/plain", headers={"X-API-Key": key}).status_code == 402
    again = admin_client.post(f"{ACCOUNTS}add/", {"owner": "acct_admin", "credits": "9"})
    assert "exists" in again.content.decode()
    # The change form shows the account's values and changes only what was changed.
    page = admin_client.get(f"{ACCOUNTS}acct_admin/change/")
    assert "100/minute" in page.content.decode()
    response = admin_client.post(
        f"{ACCOUNTS}acct_admin/change/",
        {"credits": "3", "rate_limit": "100/minute", "refill": "1000/month"},
    )
    assert response.status_code == 302
    account = ks.account("acct_admin")
    assert account is not None
    assert (account.credits, account.refill) == (3, Refill(1000, "month"))
    assert account.refilled_at is not None
    assert api.get("/plain", headers={"X-API-Key": key}).status_code == 200
    # Disabled by the list's action: every key of the account is refused.
    data = {"action": "disable_accounts", "_selected_action": ["acct_admin"]}
    admin_client.post(ACCOUNTS, data, follow=True)
    assert api.get("/plain", headers={"X-API-Key": key}).status_code == 403
    data["action"] = "enable_accounts"
    admin_client.post(ACCOUNTS, data, follow=True)
    assert api.get("/plain", headers={"X-API-Key": key}).status_code == 200
    listing = admin_client.get(ACCOUNTS).content.decode()
    assert "acct_admin" in listing
    assert "1000/month" in listing
    bad = admin_client.post(f"{ACCOUNTS}acct_admin/change/", {"rate_limit": "often"})
    assert "not a rate" in bad.content.decode()
    assert Account.objects.get(pk="acct_admin").rate_limit == ["100/60.0"]

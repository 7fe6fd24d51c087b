"""keysentry's Django middleware and DRF classes, through Django's test clients and DRF's
APIClient: the refusals keep keysentry's codes, bodies and headers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import AsyncClient, Client, override_settings
from rest_framework.test import APIClient

from keysentry import Keysentry
from keysentry.django.conf import guard

from . import settings as test_settings
from .conftest import empty_tables


@pytest.fixture
def ks() -> Keysentry:
    return guard()


@pytest.fixture
def client() -> Client:
    return Client()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def error(response: Any) -> str:
    body = response.json()
    assert body["success"] is False, body
    return str(body["error"]["code"])


def test_a_valid_key_reaches_a_plain_view_with_its_identity(ks: Keysentry, client: Client) -> None:
    issued = ks.issue(name="ci", owner="acct_1", scopes=["read"])
    key = issued.key.reveal()
    for headers in (bearer(key), {"X-API-Key": key}):
        response = client.get("/plain", headers=headers)
        assert response.status_code == 200
        assert response.json() == {"id": issued.record.id, "owner": "acct_1", "scopes": ["read"]}


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "MISSING_API_KEY"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401, "INVALID_API_KEY"),
        ({"Authorization": "Bearer sk_live_garbage"}, 401, "INVALID_API_KEY"),
        ({"X-API-Key": " sk_live_x "}, 401, "INVALID_API_KEY"),
    ],
)
def test_refusals_are_keysentrys(
    client: Client, headers: dict[str, str], status: int, code: str
) -> None:
    response = client.get("/plain", headers=headers)
    assert response.status_code == status
    assert error(response) == code
    assert response["Content-Type"] == "application/json"
    assert response["WWW-Authenticate"].startswith('Bearer realm="api"')


def test_two_different_keys_are_a_bad_request(ks: Keysentry, client: Client) -> None:
    one, two = (ks.issue(name=n).key.reveal() for n in ("one", "two"))
    response = client.get("/plain", headers={**bearer(one), "X-API-Key": two})
    assert (response.status_code, error(response)) == (400, "INVALID_REQUEST")


def test_an_exempt_path_needs_no_key(client: Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "api_key": None}
    # Only the canonical spelling is exempt.
    assert client.get("/HEALTH").status_code == 401


def test_rate_limit_answers_429_with_the_ratelimit_fields(ks: Keysentry, client: Client) -> None:
    key = ks.issue(name="ci", rate_limit="5/minute").key.reveal()
    statuses = []
    for _ in range(5):
        response = client.get("/v1/me", headers=bearer(key))
        statuses.append(response.status_code)
        assert response["RateLimit-Policy"] == '"per-minute";q=5;w=60'
        assert response["RateLimit"].startswith('"per-minute";r=')
    refused = client.get("/v1/me", headers=bearer(key))
    assert statuses == [200] * 5
    assert refused.status_code == 429
    assert error(refused) == "RATE_LIMITED"
    assert int(refused["Retry-After"]) >= 1
    assert refused["RateLimit"].startswith('"per-minute";r=0;t=')


def test_credits_run_out_with_402(ks: Keysentry, client: Client) -> None:
    key = ks.issue(name="metered", credits=1).key.reveal()
    assert client.get("/plain", headers=bearer(key)).status_code == 200
    response = client.get("/plain", headers=bearer(key))
    assert (response.status_code, error(response)) == (402, "INSUFFICIENT_CREDITS")


def test_disabled_and_revoked_keys(ks: Keysentry, client: Client) -> None:
    issued = ks.issue(name="x")
    key = issued.key.reveal()
    assert client.get("/plain", headers=bearer(key)).status_code == 200
    ks.disable(issued.record.id)
    response = client.get("/plain", headers=bearer(key))
    assert (response.status_code, error(response)) == (403, "API_KEY_DISABLED")
    ks.revoke(issued.record.id)
    response = client.get("/plain", headers=bearer(key))
    assert (response.status_code, error(response)) == (401, "INVALID_API_KEY")


def test_drf_sees_the_key_as_auth_and_user(ks: Keysentry) -> None:
    issued = ks.issue(name="ci", owner="acct_9")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.key.reveal()}")
    response = client.get("/v1/me")
    assert response.status_code == 200
    assert response.json() == {"id": issued.record.id, "owner": "acct_9", "user": "acct_9"}


def test_drf_scopes_refuse_with_keysentrys_403_and_give_the_credit_back(ks: Keysentry) -> None:
    reader = ks.issue(name="r", scopes=["read"], credits=5)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {reader.key.reveal()}")
    assert client.get("/v1/items").status_code == 200
    response = client.post("/v1/write", {})
    assert response.status_code == 403
    body = response.json()
    assert body["error"]["code"] == "INSUFFICIENT_SCOPE"
    assert body["error"]["details"] == {"required": ["write"]}
    assert response["WWW-Authenticate"] == (
        'Bearer realm="api", error="insufficient_scope", scope="write"'
    )
    # One credit for the allowed request; the refused one was given back.
    assert ks.get(reader.record.id).credits == 4
    writer = ks.issue(name="w", scopes=["write"])
    client.credentials(HTTP_X_API_KEY=writer.key.reveal())
    assert client.post("/v1/write", {}).status_code == 201


def test_drf_scopes_give_an_accounts_credit_back_to_the_account(ks: Keysentry) -> None:
    """A key whose account pays: the refused request's credit returns to the account, not
    to a balance of the key's own."""
    ks.update_account("acct_refund", credits=3)
    reader = ks.issue(name="r", owner="acct_refund", scopes=["read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {reader.key.reveal()}")
    assert client.get("/v1/items").status_code == 200
    assert client.post("/v1/write", {}).status_code == 403
    account = ks.account("acct_refund")
    assert account is not None
    assert account.credits == 2
    assert ks.get(reader.record.id).credits is None


def test_drf_on_an_exempt_path_answers_401_not_drfs_403() -> None:
    response = APIClient().get("/public/me")
    assert response.status_code == 401
    assert error(response) == "MISSING_API_KEY"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_the_openapi_schema_declares_both_schemes() -> None:
    response = Client().get("/public/schema", headers={"Accept": "application/json"})
    assert response.status_code == 200
    schema = response.json()
    assert schema["components"]["securitySchemes"] == {
        "keysentryBearer": {"type": "http", "scheme": "bearer"},
        "keysentryApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    assert schema["paths"]["/v1/me"]["get"]["security"] == [
        {"keysentryBearer": []},
        {"keysentryApiKey": []},
    ]


def test_drfs_own_schema_generation_declares_them_too() -> None:
    from django.urls import path
    from rest_framework.schemas.openapi import SchemaGenerator as Plain

    from keysentry.django.drf import AutoSchema, SchemaGenerator

    from .views import Me

    class Documented(Me):
        schema = AutoSchema()

    schema = SchemaGenerator(patterns=[path("v1/me", Documented.as_view())]).get_schema()
    assert set(schema["components"]["securitySchemes"]) == {"keysentryBearer", "keysentryApiKey"}
    assert schema["paths"]["/v1/me"]["get"]["security"] == [
        {"keysentryBearer": []},
        {"keysentryApiKey": []},
    ]
    plain = Plain(patterns=[path("v1/me", Documented.as_view())]).get_schema()
    assert "securitySchemes" not in plain.get("components", {})


async def test_the_async_path_uses_the_async_orm(ks: Keysentry) -> None:
    from asgiref.sync import sync_to_async

    issued = await sync_to_async(ks.issue)(name="async", rate_limit="2/minute")
    client = AsyncClient()
    headers = bearer(issued.key.reveal())
    response = await client.get("/async-plain", headers=headers)
    assert response.status_code == 200
    assert response.json() == {"id": issued.record.id, "async": True}
    assert response["RateLimit-Policy"] == '"per-minute";q=2;w=60'
    assert (await client.get("/v1/me", headers=headers)).status_code == 200
    refused = await client.get("/async-plain", headers=headers)
    assert (refused.status_code, error(refused)) == (429, "RATE_LIMITED")
    missing = await client.get("/async-plain")
    assert (missing.status_code, error(missing)) == (401, "MISSING_API_KEY")


def test_the_middleware_is_needed_by_the_drf_classes() -> None:
    middleware = [m for m in test_settings.SETTINGS["MIDDLEWARE"] if "keysentry" not in m]
    with override_settings(MIDDLEWARE=middleware):
        from django.core.exceptions import ImproperlyConfigured

        with pytest.raises(ImproperlyConfigured, match="KeysentryMiddleware"):
            APIClient().get("/v1/me")


def test_unknown_settings_are_named() -> None:
    from django.core.exceptions import ImproperlyConfigured

    with (
        override_settings(KEYSENTRY={"SECRETS": "x" * 32}),
        pytest.raises(ImproperlyConfigured, match="'SECRETS'"),
    ):
        guard()
    with (
        override_settings(KEYSENTRY={"RATE_LIMIT": "often"}),
        pytest.raises(ImproperlyConfigured, match="not a rate"),
    ):
        guard()


@pytest.fixture
def on_postgres(postgres_database: str) -> Iterator[Keysentry]:
    empty_tables(postgres_database)
    options = {**test_settings.SETTINGS["KEYSENTRY"], "DATABASE": postgres_database}
    with override_settings(KEYSENTRY=options):
        yield guard()


@pytest.mark.postgres
def test_on_postgresql(on_postgres: Keysentry) -> None:
    ks = on_postgres
    key = ks.issue(name="pg", rate_limit="2/minute", credits=10).key.reveal()
    client = Client()
    assert [client.get("/plain", headers=bearer(key)).status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]
    assert client.get("/plain").status_code == 401
    [record] = ks.list_keys()
    assert record.credits == 8

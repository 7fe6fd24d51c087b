"""``manage.py keysentry``: the keys commands on the project's database, and the import of
keys minted by the real djangorestframework-api-key."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.hashers import make_password
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from django.utils import timezone
from rest_framework_api_key.models import APIKey as DRFAPIKey

from keysentry.django.conf import guard
from keysentry.django.models import APIKey, ImportedKey

from . import settings as test_settings


def command(*args: str) -> Any:
    out = io.StringIO()
    call_command("keysentry", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def as_json(*args: str) -> Any:
    return json.loads(command(*args, "--json"))


def test_create_prints_a_key_that_the_middleware_accepts_then_limits() -> None:
    created = as_json("keys", "create", "--name", "ci", "--rate-limit", "5/minute")
    assert created["name"] == "ci"
    assert created["rate_limit"] == ["5/minute"]
    key = created["key"]
    client = Client()
    statuses = [client.get("/plain", headers={"X-API-Key": key}).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    assert APIKey.objects.get(pk=created["id"]).digest != key  # the key itself is not stored


def test_the_keys_commands_change_the_keys_the_middleware_reads() -> None:
    created = as_json("keys", "create", "--name", "ops", "--scopes", "read", "--owner", "a1")
    key_id, key = created["id"], created["key"]
    assert [k["id"] for k in as_json("keys", "list")["keys"]] == [key_id]
    assert "digest" not in as_json("keys", "show", key_id)
    assert as_json("keys", "update", key_id, "--scopes", "read,write")["scopes"] == [
        "read",
        "write",
    ]
    client = Client()
    assert client.get("/plain", headers={"X-API-Key": key}).status_code == 200
    rotated = as_json("keys", "rotate", key_id, "--grace", "1h")
    assert rotated["old"]["rotated_to"] == rotated["id"]
    assert client.get("/plain", headers={"X-API-Key": rotated["key"]}).status_code == 200
    assert as_json("keys", "revoke", key_id)["status"] == "revoked"
    assert client.get("/plain", headers={"X-API-Key": key}).status_code == 401
    assert "Revoked key" in command("keys", "revoke", rotated["id"])


def test_bad_input_is_a_usage_error_and_unknown_keys_fail() -> None:
    with pytest.raises(CommandError, match="not a rate"):
        command("keys", "create", "--rate-limit", "often")
    with pytest.raises(CommandError, match="unrecognized arguments: --store"):
        command("keys", "list", "--store", "sqlite:///x.db")
    with pytest.raises(CommandError, match="no key") as failed:
        command("keys", "show", "nosuchkeyid0")
    assert failed.value.returncode == 1


# -- djangorestframework-api-key -------------------------------------------------------------


def mint(name: str, **fields: Any) -> tuple[DRFAPIKey, str]:
    """A key minted by djangorestframework-api-key itself, as its users have them."""
    row, key = DRFAPIKey.objects.create_key(name=name, **fields)
    assert DRFAPIKey.objects.is_valid(key) is not (row.revoked or row.has_expired)
    return row, key


def test_keys_minted_by_djangorestframework_api_key_keep_working_after_the_import() -> None:
    row, key = mint("legacy")
    _, old = mint("older")
    # Before 3.0 the library stored a Django password hash: such a row still exists.
    DRFAPIKey.objects.filter(prefix=old.partition(".")[0]).update(
        hashed_key=make_password(old, hasher="pbkdf2_sha256")
    )
    assert DRFAPIKey.objects.is_valid(old)
    _, revoked = mint("revoked", revoked=True)
    _, expired = mint("expired", expiry_date=timezone.now() - timedelta(days=1))

    client = Client()
    assert client.get("/plain", headers={"Authorization": f"Api-Key {key}"}).status_code == 401
    # Unknown until the import, and remembered as unknown for negative_ttl: let it pass.
    guard().cache.clear()

    imported = as_json("import-drf-api-keys")
    assert sorted(r["name"] for r in imported["imported"]) == [
        "expired",
        "legacy",
        "older",
        "revoked",
    ]
    assert {r["prefix"] for r in imported["imported"]} >= {f"{row.prefix}."}

    # The header clients already send, and keysentry's own ones.
    for headers in ({"Authorization": f"Api-Key {key}"}, {"Authorization": f"Bearer {key}"}):
        response = client.get("/plain", headers=headers)
        assert response.status_code == 200, response.content
    assert client.get("/plain", headers={"X-API-Key": old}).status_code == 200
    assert client.get("/plain", headers={"X-API-Key": revoked}).status_code == 401
    response = client.get("/plain", headers={"X-API-Key": expired})
    assert (response.status_code, response.json()["error"]["code"]) == (401, "EXPIRED_API_KEY")

    # Upgraded on first use: keysentry's digest, the stored hash gone.
    ks = guard()
    for presented in (key, old):
        record = APIKey.objects.get(imported__lookup=presented.partition(".")[0])
        assert bytes.fromhex(record.digest) == ks.digest(presented.encode())
        assert record.digest_mode == "hmac-sha256"
        assert record.imported.hashed_key == ""
        assert record.imported.upgraded_at is not None
    # A fresh process (an empty cache) finds the key by its new digest.
    ks.cache.clear()
    assert client.get("/plain", headers={"X-API-Key": key}).status_code == 200
    # Importing again imports nothing twice.
    again = as_json("import-drf-api-keys")
    assert again["imported"] == []
    assert len(again["skipped"]) == 4


def test_a_wrong_secret_for_an_imported_prefix_upgrades_nothing() -> None:
    _, key = mint("legacy")
    as_json("import-drf-api-keys")
    prefix, _, secret = key.partition(".")
    wrong = f"{prefix}.{secret[::-1]}"
    response = Client().get("/plain", headers={"X-API-Key": wrong})
    assert (response.status_code, response.json()["error"]["code"]) == (401, "INVALID_API_KEY")
    assert ImportedKey.objects.get(lookup=prefix).hashed_key.startswith("sha512$$")
    assert Client().get("/plain", headers={"X-API-Key": key}).status_code == 200


def test_the_admin_revokes_an_imported_key_before_its_first_use() -> None:
    _, key = mint("legacy")
    [record] = as_json("import-drf-api-keys")["imported"]
    guard().revoke(record["id"])
    assert Client().get("/plain", headers={"X-API-Key": key}).status_code == 401


def test_the_import_needs_the_setting() -> None:
    options = {k: v for k, v in test_settings.SETTINGS["KEYSENTRY"].items() if k != "DRF_API_KEYS"}
    with override_settings(KEYSENTRY=options), pytest.raises(CommandError, match="DRF_API_KEYS"):
        command("import-drf-api-keys")


async def test_an_imported_key_is_upgraded_on_the_async_path_too() -> None:
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    _, key = await sync_to_async(mint)("legacy")
    printed = await sync_to_async(command)("import-drf-api-keys")
    assert "Imported 1 key(s) from rest_framework_api_key.APIKey" in printed
    client = AsyncClient()
    response = await client.get("/async-plain", headers={"Authorization": f"Api-Key {key}"})
    assert response.status_code == 200
    imported = await ImportedKey.objects.aget(lookup=key.partition(".")[0])
    assert imported.hashed_key == ""


def test_keys_of_a_key_generator_with_other_lengths() -> None:
    from rest_framework_api_key.crypto import KeyGenerator

    key, prefix, hashed = KeyGenerator(prefix_length=8, secret_key_length=40).generate()
    DRFAPIKey.objects.create(id=f"{prefix}.{hashed}", prefix=prefix, hashed_key=hashed, name="x")
    options = {**test_settings.SETTINGS["KEYSENTRY"], "DRF_API_KEYS": {"secret_key_length": 40}}
    with override_settings(KEYSENTRY=options):
        as_json("import-drf-api-keys")
        assert Client().get("/plain", headers={"X-API-Key": key}).status_code == 200
    with override_settings(KEYSENTRY={**options, "DRF_API_KEYS": "yes"}):
        from django.core.exceptions import ImproperlyConfigured

        with pytest.raises(ImproperlyConfigured, match="DRF_API_KEYS"):
            guard()

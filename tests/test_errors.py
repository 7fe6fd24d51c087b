"""SPEC §5 rows this release covers, through every framework's own test client."""

from __future__ import annotations

from datetime import timedelta

from keysentry import Keysentry
from keysentry.records import utcnow

from .apps import Client


def test_valid_key_reaches_the_app_with_its_identity(client: Client, key: str) -> None:
    r = client.get("/", {"Authorization": f"Bearer {key}"})
    assert r.status == 200
    assert r.body["name"] == "test"
    assert r.body["owner"] == "acct_1"
    assert r.body["scopes"] == ["read"]
    assert key.startswith("sk_live_" + r.body["id"])


def test_scheme_is_case_insensitive(client: Client, key: str) -> None:
    for scheme in ("bearer", "BEARER", "BeArEr"):
        assert client.get("/", {"Authorization": f"{scheme} {key}"}).status == 200


def test_x_api_key_header(client: Client, key: str) -> None:
    assert client.get("/", {"X-API-Key": key}).status == 200


def test_missing_key_is_401_with_bearer_challenge(client: Client) -> None:
    r = client.get("/")
    assert r.status == 401
    assert r.code == "MISSING_API_KEY"
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert r.headers["Content-Type"] == "application/json"
    assert r.body["success"] is False


def test_key_without_bearer_prefix_names_the_cause(client: Client, key: str) -> None:
    r = client.get("/", {"Authorization": key})
    assert r.status == 401
    assert r.code == "INVALID_API_KEY"
    assert "Bearer" in r.message
    assert "missing" in r.message
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


def test_one_character_changed_is_invalid(client: Client, key: str) -> None:
    i = len("sk_live_") + 20
    changed = key[:i] + ("A" if key[i] != "A" else "B") + key[i + 1 :]
    r = client.get("/", {"Authorization": f"Bearer {changed}"})
    assert r.status == 401
    assert r.code == "INVALID_API_KEY"
    assert "checksum" in r.message


def test_unknown_key_with_valid_checksum_is_invalid(client: Client, ks: Keysentry) -> None:
    stranger = ks.new_key(name="never stored").key.reveal()
    r = client.get("/", {"Authorization": f"Bearer {stranger}"})
    assert (r.status, r.code) == (401, "INVALID_API_KEY")


def test_wrong_secret_for_a_known_id_is_invalid(
    client: Client, ks: Keysentry, store: object
) -> None:
    issued = ks.issue(name="victim")
    forged = Keysentry(ks.store, secret="another-secret-0123456789abcdef").new_key().key.reveal()
    # Same id, another secret: splice the victim's id into a freshly checksummed key.
    from keysentry.keys import _checksum

    head = f"sk_live_{issued.record.id}" + forged[len("sk_live_") + 12 : -8]
    spliced = head + _checksum(head.encode()).decode()
    r = client.get("/", {"Authorization": f"Bearer {spliced}"})
    assert (r.status, r.code) == (401, "INVALID_API_KEY")


def test_other_scheme_is_refused(client: Client) -> None:
    r = client.get("/", {"Authorization": "Basic dXNlcjpwYXNz"})
    assert (r.status, r.code) == (401, "INVALID_API_KEY")
    assert "Bearer" in r.message


def test_revoked_key_is_invalid(client: Client, ks: Keysentry) -> None:
    issued = ks.issue(name="gone")
    key = issued.key.reveal()
    assert client.get("/", {"X-API-Key": key}).status == 200
    ks.revoke(issued.record.id)
    r = client.get("/", {"X-API-Key": key})
    assert (r.status, r.code) == (401, "INVALID_API_KEY")


def test_expired_key_names_when(client: Client, ks: Keysentry) -> None:
    when = utcnow() - timedelta(minutes=1)
    key = ks.issue(name="old", expires_at=when).key.reveal()
    r = client.get("/", {"X-API-Key": key})
    assert (r.status, r.code) == (401, "EXPIRED_API_KEY")
    assert r.body["error"]["details"]["expired_at"] == when.isoformat()
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


def test_disabled_key_is_403(client: Client, ks: Keysentry) -> None:
    issued = ks.issue(name="paused")
    ks.store.update(issued.record.id, {"disabled": True})  # type: ignore[union-attr]
    ks.invalidate(issued.record)
    r = client.get("/", {"X-API-Key": issued.key.reveal()})
    assert (r.status, r.code) == (403, "API_KEY_DISABLED")
    assert "WWW-Authenticate" not in r.headers


def test_two_different_keys_are_400(client: Client, ks: Keysentry, key: str) -> None:
    other = ks.issue(name="other").key.reveal()
    r = client.get("/", {"Authorization": f"Bearer {key}", "X-API-Key": other})
    assert (r.status, r.code) == (400, "INVALID_REQUEST")
    assert 'error="invalid_request"' in r.headers["WWW-Authenticate"]


def test_same_key_in_both_headers_is_accepted(client: Client, key: str) -> None:
    assert client.get("/", {"Authorization": f"Bearer {key}", "X-API-Key": key}).status == 200

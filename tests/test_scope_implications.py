"""Scope implications (the guard's ``scope_implications``): scopes that grant others.

By default ``admin`` holds every scope; ``{}`` turns that off; ``{"write": ["read"]}`` lets a
write key read; implications chain. Driven through the apps of ``test_scopes`` (Starlette,
FastAPI, Flask, each over its own test client):

  GET  /read    needs "read"
  GET  /both    needs "read" and "write"
  GET  /any     needs a key
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keysentry import KeyIdentity, Keysentry, MemoryStore

from .conftest import SECRET
from .test_scopes import EXEMPT, Client, _insufficient, fastapi_app


def _guard(store: MemoryStore, **kwargs: Any) -> Keysentry:
    return Keysentry(store, secret=SECRET, exempt=EXEMPT, **kwargs)


def _key(ks: Keysentry, *scopes: str) -> str:
    return ks.issue(name="scoped", scopes=scopes).key.reveal()


@pytest.fixture(params=["starlette", "fastapi", "flask"])
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_admin_holds_every_scope_by_default(framework: str, store: MemoryStore) -> None:
    ks = _guard(store)
    client = Client(framework, ks)
    admin = _key(ks, "admin")
    for method, path in [("GET", "/read"), ("GET", "/both"), ("GET", "/any")]:
        r = client.request(method, path, admin)
        assert r.status == 200, (path, r.body)
        # The app sees the key's own scopes, as stored.
        assert r.body["scopes"] == ["admin"]
    # Nothing else is implied: a key with other scopes is refused as before.
    _insufficient(client.get("/both", _key(ks, "read", "billing")), ["read", "write"])


def test_no_implications_when_turned_off(framework: str, store: MemoryStore) -> None:
    for off in ({}, None):
        ks = _guard(store, scope_implications=off)
        client = Client(framework, ks)
        admin = _key(ks, "admin")
        # The refusal names the scopes the route needs, not what could have granted them.
        _insufficient(client.get("/read", admin), ["read"])
        _insufficient(client.get("/both", admin), ["read", "write"])
        assert client.get("/any", admin).status == 200


def test_write_implies_read(framework: str, store: MemoryStore) -> None:
    # A mapping given replaces the default: admin grants nothing here.
    ks = _guard(store, scope_implications={"write": ["read"]})
    client = Client(framework, ks)
    writer = _key(ks, "write")
    r = client.get("/read", writer)
    assert (r.status, r.body["scopes"]) == (200, ["write"])
    assert client.get("/both", writer).status == 200
    _insufficient(client.get("/both", _key(ks, "read")), ["read", "write"])
    _insufficient(client.get("/read", _key(ks, "admin")), ["read"])


def test_implications_chain(framework: str, store: MemoryStore) -> None:
    ks = _guard(
        store,
        scope_implications={"owner": "maintainer", "maintainer": ["write"], "write": "read"},
    )
    client = Client(framework, ks)
    owner = _key(ks, "owner")
    assert client.get("/both", owner).status == 200
    # Down the chain, not up it.
    _insufficient(client.get("/both", _key(ks, "read")), ["read", "write"])
    # A chain to "*": root -> admin -> every scope.
    ks = _guard(store, scope_implications={"root": ["admin"], "admin": "*"})
    client = Client(framework, ks)
    assert client.get("/both", _key(ks, "root")).status == 200


def test_cycles_make_scopes_equivalent(framework: str, store: MemoryStore) -> None:
    ks = _guard(store, scope_implications={"read": "write", "write": ["read"]})
    client = Client(framework, ks)
    assert client.get("/both", _key(ks, "read")).status == 200
    assert client.get("/both", _key(ks, "write")).status == 200
    _insufficient(client.get("/read", _key(ks, "other")), ["read"])


def _identity(ks: Keysentry, *scopes: str) -> KeyIdentity:
    verdict = ks.authenticate(_key(ks, *scopes).encode())
    identity = getattr(verdict, "identity", None)
    assert isinstance(identity, KeyIdentity), verdict
    return identity


def test_the_identity_keeps_its_stored_scopes_and_says_what_it_holds(
    store: MemoryStore,
) -> None:
    ks = _guard(store, scope_implications={"admin": "*", "write": ["read"]})
    writer = _identity(ks, "write")
    assert writer.scopes == {"write"}
    assert writer.effective_scopes == {"write", "read"}
    assert not writer.all_scopes
    assert (writer.has_scope("read"), writer.has_scope("admin")) == (True, False)
    assert writer.has_scopes(["read", "write"])
    assert not writer.has_scopes(["read", "admin"])
    admin = _identity(ks, "admin")
    assert admin.scopes == admin.effective_scopes == {"admin"}
    assert admin.all_scopes
    assert admin.has_scope("billing")
    assert admin.has_scopes(["x", "y"])
    # Worked out once per key, when its verdict is cached: each request gets the same object.
    token = _key(ks, "write").encode()
    first, second = ks.authenticate(token), ks.authenticate(token)
    assert getattr(first, "identity", None) is getattr(second, "identity", None)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("admin", TypeError, r"^scope_implications must be a mapping of a scope to the scopes"),
        ([("admin", "*")], TypeError, r"^scope_implications must be a mapping"),
        ({"*": "read"}, ValueError, r"^scope_implications: '\*' means every scope: it may be"),
        ({"a b": "read"}, ValueError, r"^scope_implications key: invalid scope 'a b'"),
        ({7: "read"}, ValueError, r"^scope_implications key: invalid scope 7"),
        ({"write": "re ad"}, ValueError, r"^scope_implications\['write'\]: invalid scope 're ad'"),
        ({"write": ["read", ""]}, ValueError, r"^scope_implications\['write'\]: invalid scope ''"),
        ({"write": [None]}, ValueError, r"^scope_implications\['write'\]: invalid scope None"),
        ({"write": 7}, TypeError, r"^scope_implications\['write'\] must be a scope, '\*'"),
        ({"write": b"read"}, TypeError, r"^scope_implications\['write'\] must be .*not bytes"),
        ({"write": {"read": 1}}, TypeError, r"^scope_implications\['write'\] must be .*not dict"),
    ],
)
def test_bad_implications_fail_when_the_guard_is_made(
    store: MemoryStore, value: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        _guard(store, scope_implications=value)


def test_the_setting_is_kept_checked(store: MemoryStore) -> None:
    ks = _guard(store, scope_implications={"write": "read", "admin": ("*", "*")})
    assert dict(ks.settings.scope_implications or {}) == {"write": ("read",), "admin": ("*",)}
    assert dict(_guard(store).settings.scope_implications or {}) == {"admin": ("*",)}


# -- OpenAPI ---------------------------------------------------------------------------------------


def test_openapi_says_which_scopes_grant_which(store: MemoryStore) -> None:
    ks = _guard(store, scope_implications={"admin": "*", "write": ["read"]})
    schema = fastapi_app(ks).openapi()
    implied = " Scopes imply others: `admin` grants every scope; `write` grants `read`."
    for scheme in schema["components"]["securitySchemes"].values():
        assert scheme["description"].endswith(implied), scheme
    paths = schema["paths"]
    read = paths["/read"]["get"]["responses"]["403"]["description"]
    assert "(the key lacks one of: read; `read` is also granted by `admin`, `write`)" in read
    both = paths["/both"]["get"]["responses"]["403"]["description"]
    assert (
        "(the key lacks one of: read, write; `read` is also granted by `admin`, `write`; "
        "`write` is also granted by `admin`)"
    ) in both
    stats = paths["/admin/stats"]["get"]["responses"]["403"]["description"]
    assert "(the key lacks one of: admin)" in stats  # nothing else grants admin
    # The scopes a route requires are still its own.
    assert paths["/read"]["get"]["security"][0] == {"HTTPBearer": ["read"]}


def test_openapi_says_nothing_of_implications_when_there_are_none(store: MemoryStore) -> None:
    schema = fastapi_app(_guard(store, scope_implications={})).openapi()
    for scheme in schema["components"]["securitySchemes"].values():
        assert "imply" not in scheme["description"]
    read = schema["paths"]["/read"]["get"]["responses"]["403"]["description"]
    assert "(the key lacks one of: read)" in read


# -- the closure -----------------------------------------------------------------------------------

NAMES = ["a", "b", "c", "d", "e", "f"]
_implied = st.lists(st.sampled_from([*NAMES, "*"]), max_size=3)
_rules = st.dictionaries(
    st.sampled_from(NAMES),
    st.one_of(_implied, st.sampled_from([*NAMES, "*"])),  # a list, or one scope as a str
    max_size=6,
)


def _fixpoint(
    rules: Mapping[str, str | Iterable[str]], scopes: Iterable[str]
) -> tuple[set[str], bool]:
    """What a key holds, worked out the slow way: apply every rule until nothing changes."""
    held, every = set(scopes), False
    changed = True
    while changed:
        changed = False
        for scope in list(held):
            implied = rules.get(scope, ())
            for name in [implied] if isinstance(implied, str) else implied:
                if name == "*":
                    every = True
                elif name not in held:
                    held.add(name)
                    changed = True
    return held, every


@settings(max_examples=150, deadline=None)
@given(rules=_rules, scopes=st.frozensets(st.sampled_from([*NAMES, "g"]), max_size=4))
def test_effective_scopes_are_the_closure(
    rules: dict[str, str | list[str]], scopes: frozenset[str]
) -> None:
    ks = Keysentry(MemoryStore(), scope_implications=rules, usage_interval=None, failure_limit=None)
    identity = _identity(ks, *scopes)
    held, every = _fixpoint(rules, scopes)
    assert identity.scopes == scopes  # stored scopes unchanged
    assert identity.effective_scopes >= scopes  # a superset
    assert (set(identity.effective_scopes), identity.all_scopes) == (held, every)
    # Transitive: closed under every rule.
    for scope in identity.effective_scopes:
        implied = rules.get(scope, ())
        for name in [implied] if isinstance(implied, str) else implied:
            assert identity.all_scopes if name == "*" else name in identity.effective_scopes
    # Idempotent: a key holding the effective scopes holds nothing more.
    again = _identity(ks, *identity.effective_scopes)
    assert (again.effective_scopes, again.all_scopes) == (
        identity.effective_scopes,
        identity.all_scopes,
    )
    assert all(identity.has_scope(s) for s in identity.effective_scopes)
    assert identity.has_scope("zzz") is identity.all_scopes

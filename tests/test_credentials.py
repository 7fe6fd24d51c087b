"""SPEC §2: finding the one credential a request presents, and naming what is wrong with it.

Each malformed case of the table in ``credentials.py`` goes through every framework's own test
client; the property tests then throw arbitrary bytes at the reader and at both middlewares,
called the way servers call them, and require an answer of 200, 400 or 401 every time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keysentry import (
    ASGIMiddleware,
    Denial,
    ImportedFormat,
    Keysentry,
    MemoryStore,
    WSGIMiddleware,
)
from keysentry.credentials import CredentialReader

from .apps import Client
from .conftest import SECRET
from .raw import asgi_call, environ, http_scope, wsgi_call

Headers = Callable[[str], Any]

BAD_CREDENTIALS: list[tuple[str, Headers, int, str, str]] = [
    # (case, headers for a valid key, status, code, what the message must say)
    ("nothing", lambda k: {}, 401, "MISSING_API_KEY", "no api key was sent"),
    ("no Bearer prefix", lambda k: {"Authorization": k}, 401, "", "missing the 'bearer '"),
    (
        "Basic scheme",
        lambda k: {"Authorization": "Basic dXNlcjpwYXNz"},
        401,
        "",
        "other than bearer",
    ),
    ("Token scheme", lambda k: {"Authorization": f"Token {k}"}, 401, "", "other than bearer"),
    ("empty Authorization", lambda k: {"Authorization": ""}, 401, "", "empty"),
    ("Bearer alone", lambda k: {"Authorization": "Bearer"}, 401, "", "empty"),
    ("empty X-API-Key", lambda k: {"X-API-Key": ""}, 401, "", "empty"),
    ("double space", lambda k: {"Authorization": f"Bearer  {k}"}, 401, "", "exactly one token"),
    ("two tokens", lambda k: {"Authorization": f"Bearer {k} {k}"}, 401, "", "exactly one token"),
    ("two bare tokens", lambda k: {"X-API-Key": f"{k} {k}"}, 401, "", "exactly one token"),
    ("trailing space", lambda k: {"X-API-Key": k + " "}, 401, "", "whitespace"),
    ("leading space", lambda k: {"X-API-Key": " " + k}, 401, "", "whitespace"),
    ("trailing tab", lambda k: {"Authorization": f"Bearer {k}\t"}, 401, "", "whitespace"),
    ("leading space before Bearer", lambda k: {"Authorization": f" Bearer {k}"}, 401, "", "white"),
    ("Bearer in X-API-Key", lambda k: {"X-API-Key": f"Bearer {k}"}, 401, "", "the bare key"),
    ("10 000 characters", lambda k: {"X-API-Key": "A" * 10_000}, 401, "", "too long"),
    ("long Bearer", lambda k: {"Authorization": "Bearer " + "A" * 10_000}, 401, "", "too long"),
    ("not a key", lambda k: {"X-API-Key": "hunter2"}, 401, "", "not in a recognised format"),
    ("truncated key", lambda k: {"X-API-Key": k[:-1]}, 401, "", "not in a recognised format"),
]


@pytest.mark.parametrize(
    ("headers", "status", "code", "cause"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_CREDENTIALS],
)
def test_malformed_credential_is_refused_naming_the_cause(
    client: Client, key: str, headers: Headers, status: int, code: str, cause: str
) -> None:
    r = client.get("/", headers(key))
    assert r.status == status
    assert r.code == (code or "INVALID_API_KEY")
    assert cause in r.message.lower()
    challenge = r.headers["WWW-Authenticate"]
    if r.code == "MISSING_API_KEY":
        assert challenge == 'Bearer realm="api"'
    else:
        assert challenge == 'Bearer realm="api", error="invalid_token"'


def test_over_long_value_is_refused_before_hashing(
    client: Client, store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A format that would take 10 000 characters if the length limit did not come first: the
    # only way a long value could otherwise reach the digest and the store.
    huge = ImportedFormat("big_", length=9_996, alphabet="A")
    ks = Keysentry(store, secret=SECRET, imported=[huge])
    key = ks.issue(name="ordinary").key.reveal()
    c = Client(client.framework, ks)
    digests: list[bytes] = []
    digest = ks.digest

    def counting(token: bytes) -> bytes:
        digests.append(token)
        return digest(token)

    monkeypatch.setattr(ks._pipeline, "_digest", counting)
    value = "big_" + "A" * 9_996
    assert len(value) == 10_000
    for headers in ({"X-API-Key": value}, {"Authorization": f"Bearer {value}"}):
        r = c.get("/", headers)
        assert (r.status, r.code) == (401, "INVALID_API_KEY")
        assert "too long" in r.message
    assert digests == []
    # The counter is live: a key of ordinary length is hashed once.
    assert c.get("/", {"X-API-Key": key}).status == 200
    assert digests == [key.encode()]


def test_repeated_authorization_with_the_same_key_is_accepted(client: Client, key: str) -> None:
    r = client.get("/", [("Authorization", f"Bearer {key}"), ("Authorization", f"Bearer {key}")])
    assert r.status == 200
    assert r.body["name"] == "test"


def test_repeated_authorization_with_different_keys_is_400(
    client: Client, ks: Keysentry, key: str
) -> None:
    other = ks.issue(name="other").key.reveal()
    r = client.get("/", [("Authorization", f"Bearer {key}"), ("Authorization", f"Bearer {other}")])
    assert (r.status, r.code) == (400, "INVALID_REQUEST")
    assert "two different credentials" in r.message
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_request"'


def test_repeated_authorization_with_a_bad_value_names_that_value(client: Client, key: str) -> None:
    r = client.get("/", [("Authorization", f"Bearer {key}"), ("Authorization", key)])
    assert (r.status, r.code) == (401, "INVALID_API_KEY")
    assert "Bearer" in r.message


def test_same_key_in_both_headers_is_accepted(client: Client, key: str) -> None:
    r = client.get("/", {"Authorization": f"bearer {key}", "X-API-Key": key})
    assert r.status == 200
    assert r.body["name"] == "test"


def test_query_parameter_is_ignored_unless_configured(client: Client, key: str) -> None:
    r = client.get(f"/?api_key={key}")
    assert (r.status, r.code) == (401, "MISSING_API_KEY")


def test_query_parameter_is_read_when_configured(client: Client, store: MemoryStore) -> None:
    ks = Keysentry(store, secret=SECRET, query_param="api_key")
    key = ks.issue(name="from query").key.reveal()
    other = ks.issue(name="other").key.reveal()
    c = Client(client.framework, ks)

    r = c.get(f"/?api_key={key}")
    assert r.status == 200
    assert r.body["name"] == "from query"
    assert c.get(f"/?api_key={key}", {"X-API-Key": key}).status == 200
    assert c.get(f"/?api_key={key}&api_key={key}").status == 200

    r = c.get(f"/?api_key={key}", {"Authorization": f"Bearer {other}"})
    assert (r.status, r.code) == (400, "INVALID_REQUEST")
    r = c.get(f"/?api_key={key}&api_key={other}")
    assert (r.status, r.code) == (400, "INVALID_REQUEST")
    r = c.get("/?api_key=")
    assert (r.status, r.code) == (401, "INVALID_API_KEY")
    assert "empty" in r.message
    assert c.get(f"/?other={key}").code == "MISSING_API_KEY"


# -- properties ------------------------------------------------------------------------------------

MAX_LENGTH = 256
_WHITESPACE = b" \t\r\n\x0b\x0c"

values = st.one_of(
    st.binary(max_size=300),
    st.builds(
        bytes.__add__,
        st.sampled_from([b"Bearer ", b"bearer ", b"BEARER  ", b"Basic ", b" ", b"Bearer\t", b""]),
        st.binary(max_size=300),
    ),
    st.text(max_size=80).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.integers(MAX_LENGTH - 8, MAX_LENGTH + 16).map(lambda n: b"k" * n),
)
maybe = st.none() | values


def _check(reader_result: bytes | Denial) -> None:
    if isinstance(reader_result, Denial):
        assert reader_result.status in (400, 401)
        assert reader_result.message
        return
    assert isinstance(reader_result, bytes)
    assert 0 < len(reader_result) <= MAX_LENGTH
    assert not any(b in _WHITESPACE for b in reader_result)


@settings(max_examples=300, deadline=None)
@given(authorization=maybe, api_key=maybe, query=maybe)
def test_reader_read_never_raises(
    authorization: bytes | None, api_key: bytes | None, query: bytes | None
) -> None:
    reader = CredentialReader(api_key_header="X-API-Key", query_param="k", max_length=MAX_LENGTH)
    _check(reader.read(authorization, api_key, query))


@settings(max_examples=300, deadline=None)
@given(
    authorization=st.lists(values, max_size=3),
    api_key=st.lists(values, max_size=3),
    query=st.lists(values, max_size=3),
)
def test_reader_read_all_never_raises(
    authorization: list[bytes], api_key: list[bytes], query: list[bytes]
) -> None:
    reader = CredentialReader(api_key_header="X-API-Key", query_param="k", max_length=MAX_LENGTH)
    result = reader.read_all(authorization, api_key, query)
    _check(result)
    if not (authorization or api_key or query):
        assert isinstance(result, Denial)
        assert result.code == "MISSING_API_KEY"


def _guarded() -> tuple[Keysentry, bytes]:
    ks = Keysentry(
        MemoryStore(),
        secret=SECRET,
        exempt=["/health", "/public/*"],
        query_param="api_key",
        strip_credentials=True,
    )
    return ks, ks.issue(name="prop").key.reveal().encode()


_KS, _KEY = _guarded()


def _around_key(key: bytes) -> st.SearchStrategy[bytes]:
    return st.sampled_from(
        [key, b"Bearer " + key, b"bearer " + key, key + b",", key + b"\x00", b"Bearer  " + key]
    )


header_values = st.one_of(
    st.binary(max_size=300),
    _around_key(_KEY),
    st.integers(1_000, 100_000).map(lambda n: b"\xff" * n),
    st.text(max_size=50).map(lambda s: s.encode("utf-8", "surrogatepass")),
)
header_names = st.one_of(
    st.sampled_from(
        [b"authorization", b"x-api-key", b"x_api_key", b"origin", b"access-control-request-method"]
    ),
    st.binary(max_size=20),
)


async def _ok_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@settings(max_examples=300, deadline=None)
@given(
    headers=st.lists(st.tuples(header_names, header_values), max_size=6),
    method=st.sampled_from(["GET", "POST", "OPTIONS"]),
    path=st.one_of(st.sampled_from(["/", "/health", "/health/../x"]), st.text(max_size=30)),
    query=st.binary(max_size=100),
    with_state=st.booleans(),
)
def test_asgi_middleware_answers_200_400_or_401_for_any_header_bytes(
    headers: list[tuple[bytes, bytes]], method: str, path: str, query: bytes, with_state: bool
) -> None:
    app = ASGIMiddleware(_ok_app, _KS)
    scope = http_scope(method=method, query_string=query)
    scope["path"] = path
    scope["headers"] = headers
    if with_state:
        scope["state"] = {}
    sent = asgi_call(app, scope, [{"type": "http.request", "body": b""}])
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] in (200, 400, 401)


latin1 = st.text(st.characters(max_codepoint=255), max_size=300)
environ_values = st.one_of(
    latin1,
    _around_key(_KEY).map(lambda b: b.decode("latin-1")),
    st.tuples(_around_key(_KEY), _around_key(_KEY)).map(lambda t: b", ".join(t).decode()),
    st.integers(1_000, 100_000).map(lambda n: "\xff," * n),
)


@settings(max_examples=300, deadline=None)
@given(
    authorization=st.none() | environ_values,
    api_key=st.none() | environ_values,
    origin=st.none() | latin1,
    method=st.sampled_from(["GET", "POST", "OPTIONS"]),
    path=st.one_of(st.sampled_from(["/", "/health", "/public/x"]), latin1),
    query=latin1,
)
def test_wsgi_middleware_answers_200_400_or_401_for_any_environ(
    authorization: str | None,
    api_key: str | None,
    origin: str | None,
    method: str,
    path: str,
    query: str,
) -> None:
    def ok_app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    env = environ(REQUEST_METHOD=method, PATH_INFO=path, QUERY_STRING=query)
    for name, value in (
        ("HTTP_AUTHORIZATION", authorization),
        ("HTTP_X_API_KEY", api_key),
        ("HTTP_ORIGIN", origin),
        ("HTTP_ACCESS_CONTROL_REQUEST_METHOD", origin),
    ):
        if value is not None:
            env[name] = value
    r = wsgi_call(WSGIMiddleware(ok_app, _KS), env)
    assert r.status in (200, 400, 401)

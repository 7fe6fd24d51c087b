"""Secrets in URLs and in driver errors (SPEC §9: a secret never reaches a log line, an error
or a repr).

A URL's password is whatever the library that connects reads from it: SQLAlchemy's
``make_url`` for SQL stores, redis-py's ``parse_url`` for Redis. They disagree on where a
password ends (SQLAlchemy takes '/', '#' and '?' raw; urllib, under redis-py, ends the
authority there), and users write passwords raw or percent-encoded, in the userinfo or as a
``?password=`` parameter. Whichever way, what keysentry shows of the URL must not hold it.
"""

from __future__ import annotations

import asyncio
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from redis.connection import parse_url
from sqlalchemy.engine import make_url

from keysentry import DuplicateKey
from keysentry._urls import read_redis_url
from keysentry.invalidation import RedisInvalidator
from keysentry.ratelimit.redis import RedisLimiter
from keysentry.stores.redis import RedisStore
from keysentry.stores.sql import SQLStore
from keysentry.stores.url import from_url, safe_url, scrub
from keysentry.testing import make_record

from .services import PG_URL, table_prefix

#: Every character, the ones URL parsers cut at among the likeliest.
_CHAR = st.one_of(
    st.sampled_from(list("/#?@:%&=+;[] ")),
    st.characters(exclude_categories=("Cs",)),
)
PASSWORDS = st.text(_CHAR, min_size=4, max_size=24)
SECRET_PARAMS = st.sampled_from(
    ["password", "PASSWORD", "Password", "sslpassword", "auth_token", "client_secret"]
)
_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _sql_secrets(url: str) -> list[str]:
    """What SQLAlchemy reads from ``url`` as secrets: the password, secret-named params."""
    try:
        parsed = make_url(url)
    except Exception:  # a URL it cannot read gives it no password
        return []
    found = [parsed.password or ""]
    for name, value in parsed.query.items():
        if any(word in name.lower() for word in ("pass", "secret", "token")):
            found += [value] if isinstance(value, str) else list(value)
    return [s for s in found if s]


def _redis_secrets(url: str) -> list[str]:
    try:
        kwargs = parse_url(url)
    except ValueError:
        return []
    return [
        str(v)
        for k, v in kwargs.items()
        if v and any(word in k.lower() for word in ("pass", "secret", "token"))
    ]


def assert_hidden(masked: str, shown: str, *secrets: str) -> None:
    """None of ``secrets``, nor their percent-encodings, is in ``masked``; a fragment that
    the URL's public parts (``shown``: the URL with the secret replaced by ***) hold anyway
    proves nothing and is not checked."""
    for secret in secrets:
        for form in {secret, quote(secret, safe=""), quote_plus(secret), quote(secret)}:
            if form and form not in shown:
                assert form not in masked, (form, masked)


# -- the mask, over generated passwords ----------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+psycopg", "postgres"])
@given(password=PASSWORDS, encoded=st.booleans())
@example(password="Le/ak", encoded=False)
@example(password="Le#ak", encoded=False)
@example(password="Le?ak", encoded=False)
@example(password="p@ss:w/d", encoded=False)
@_SETTINGS
def test_an_sql_password_is_never_shown(scheme: str, password: str, encoded: bool) -> None:
    written = quote(password, safe="") if encoded else password
    template = f"{scheme}://app:{{}}@db.example:5432/keys?sslmode=require"
    url, shown = template.format(written), template.format("***")
    read = _sql_secrets(url)
    if encoded or not ({"@", "%"} & set(password)):  # SQLAlchemy reads these back exactly
        assert read == [password]
    masked = safe_url(url)
    assert_hidden(masked, shown, password, *read)
    if read == [password] and "=" not in password:
        assert masked == shown  # masked, and no more than that


@pytest.mark.parametrize("scheme", ["redis", "rediss"])
@given(password=PASSWORDS, encoded=st.booleans())
@example(password="Le/ak", encoded=False)
@example(password="Le%2Fak", encoded=False)
@example(password="p@ss", encoded=False)
@_SETTINGS
def test_a_redis_password_is_never_shown(scheme: str, password: str, encoded: bool) -> None:
    written = quote(password, safe="") if encoded else password
    template = f"{scheme}://app:{{}}@cache.example:6380/0"
    url, shown = template.format(written), template.format("***")
    read = _redis_secrets(url)
    if encoded:
        assert read == [password]
    masked = safe_url(url)
    assert_hidden(masked, shown, password, *read)
    if read == [password] and "=" not in password:
        assert masked == shown


@pytest.mark.parametrize(
    "template",
    [
        "redis+cluster://app:{}@c1.example:7000,c2.example:7001",
        "redis+cluster://:{}@c1.example:7000/0?namespace=ks",
        "redis+sentinel://:{}@s1.example:26379,s2.example:26379/mymaster/2",
        # limits writes a Sentinel password alone before '@' too.
        "redis+sentinel://{}@s1.example:26379/mymaster",
    ],
)
@given(password=PASSWORDS, encoded=st.booleans())
@example(password="Le/ak", encoded=False)
@example(password="Le%2Fak", encoded=False)
@example(password="p@ss:w/d", encoded=False)
@example(password="Le?ak", encoded=False)
@_SETTINGS
def test_a_cluster_or_sentinel_password_is_never_shown(
    template: str, password: str, encoded: bool
) -> None:
    written = quote(password, safe="") if encoded else password
    if template.startswith("redis+sentinel://{}") and not encoded:
        assume(":" not in password)  # else it is a user name and a password: shown below
    url, shown = template.format(written), template.format("***")
    read = read_redis_url(url)
    if encoded or not ({"%"} & set(password)):
        assert read.password == password  # what keysentry connects with
    masked = safe_url(url)
    assert_hidden(masked, shown, password)
    assert masked == shown


def test_a_cluster_or_sentinel_url_is_read_as_limits_writes_it() -> None:
    read = read_redis_url("redis+sentinel://u:p%40ss@s1:26380,[::1],s3/mymaster/3?namespace=x&a=b")
    assert (read.username, read.password, read.service, read.db) == ("u", "p@ss", "mymaster", 3)
    assert read.nodes == (("s1", 26380), ("::1", 26379), ("s3", 26379))
    assert (read.namespace, read.query) == ("x", "a=b")
    assert read.url == "redis+sentinel://u:p%40ss@s1:26380,[::1],s3/mymaster/3?a=b"
    assert "p%40ss" not in repr(read)
    read = read_redis_url("redis+cluster://c1:7000,c2:7001/0")
    assert (read.nodes, read.password, read.service) == ((("c1", 7000), ("c2", 7001)), None, None)
    for bad in (
        "redis+cluster://c1:7000/1",  # a cluster has database 0 only
        "redis+sentinel://s1:26379",  # no service
        "redis+sentinel://s1:26379/m/x",  # not a database
        "redis+cluster://c1:99999",
        "redis+cluster://:pw@",
        "memcached://c1",
    ):
        with pytest.raises(ValueError, match=r"."):
            read_redis_url(bad)


@given(password=PASSWORDS, name=SECRET_PARAMS, in_userinfo=st.booleans())
@example(password="hunter2", name="password", in_userinfo=False)
@_SETTINGS
def test_a_unix_socket_password_is_never_shown(password: str, name: str, in_userinfo: bool) -> None:
    if in_userinfo:
        template = "unix://:{}@/run/redis/redis.sock?db=0"
        url = template.format(quote(password, safe=""))
    else:
        template = f"unix:///run/redis/redis.sock?db=0&{name}={{}}&client_name=app"
        url = template.format(quote_plus(password))
    shown = template.format("***")
    read = _redis_secrets(url)
    assert read == [password]
    masked = safe_url(url)
    assert_hidden(masked, shown, password)
    assert masked == shown


@pytest.mark.parametrize(
    "template",
    [
        "postgresql://app@db.example/keys?{name}={value}",
        "postgresql+psycopg://db.example/keys?application_name=x&{name}={value}&sslmode=require",
        "redis://cache.example:6379/0?{name}={value}",
        "rediss://app@cache.example/0?socket_timeout=1&{name}={value}",
    ],
)
@given(password=PASSWORDS, name=SECRET_PARAMS, encoded=st.booleans())
@example(password="hunter2", name="password", encoded=True)
@_SETTINGS
def test_a_password_parameter_is_never_shown(
    template: str, password: str, name: str, encoded: bool
) -> None:
    # Written raw, '&' or '#' end the value where the parser reads it (password=0&0= is the
    # password 0 and a parameter named 0): that is another URL, whose other parts show.
    assume(encoded or not any(c in password for c in "&#"))
    url = template.format(name=name, value=quote_plus(password) if encoded else password)
    shown = template.format(name=name, value="***")
    read = _redis_secrets(url) if url.startswith("redis") else _sql_secrets(url)
    if encoded:
        assert read == [password]
    masked = safe_url(url)
    assert_hidden(masked, shown, password, *read)
    if encoded:
        assert masked == shown


@given(password=PASSWORDS)
@_SETTINGS
def test_sqlite_urls_have_no_password_and_show_as_given(password: str) -> None:
    assert safe_url("sqlite:///keys.db") == "sqlite:///keys.db"
    assert (
        safe_url("sqlite:////srv/keys/keys.db?timeout=5") == "sqlite:////srv/keys/keys.db?timeout=5"
    )
    # SQLCipher's passphrase stands where a password does.
    masked = safe_url(f"sqlite+pysqlcipher://:{quote(password, safe='')}@/keys.db")
    assert_hidden(masked, "sqlite+pysqlcipher://:***@/keys.db", password)


@given(text=st.text(_CHAR, max_size=60))
@settings(max_examples=500, deadline=None)
def test_the_mask_never_raises(text: str) -> None:
    for url in (
        text,
        f"postgresql://{text}",
        f"redis://{text}",
        f"unix://{text}",
        f"redis+cluster://{text}",
        f"redis+sentinel://{text}",
    ):
        assert isinstance(safe_url(url), str)
        assert isinstance(scrub(text, url), str)


def test_urls_the_libraries_read_otherwise() -> None:
    cases = {
        # SQLAlchemy reads "p" as the password and "ss@db.example" as the host.
        "postgresql://u:p@ss@db.example/keys": "postgresql://u:***@db.example/keys",
        # urllib ends the authority at '/': redis-py would read no password at all.
        "redis://:Le/ak@cache.example:6379/0": "redis://:***@cache.example:6379/0",
        "redis+sentinel://:Le/ak@s1:26379,s2:26379/mymaster": (
            "redis+sentinel://:***@s1:26379,s2:26379/mymaster"
        ),
        "redis+cluster://u:Le%2Fak@c1:7000/0": "redis+cluster://u:***@c1:7000/0",
        "postgresql://u@db/keys?Pass%77ord=Leak": "postgresql://u@db/keys?Pass%77ord=***",
        # libpq's key=value form, and a URL without its scheme.
        "host=db password=Leak port=5432": "host=db password=***",
        "u:Le/ak@db/keys": "u:***@db/keys",
        "memory://": "memory://",
        "postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dks": (
            "postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dks"
        ),
    }
    for url, masked in cases.items():
        assert safe_url(url) == masked, url


def test_without_sqlalchemy_or_redis_py_the_mask_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sqlalchemy.engine", None)
    monkeypatch.setitem(sys.modules, "redis.connection", None)
    assert safe_url("postgresql://u:Le/ak@db/keys") == "postgresql://u:***@db/keys"
    assert safe_url("redis://h/0?password=Le/ak") == "redis://h/0?password=***"


def test_messages_lose_every_piece_of_the_password() -> None:
    # What redis-py and SQLAlchemy say of these URLs: a piece of the password as a port.
    assert "Le" not in scrub("Port could not be cast to integer value as 'Le'", "redis://u:Le/ak@h")
    said = "invalid literal for int() with base 10: 'wd@127.0.0.1:1'"
    assert "wd" not in scrub(said, "postgresql://u:p@ss:wd@127.0.0.1:1/x")
    said = "could not connect with password=Le%2Fak, or Le/ak"
    assert (
        scrub(said, "postgresql://u:Le%2Fak@h/x") == "could not connect with password=***, or ***"
    )


# -- reprs ---------------------------------------------------------------------------------------

LEAKS = ("Le/ak", "Le%2Fak", "Le%2fak", "ak@", "hunter2")


def _no_leak(text: str) -> None:
    for leak in LEAKS:
        assert leak not in text, (leak, text)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:Le/ak@127.0.0.1:1/x",
        "postgresql+psycopg://u:Le%2Fak@127.0.0.1:1/x",
        "postgresql://u@127.0.0.1:1/x?password=hunter2",
    ],
)
def test_an_sql_store_repr_hides_the_password(url: str) -> None:
    store = SQLStore(url)  # makes no connection: a port nothing listens on, and no error
    try:
        _no_leak(repr(store))
        assert "127.0.0.1:1/x" in repr(store)
    finally:
        store.close()


REDIS_URLS = [
    "redis://u:Le%2Fak@127.0.0.1:1/0",
    "rediss://:Le%2Fak@127.0.0.1:1/0",
    "redis://127.0.0.1:1/0?password=hunter2",
    "unix:///tmp/nosuch-redis.sock?password=hunter2",
    "redis+cluster://u:Le%2Fak@127.0.0.1:1,127.0.0.1:2",
    "redis+cluster://127.0.0.1:1?password=hunter2&namespace=ks",
    "redis+sentinel://:Le/ak@127.0.0.1:1/mymaster/0",
    "redis+sentinel://hunter2@127.0.0.1:1,127.0.0.1:2/mymaster",
]


@pytest.mark.parametrize("url", REDIS_URLS)
def test_redis_reprs_hide_the_password(url: str) -> None:
    for thing in (RedisStore(url), RedisLimiter(url), RedisInvalidator(url), from_url(url)):
        try:
            _no_leak(repr(thing))
        finally:
            thing.close()


@pytest.mark.parametrize("cls", [RedisStore, RedisLimiter, RedisInvalidator])
@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://u:Le/ak@127.0.0.1:1/5",
        "redis+sentinel://Le/ak@127.0.0.1:x/mymaster",
        "redis+sentinel://:Le/ak@127.0.0.1:1/mymaster?socket_timeout=Leak",
    ],
)
def test_a_bad_cluster_or_sentinel_url_is_refused_without_its_password(cls: type, url: str) -> None:
    with pytest.raises(ValueError, match="not a Redis URL") as refused:
        cls(url)
    text = "".join(traceback.format_exception(refused.value))
    _no_leak(text)


@pytest.mark.parametrize("cls", [RedisStore, RedisLimiter, RedisInvalidator])
def test_a_redis_url_redis_py_cannot_read_is_refused_without_its_password(cls: type) -> None:
    # urllib ends the authority at the raw '/': redis-py would take "Le" for the port.
    url = "redis://u:Le/ak@127.0.0.1:1/0"
    with pytest.raises(ValueError, match="not a Redis URL") as refused:
        cls(url)
    text = "".join(traceback.format_exception(refused.value))
    assert "Le" not in text.replace("Leak", "")
    _no_leak(text)


def test_an_sql_url_sqlalchemy_cannot_read_is_refused_without_its_password() -> None:
    # SQLAlchemy: password "p", host "ss", port "wd@127.0.0.1:1" (not a number).
    url = "postgresql://u:p@ss:wd@127.0.0.1:1/x"
    with pytest.raises(ValueError, match="not a database URL") as refused:
        SQLStore(url)
    text = "".join(traceback.format_exception(refused.value))
    assert "wd" not in text
    assert "ss:" not in text


def test_sqlalchemy_may_not_print_bound_parameters(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="hide_parameters"):
        SQLStore(f"sqlite:///{tmp_path / 'k.db'}", hide_parameters=False)


# -- driver errors and their chains --------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLStore]:
    if request.param == "sqlite":
        store = SQLStore(f"sqlite:///{tmp_path / 'keys.db'}")
    else:
        store = SQLStore(
            PG_URL, schema=request.getfixturevalue("pg_schema"), table_prefix=table_prefix()
        )
    yield store
    store.close()


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is not None and all(e is not s for s in seen):
            seen.append(e)
            todo += (e.__cause__, e.__context__)
    return seen


def _assert_says_nothing_of(exc: BaseException, digest: bytes) -> None:
    import sqlite3

    import psycopg
    import sqlalchemy.exc

    text = "".join(traceback.format_exception(exc))
    for e in _chain(exc):
        text += f"{e}\n{e!r}\n{e.args}\n"
        # The driver's own error is what quotes the row: it must not ride along at all.
        assert not isinstance(e, (sqlalchemy.exc.SQLAlchemyError, sqlite3.Error, psycopg.Error))
    for form in (digest.hex(), digest.hex().upper(), digest.hex()[:16]):
        assert form not in text


def test_a_duplicate_digest_says_so_without_the_digest(sql_store: SQLStore) -> None:
    record = make_record()
    sql_store.create(record)
    twin = make_record(digest=record.digest)
    with pytest.raises(DuplicateKey) as duplicate:
        sql_store.create(twin)
    assert str(duplicate.value) == f"a key with the digest of {twin.id!r} exists"
    _assert_says_nothing_of(duplicate.value, record.digest)

    with pytest.raises(DuplicateKey) as same_id:
        sql_store.create(make_record(id=record.id))
    assert str(same_id.value) == f"a key with id {record.id!r} exists"
    _assert_says_nothing_of(same_id.value, record.digest)

    async def acreate() -> BaseException:
        with pytest.raises(DuplicateKey) as raised:
            await sql_store.acreate(make_record(digest=record.digest))
        await sql_store.aclose()
        return raised.value

    _assert_says_nothing_of(asyncio.run(acreate()), record.digest)
    assert sql_store.get(record.id) == record

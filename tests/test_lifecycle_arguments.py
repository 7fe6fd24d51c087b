"""The lifecycle's arguments are checked by type and value before anything is stored.

A value of the wrong type raises ``TypeError``, a wrong value ``ValueError``, each naming the
argument, and the store is left as it was. A string where a list is expected (``scopes``,
``allowed_networks``) is split on commas and whitespace, exactly as the CLI splits its
options: ``scopes="read"`` is the scope ``read``, not the letters r, e, a, d.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import ipaddress
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keysentry import ImportedFormat, KeyRecord, Keysentry, MemoryStore, Rate
from keysentry.cli_keys import add_keys_parser

from .conftest import SECRET

MAX_CREDITS = 2**53 - 1


@pytest.fixture
def guard() -> Keysentry:
    return Keysentry(
        MemoryStore(),
        secret=SECRET,
        usage_interval=None,
        imported=[ImportedFormat("grx_sk_", length=48, alphabet="0123456789abcdef")],
    )


def _stored(guard: Keysentry) -> list[KeyRecord]:
    return list(guard.list_keys())


# -- what each field takes -----------------------------------------------------------------------

#: (field, value, exception, the start of its message): refused by issue() and update() alike.
BAD_FIELDS: list[tuple[str, Any, type[Exception], str]] = [
    ("name", None, TypeError, "name must be a str, not NoneType"),
    ("name", 7, TypeError, "name must be a str, not int"),
    ("owner", 42, TypeError, "owner must be a str, not int"),
    ("scopes", 5, TypeError, "scopes must be a list of scopes or a string of them"),
    ("scopes", b"read", TypeError, "scopes must be a list of scopes"),
    ("scopes", {"read": True}, TypeError, "scopes must be a list of scopes"),
    ("scopes", ["read", 1], TypeError, "scopes must hold strings, not int"),
    ("scopes", "", ValueError, "scopes: '' holds no scope"),
    ("scopes", " , ", ValueError, "scopes: ' , ' holds no scope"),
    ("scopes", ["re ad"], ValueError, "scopes: invalid scope 're ad'"),
    ("scopes", 'read wr"ite', ValueError, "scopes: invalid scope 'wr\"ite'"),
    ("expires_at", "2030-01-01", TypeError, "expires_at must be a datetime, a timedelta"),
    ("expires_at", 3600, TypeError, "expires_at must be a datetime, a timedelta"),
    ("expires_at", datetime(2030, 1, 1), ValueError, "expires_at must be timezone-aware"),
    ("expires_at", timedelta(0), ValueError, "expires_at: the duration must be positive"),
    ("expires_at", timedelta(-1), ValueError, "expires_at: the duration must be positive"),
    ("expires_at", timedelta(days=40000), ValueError, "expires_at: the duration must be at"),
    ("rate_limit", 60, TypeError, "rate_limit must be a list of rates"),
    ("rate_limit", [60], TypeError, "rate_limit must hold strings or Rate values, not int"),
    ("rate_limit", "lots", ValueError, "rate_limit: not a rate: 'lots'"),
    ("rate_limit", "", ValueError, "rate_limit: '' holds no rate"),
    ("allowed_networks", 10, TypeError, "allowed_networks must be a list of networks"),
    ("allowed_networks", [10], TypeError, "allowed_networks must hold strings or ip_network"),
    ("allowed_networks", "", ValueError, "allowed_networks: '' holds no network"),
    ("allowed_networks", "10.0.0.0/33", ValueError, "allowed_networks: '10.0.0.0/33' is not"),
    ("allowed_networks", ["not-a-cidr"], ValueError, "allowed_networks: 'not-a-cidr' is not"),
    ("credits", "5", TypeError, "credits must be a whole number (int) or None, not str"),
    ("credits", 1.5, TypeError, "credits must be a whole number (int) or None, not float"),
    ("credits", True, TypeError, "credits must be a whole number (int) or None, not bool"),
    ("credits", -1, ValueError, f"credits must be from 0 to {MAX_CREDITS}, not -1"),
    ("credits", MAX_CREDITS + 1, ValueError, f"credits must be from 0 to {MAX_CREDITS}"),
    ("metadata", [("plan", "pro")], TypeError, "metadata must be a mapping"),
    ("metadata", '{"plan": "pro"}', TypeError, "metadata must be a mapping"),
    ("metadata", {1: "x"}, TypeError, "metadata must have string keys, not int"),
    ("metadata", {"a": {2: "x"}}, TypeError, "metadata['a'] must have string keys"),
    ("metadata", {"a": object()}, TypeError, "metadata['a'] must hold JSON values"),
    ("metadata", {"a": [1, {3}]}, TypeError, "metadata['a'][1] must hold JSON values"),
    ("metadata", {"a": float("nan")}, ValueError, "metadata['a'] must be a finite number"),
]

#: (field, value given, what the record holds).
GOOD_FIELDS: list[tuple[str, Any, Any]] = [
    ("scopes", "read", frozenset({"read"})),
    ("scopes", "read write", frozenset({"read", "write"})),
    ("scopes", "read,write", frozenset({"read", "write"})),
    ("scopes", " read,\twrite  admin:all ", frozenset({"read", "write", "admin:all"})),
    ("scopes", ("read", "read"), frozenset({"read"})),
    ("scopes", {"a", "b"}, frozenset({"a", "b"})),
    ("scopes", [], frozenset()),
    ("allowed_networks", "10.0.0.0/8", (ipaddress.ip_network("10.0.0.0/8"),)),
    (
        "allowed_networks",
        "10.0.0.0/8, 2001:db8::/32",
        (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")),
    ),
    ("allowed_networks", ["203.0.113.7"], (ipaddress.ip_network("203.0.113.7/32"),)),
    ("allowed_networks", [], ()),
    ("rate_limit", "60/minute", (Rate(60, 60.0),)),
    ("rate_limit", "10/second, 1000/day", (Rate(10, 1.0), Rate(1000, 86400.0))),
    ("rate_limit", ["10/second", Rate(5, 60.0, burst=2)], (Rate(10, 1.0), Rate(5, 60.0, 2))),
    ("rate_limit", Rate(1, 1.0), (Rate(1, 1.0),)),
    ("rate_limit", "none", ()),
    ("rate_limit", (), ()),
    ("rate_limit", None, None),
    ("credits", 0, 0),
    ("credits", MAX_CREDITS, MAX_CREDITS),
    ("credits", None, None),
    ("metadata", {"plan": "pro", "tags": ("a", "b")}, {"plan": "pro", "tags": ["a", "b"]}),
    ("metadata", None, {}),
    ("owner", None, None),
]


def _ids(cases: list[Any]) -> list[str]:
    return [f"{case[0]}={case[1]!r}"[:40] for case in cases]


@pytest.mark.parametrize(("field", "value", "error", "message"), BAD_FIELDS, ids=_ids(BAD_FIELDS))
def test_issue_refuses_a_bad_field_by_name_and_stores_nothing(
    guard: Keysentry, field: str, value: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        guard.issue(**{field: value})
    assert str(raised.value).startswith(message), raised.value
    assert type(raised.value) is error
    assert _stored(guard) == []


@pytest.mark.parametrize(("field", "value", "error", "message"), BAD_FIELDS, ids=_ids(BAD_FIELDS))
def test_update_refuses_a_bad_field_by_name_and_changes_nothing(
    guard: Keysentry, field: str, value: Any, error: type[Exception], message: str
) -> None:
    issued = guard.issue(name="steady", scopes=["read"], credits=3)
    with pytest.raises(error) as raised:
        guard.update(issued.record.id, **{field: value})
    assert str(raised.value).startswith(message), raised.value
    assert guard.get(issued.record.id) == issued.record


@pytest.mark.parametrize(("field", "value", "held"), GOOD_FIELDS, ids=_ids(GOOD_FIELDS))
def test_issue_and_update_take_a_field_as_the_record_holds_it(
    guard: Keysentry, field: str, value: Any, held: Any
) -> None:
    issued = guard.issue(**{field: value})
    assert getattr(issued.record, field) == held
    assert getattr(guard.get(issued.record.id), field) == held
    other = guard.issue(name="other")
    assert getattr(guard.update(other.record.id, **{field: value}), field) == held


def test_disabled_takes_a_bool_only(guard: Keysentry) -> None:
    issued = guard.issue(name="steady")
    for value in ("yes", 1, None):
        with pytest.raises(TypeError, match=r"^disabled must be True or False"):
            guard.update(issued.record.id, disabled=value)
    assert guard.update(issued.record.id, disabled=True).disabled
    assert guard.get(issued.record.id).disabled


def test_prefix_is_checked_when_issuing(guard: Keysentry) -> None:
    with pytest.raises(TypeError, match=r"^prefix must be a str, not int"):
        guard.issue(prefix=5)
    with pytest.raises(ValueError, match=r"^key prefix 'SK' must be"):
        guard.issue(prefix="SK")
    assert _stored(guard) == []
    assert guard.issue(prefix="sk_test").key.reveal().startswith("sk_test_")


def test_unknown_fields_are_named(guard: Keysentry) -> None:
    with pytest.raises(TypeError, match=r"^issue\(\) got an unexpected keyword argument 'colour'"):
        guard.issue(name="x", colour="red")
    issued = guard.issue(name="x")
    with pytest.raises(ValueError, match=r"^these key fields cannot be changed: colour \(those"):
        guard.update(issued.record.id, colour="red")
    with pytest.raises(ValueError, match="cannot be changed: prefix"):
        guard.update(issued.record.id, prefix="sk_test")
    assert _stored(guard) == [issued.record]


# -- expiry: issue, update and set_expiry take the same -----------------------------------------


@pytest.mark.parametrize("how", ["issue", "update", "set_expiry"])
def test_expires_at_takes_a_timedelta_a_datetime_or_none_everywhere(
    guard: Keysentry, how: str
) -> None:
    def expire(value: Any) -> datetime | None:
        if how == "issue":
            return guard.issue(expires_at=value).record.expires_at
        key_id = guard.issue().record.id
        if how == "update":
            return guard.update(key_id, expires_at=value).expires_at
        return guard.set_expiry(key_id, value).expires_at

    before = datetime.now(timezone.utc)
    soon = expire(timedelta(hours=1))
    assert soon is not None
    assert before + timedelta(hours=1) <= soon <= datetime.now(timezone.utc) + timedelta(hours=1)
    moment = datetime(2031, 5, 6, 7, 8, tzinfo=timezone(timedelta(hours=2)))
    assert expire(moment) == moment
    assert expire(None) is None
    for value, error, message in [
        ("tomorrow", TypeError, "expires_at must be a datetime, a timedelta from now or None"),
        (datetime(2031, 1, 1), ValueError, "expires_at must be timezone-aware"),
        (timedelta(0), ValueError, "expires_at: the duration must be positive"),
    ]:
        with pytest.raises(error, match=f"^{message}"):
            expire(value)


# -- the other methods' arguments ----------------------------------------------------------------


def test_key_ids_must_be_strings(guard: Keysentry) -> None:
    issued = guard.issue(name="steady")
    calls: list[Callable[[Any], Any]] = [
        guard.get,
        guard.disable,
        guard.enable,
        guard.revoke,
        lambda key_id: guard.update(key_id, name="x"),
        lambda key_id: guard.set_expiry(key_id, None),
        guard.rotate,
        guard.delete,
    ]
    for call in calls:
        for bad in (None, 7, issued.record):
            with pytest.raises(TypeError, match=r"^key_id must be a key id \(str\), not "):
                call(bad)
    assert _stored(guard) == [issued.record]


def test_list_keys_checks_its_arguments(guard: Keysentry) -> None:
    for kwargs, error, message in [
        ({"limit": "10"}, TypeError, "limit must be a whole number (int), not str"),
        ({"limit": True}, TypeError, "limit must be a whole number (int), not bool"),
        ({"limit": 0}, ValueError, "limit: a page holds 1 to 1000 keys, not 0"),
        ({"limit": 1001}, ValueError, "limit: a page holds 1 to 1000 keys, not 1001"),
        ({"owner": 5}, TypeError, "owner must be a str, not int"),
        ({"after": 5}, TypeError, "after must be a str, not int"),
    ]:
        with pytest.raises(error) as raised:
            guard.list_keys(**kwargs)
        assert str(raised.value) == message


def test_rotate_checks_the_grace_period_before_anything_changes(guard: Keysentry) -> None:
    issued = guard.issue(name="line")
    for grace, error, message in [
        ("1h", TypeError, "grace must be seconds (a number) or a timedelta, not str"),
        (True, TypeError, "grace must be seconds (a number) or a timedelta, not bool"),
        (None, TypeError, "grace must be seconds (a number) or a timedelta, not NoneType"),
        (-1, ValueError, "grace: the grace period must be zero or more seconds, not -1"),
        (float("inf"), ValueError, "grace: the grace period must be zero or more seconds"),
        (float("nan"), ValueError, "grace: the grace period must be zero or more seconds"),
        (1e12, ValueError, "grace: the duration must be at most 100 years"),
        (timedelta(seconds=-1), ValueError, "grace: the duration must be zero or positive"),
    ]:
        with pytest.raises(error) as raised:
            guard.rotate(issued.record.id, grace=grace)
        assert str(raised.value).startswith(message)
    assert _stored(guard) == [issued.record]
    new = guard.rotate(issued.record.id, grace=timedelta(minutes=5))
    assert guard.get(issued.record.id).rotated_to == new.record.id


def test_credits_of_takes_a_record(guard: Keysentry) -> None:
    issued = guard.issue(name="metered", credits=3)
    with pytest.raises(TypeError, match=r"^record must be a KeyRecord, not str"):
        guard.credits_of(issued.record.id)  # type: ignore[arg-type]
    assert guard.credits_of(issued.record) == 3


def test_import_key_checks_the_key_and_the_fields(guard: Keysentry) -> None:
    key = "grx_sk_" + "ab" * 24
    with pytest.raises(TypeError, match=r"^key must be the key as a str, not bytes"):
        guard.import_key(key.encode())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^import_key\(\) got an unexpected keyword .*'prefix'"):
        guard.import_key(key, prefix="sk_test")
    with pytest.raises(ValueError, match=r"^scopes: '' holds no scope"):
        guard.import_key(key, scopes="")
    with pytest.raises(TypeError, match=r"^name must be a str"):
        guard.import_key(key, name=None)  # type: ignore[arg-type]
    assert _stored(guard) == []
    record = guard.import_key(key, name="legacy", scopes="read write", expires_at=timedelta(1))
    assert record.scopes == {"read", "write"}
    assert record.expires_at is not None


async def test_the_async_twins_check_alike(guard: Keysentry) -> None:
    with pytest.raises(TypeError, match=r"^scopes must hold strings"):
        await guard.aissue(scopes=[1])
    issued = await guard.aissue(scopes="read write", expires_at=timedelta(hours=1))
    assert issued.record.scopes == {"read", "write"}
    with pytest.raises(ValueError, match=r"^allowed_networks: '1' is not an IP network"):
        await guard.aupdate(issued.record.id, allowed_networks="1")
    with pytest.raises(TypeError, match=r"^expires_at must be a datetime"):
        await guard.aset_expiry(issued.record.id, "never")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^grace must be seconds"):
        await guard.arotate(issued.record.id, grace="1h")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^key_id must be a key id"):
        await guard.aget(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^limit: a page holds"):
        await guard.alist_keys(limit=0)
    with pytest.raises(TypeError, match=r"^record must be a KeyRecord"):
        await guard.acredits_of("x")  # type: ignore[arg-type]
    assert await guard.aget(issued.record.id) == issued.record


# -- one reading of a string of scopes or networks: the CLI's -----------------------------------


def _cli(option: str, text: str) -> list[Any] | None:
    """What ``keysentry keys create OPTION=TEXT`` reads from its option; None if it refuses."""
    parser = argparse.ArgumentParser(prog="keysentry")
    add_keys_parser(parser.add_subparsers(dest="command"))
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            args = parser.parse_args(["keys", "create", f"{option}={text}"])
    except SystemExit:
        return None
    return list(getattr(args, option[2:].replace("-", "_")))


#: Text made of scope-like words, separators and characters a scope may not hold.
scope_text = st.text(
    st.sampled_from(list('ab:_-.,; \t\n"\\\x00é\u00a0/*'))
    | st.characters(codec="utf-8", max_codepoint=0x3000),
    max_size=24,
)


@given(scope_text)
def test_a_string_of_scopes_reads_as_the_cli_reads_it(text: str) -> None:
    guard = Keysentry(MemoryStore(), usage_interval=None)
    cli = _cli("--scopes", text)
    if cli is None:
        with pytest.raises(ValueError, match=r"^scopes: "):
            guard.issue(scopes=text)
    else:
        assert guard.issue(scopes=text).record.scopes == frozenset(cli)


@given(
    st.lists(
        st.text(
            st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='"\\,')
        ).filter(bool),
        min_size=1,
        max_size=5,
    ),
    st.lists(st.sampled_from([",", " ", ", ", "\t", "\n", " ,\t"]), min_size=5, max_size=5),
)
def test_scopes_joined_by_any_separator_are_the_scopes(words: list[str], joins: list[str]) -> None:
    text = words[0] + "".join(join + word for join, word in zip(joins, words[1:], strict=False))
    guard = Keysentry(MemoryStore(), usage_interval=None)
    assert guard.issue(scopes=text).record.scopes == frozenset(words)
    assert guard.issue(scopes=words).record.scopes == frozenset(words)


@given(
    st.lists(
        st.ip_addresses().map(str)
        | st.sampled_from(["10.0.0.0/8", "2001:db8::/32", "10.0.0.0/33", "x", "1", "::1/129"]),
        max_size=4,
    ),
    st.sampled_from([",", " ", ", "]),
)
def test_a_string_of_networks_reads_as_the_cli_reads_it(items: list[str], join: str) -> None:
    text = join.join(items)
    guard = Keysentry(MemoryStore(), usage_interval=None)
    cli = _cli("--allow-ip", text)
    if cli is None:
        with pytest.raises(ValueError, match=r"^allowed_networks: "):
            guard.issue(allowed_networks=text)
    else:
        assert list(guard.issue(allowed_networks=text).record.allowed_networks) == cli


@given(st.integers(min_value=-(2**64), max_value=2**64))
def test_credits_are_taken_from_zero_to_what_every_store_counts_exactly(n: int) -> None:
    guard = Keysentry(MemoryStore(), usage_interval=None)
    if 0 <= n <= MAX_CREDITS:
        assert guard.issue(credits=n).record.credits == n
    else:
        with pytest.raises(ValueError, match=r"^credits must be from 0 to "):
            guard.issue(credits=n)

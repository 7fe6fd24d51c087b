"""``keysentry keys`` as an operator runs it: the real console script against real stores,
then the keys it printed presented to an app, and to the demo, on the same store."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from keysentry import Keysentry
from keysentry.stores import from_url

from .apps import Client
from .services import PG_URL, REDIS_URL, delete_namespace, namespace, pg_connect, redis_or_skip
from .services import unavailable as service_unavailable

SCRIPT = Path(sys.executable).with_name("keysentry")
SECRET = "cli-test-digest-secret-0123456789"
#: What a digest looks like in text (hex of 32 bytes): no output may hold one.
DIGEST = re.compile(r"[0-9a-fA-F]{64}")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KEYSENTRY_SECRET", "KEYSENTRY_STORE")}
    return {**env, "KEYSENTRY_SECRET": SECRET, **extra}


def keysentry(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env or _env(),
    )


def ok(*args: str, **options: Any) -> Any:
    """Run a command that must succeed; its JSON output when ``--json`` is among ``args``."""
    r = keysentry(*args, **options)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    return json.loads(r.stdout) if "--json" in args else r.stdout


def fails(*args: str, status: int, **options: Any) -> str:
    """Run a command that must fail with ``status``: its one line of stderr."""
    r = keysentry(*args, **options)
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    assert r.stderr.endswith("\n")
    assert r.stderr.count("\n") == 1, r.stderr
    return r.stderr.strip()


def _at(text: str | None) -> datetime:
    assert text is not None
    return datetime.fromisoformat(text)


def _close_to(text: str | None, when: datetime, within: float = 60) -> bool:
    return abs((_at(text) - when).total_seconds()) < within


# -- stores ---------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/keys.db"


@pytest.fixture
def redis_url() -> Iterator[str]:
    redis_or_skip()
    ns = namespace()
    yield f"{REDIS_URL}?namespace={ns}"
    delete_namespace(REDIS_URL, ns)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """Tables in a schema of this test's own, dropped with them at the end."""
    import psycopg

    try:
        pg_connect().close()
    except psycopg.Error:
        service_unavailable(f"PostgreSQL at {PG_URL}")
    schema = f"kstest_{uuid.uuid4().hex[:12]}"
    with pg_connect() as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with pg_connect() as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def store_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


# -- the whole lifecycle, on every store ----------------------------------------------------------


def test_lifecycle_on_every_store(store_url: str) -> None:
    s = ("--store", store_url)
    now = datetime.now(timezone.utc)
    created = ok(
        *("keys", "create", "--name", "ci", "--owner", "acct_42"),
        *("--scopes", "read,write", "--scopes", "admin"),
        *("--rate-limit", "10/second, 1000/day", "--expires-in", "90d"),
        *("--allow-ip", "10.0.0.0/8", "--allow-ip", "192.168.1.7"),
        *("--credits", "3", "--prefix", "sk_test", "--metadata", '{"plan": "pro"}'),
        *s,
        "--json",
    )
    key, key_id = created["key"], created["id"]
    assert re.fullmatch(r"sk_test_[A-Za-z0-9]{53}", key)
    assert key.startswith(created["prefix"])
    assert created["prefix"] == f"sk_test_{key_id}"
    assert created | {"key": None, "created_at": None, "expires_at": None} == {
        "key": None,
        "id": key_id,
        "prefix": f"sk_test_{key_id}",
        "name": "ci",
        "owner": "acct_42",
        "status": "active",
        "scopes": ["admin", "read", "write"],
        "rate_limit": ["10/second", "1000/day"],
        "allowed_networks": ["10.0.0.0/8", "192.168.1.7/32"],
        "credits": 3,
        "metadata": {"plan": "pro"},
        "created_at": None,
        "expires_at": None,
        "last_used_at": None,
        "request_count": 0,
        "disabled": False,
        "revoked_at": None,
        "rotated_to": None,
        "credits_from": None,
        "line": None,
        "digest_mode": "hmac-sha256",
        "refill": None,
        "refilled_at": None,
    }
    assert _close_to(created["created_at"], now)
    assert _close_to(created["expires_at"], now + timedelta(days=90))
    other = ok("keys", "create", "--name", "other", "--owner", "acct_7", *s, "--json")
    plain = ok("keys", "create", "--name", "plain", "--owner", "acct_42", *s, "--json")

    shown = ok("keys", "show", key_id, *s, "--json")
    assert shown == {k: v for k, v in created.items() if k != "key"}

    # Listing: every key, never a key or a digest; an owner's; page by page.
    listed = ok("keys", "list", *s, "--json")
    everyone = sorted([key_id, other["id"], plain["id"]])
    assert [k["id"] for k in listed["keys"]] == everyone
    assert listed["next"] is None
    text = json.dumps(listed)
    assert not DIGEST.search(text)
    assert key not in text
    assert other["key"] not in text
    owned = ok("keys", "list", "--owner", "acct_42", *s, "--json")
    assert [k["id"] for k in owned["keys"]] == sorted([key_id, plain["id"]])
    pages, cursor = [], None
    while True:
        after = () if cursor is None else ("--after", cursor)
        page = ok("keys", "list", "--limit", "2", *after, *s, "--json")
        pages.append([k["id"] for k in page["keys"]])
        cursor = page["next"]
        if cursor is None:
            break
    assert pages == [everyone[:2], everyone[2:]]
    assert ok("keys", "list", "--limit", "3", *s, "--json")["next"] is None

    # The printed key works in an app on the same store, with the same secret.
    _authenticates(store_url, plain["key"], other["key"], key)

    assert ok("keys", "disable", key_id, *s, "--json")["status"] == "disabled"
    enabled = ok("keys", "enable", key_id, *s, "--json")
    assert (enabled["status"], enabled["disabled"]) == ("active", False)

    rotated = ok("keys", "rotate", key_id, "--grace", "1h", *s, "--json")
    new_id, old = rotated["id"], rotated["old"]
    assert new_id != key_id
    assert rotated["key"].startswith(f"sk_test_{new_id}")
    same = ("name", "owner", "scopes", "rate_limit", "allowed_networks", "credits", "metadata")
    assert {k: rotated[k] for k in same} == {k: created[k] for k in same}
    assert rotated["expires_at"] == created["expires_at"]  # rotation is not renewal
    assert rotated["credits_from"] == key_id  # the line shares the first key's balance
    assert rotated["line"] == key_id  # and its rate limit
    assert (old["id"], old["status"], old["rotated_to"]) == (key_id, "rotated", new_id)
    assert _close_to(old["expires_at"], datetime.now(timezone.utc) + timedelta(hours=1))
    assert ok("keys", "show", key_id, *s, "--json") == old

    revoked = ok("keys", "revoke", new_id, *s, "--json")
    assert revoked["status"] == "revoked"
    again = ok("keys", "revoke", new_id, *s, "--json")
    assert again["revoked_at"] == revoked["revoked_at"]  # the first revocation's time stays

    message = fails("keys", "disable", "nosuchkey000", *s, status=1)
    assert message == "keysentry: no key with id 'nosuchkey000'"


def _authenticates(store_url: str, plain: str, other: str, restricted: str) -> None:
    """Keys the CLI printed, presented to a Starlette app built on the same store."""
    ks = Keysentry(from_url(store_url), secret=SECRET, usage_interval=None)
    try:
        client = Client("starlette", ks)
        r = client.get("/", {"Authorization": f"Bearer {plain}"})
        assert (r.status, r.body["name"], r.body["owner"]) == (200, "plain", "acct_42")
        assert client.get("/", {"X-API-Key": other}).status == 200
        # Its digest matched; then its allowlist refused the test client's non-IP peer.
        assert client.get("/", {"X-API-Key": restricted}).code == "IP_NOT_ALLOWED"
    finally:
        ks.store.close()  # type: ignore[union-attr]
    # Under another digest secret the same key is unknown: the CLI used $KEYSENTRY_SECRET.
    unkeyed = Keysentry(from_url(store_url), usage_interval=None)
    try:
        r = Client("starlette", unkeyed).get("/", {"X-API-Key": plain})
        assert (r.status, r.code) == (401, "INVALID_API_KEY")
    finally:
        unkeyed.store.close()  # type: ignore[union-attr]


# -- output for people ----------------------------------------------------------------------------


def test_text_output_is_aligned_and_shows_the_key_once(sqlite_url: str) -> None:
    s = ("--store", sqlite_url)
    text = ok("keys", "create", "--name", "ci", "--owner", "acct_42", "--credits", "12", *s)
    assert "shown this once" in text
    key = re.search(r"^    (sk_live_[A-Za-z0-9]{53})$", text, re.MULTILINE)
    assert key, text
    assert text.count(key.group(1)) == 1
    key_id = key.group(1)[len("sk_live_") : len("sk_live_") + 12]
    ok("keys", "create", "--name", "a much longer name", "--scopes", "read write", *s)

    header, *rows = ok("keys", "list", *s).splitlines()
    assert header.split() == [
        "ID", "NAME", "OWNER", "PREFIX", "SCOPES", "STATUS", "CREDITS", "LAST", "USED", "REQUESTS"
    ]  # fmt: skip
    assert len(rows) == 2
    for row in rows:  # each column starts where its heading does
        for heading in ("NAME", "OWNER", "PREFIX", "SCOPES", "STATUS"):
            at = header.index(heading)
            assert row[at - 2 : at] == "  ", (header, row)
            assert row[at] != " ", (header, row)
        assert len(row) == len(header)  # right-aligned REQUESTS ends with its heading
    mine = next(row for row in rows if row.startswith(key_id))
    assert mine.split()[1:6] == ["ci", "acct_42", f"sk_live_{key_id}", "-", "active"]

    lines = ok("keys", "show", key_id, *s).splitlines()
    fields = dict(line.split(": ", 1) for line in lines)
    assert {fields[f].strip() for f in ("name", "owner", "credits", "status")} == {
        "ci", "acct_42", "12", "active"
    }  # fmt: skip
    assert not DIGEST.search(text + "\n".join(lines))
    assert fields["digest_mode"].strip() == "hmac-sha256 (with a secret)"
    assert len({len(line) - len(line.split(":", 1)[1].lstrip()) for line in lines}) == 1
    assert re.fullmatch(r" *\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", fields["created_at"])

    assert "disabled" in ok("keys", "disable", key_id, *s).lower()
    rotated = ok("keys", "rotate", key_id, "--grace", "24h", *s)
    assert "keeps working until" in rotated
    assert "shown this once" in rotated
    new_id = re.search(r"Rotated key \w+ to (\w+)\.", rotated)
    assert new_id, rotated
    assert "revoked at once" in ok("keys", "rotate", new_id.group(1), "--grace", "0", *s)


def test_json_and_store_options_go_before_or_after_the_command(tmp_path: Path) -> None:
    first, second = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    created = ok("keys", "--json", "--store", first, "create", "--name", "x")
    assert ok("keys", "--store", first, "list", "--json")["keys"][0]["id"] == created["id"]
    assert ok("keys", "--json", "show", created["id"], "--store", first)["name"] == "x"
    ok("keys", "create", "--store", second)
    # The command's own --store is the later word, and wins.
    listed = ok("keys", "--store", second, "list", "--store", first, "--json")
    assert [k["id"] for k in listed["keys"]] == [created["id"]]


def test_store_from_the_environment_then_the_default(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/env.db"
    made = ok("keys", "create", "--json", cwd=tmp_path, env=_env(KEYSENTRY_STORE=url))
    assert (tmp_path / "env.db").exists()
    assert fails("keys", "show", made["id"], cwd=tmp_path, status=1) == (
        "keysentry: store sqlite:///keysentry.db: no database file 'keysentry.db' "
        "(keysentry keys create makes one)"
    )
    assert not (tmp_path / "keysentry.db").exists()
    ok("keys", "create", cwd=tmp_path)
    assert (tmp_path / "keysentry.db").exists()
    assert ok("keys", "show", made["id"], "--json", "--store", url, cwd=tmp_path)["id"]


# -- bad input: one line, no traceback ------------------------------------------------------------

BAD_INPUT = [
    (["create", "--allow-ip", "10.0.0.300/8"], "argument --allow-ip: '10.0.0.300/8' is not an IP"),
    (["create", "--allow-ip", "everywhere"], "'everywhere' is not an IP network"),
    (["create", "--expires-in", "0"], "'0': the duration must be more than zero"),
    (["create", "--expires-in", "0d"], "'0d': the duration must be more than zero"),
    (["create", "--expires-in=-1d"], "'-1d' is not a duration: it cannot be negative"),
    (["create", "--expires-in", "-1d"], "argument --expires-in: '-1d' is not a duration"),
    (["create", "--expires-at", "tomorrow"], "argument --expires-at: 'tomorrow' is not an ISO"),
    (["create", "--expires-at", "2020-01-01T00:00:00Z"], "is not later than now"),
    (["create", "--expires-at", "9999-12-31"], "at most 100 years ahead"),
    (["create", "--expires-at", "2030-13-01"], "'2030-13-01' is not an ISO 8601 time"),
    (["create", "--expires-in", "1d", "--expires-at", "2030-01-01"], "not allowed with"),
    (["create", "--expires-in", "90"], "'90' is not a duration"),
    (["create", "--expires-in", "1y"], "'1y' is not a duration"),
    (["create", "--expires-in", "soon"], "'soon' is not a duration"),
    (["create", "--expires-in", "99999999999d"], "at most 100 years"),
    (["create", "--rate-limit", "lots/minute"], "not a rate: 'lots/minute'"),
    (["create", "--rate-limit", "60/fortnight"], "not a rate: '60/fortnight'"),
    (["create", "--rate-limit", "0/minute"], "a rate needs a limit of at least 1"),
    (["create", "--rate-limit", "-5/minute"], "argument --rate-limit: '-5/minute': a rate cannot"),
    (["create", "--rate-limit=-5/minute"], "argument --rate-limit: '-5/minute': a rate cannot"),
    (["create", "--credits", "-1"], "argument --credits: '-1': credits cannot be negative"),
    (["create", "--credits", "1.5"], "'1.5' is not a number of credits"),
    (["create", "--credits", "lots"], "'lots' is not a number of credits"),
    (["create", "--prefix", "Sk_Live"], "key prefix 'Sk_Live' must be"),
    (["create", "--metadata", "[1, 2]"], "metadata is a JSON object"),
    (["create", "--metadata", "{plan: pro}"], "not JSON"),
    (["create", "--scopes", 'say"hi'], "scope 'say\"hi' may hold"),
    (["list", "--limit", "0"], "a page holds 1 to 1000 keys"),
    (["list", "--limit", "1001"], "a page holds 1 to 1000 keys"),
    (["list", "--limit", "-5"], "argument --limit: '-5': a page holds 1 to 1000 keys"),
    (["rotate", "someid", "--grace", "-1h"], "argument --grace: '-1h' is not a duration"),
    (["rotate", "someid", "--grace", "1 day"], "'1 day' is not a duration"),
    (["show"], "the following arguments are required: ID"),
    (["update", "someid"], "nothing to change: give at least one of --name, --owner"),
    (["update", "someid", "--owner", "a", "--no-owner"], "not allowed with argument --owner"),
    (["update", "someid", "--credits", "-2"], "argument --credits: '-2': credits cannot be"),
    (["update", "someid", "--rate-limit", "-1/s"], "argument --rate-limit: '-1/s': a rate"),
    (["update", "someid", "--expires-at", "1999-01-01"], "is not later than now"),
    (["update", "someid", "--never-expires", "--expires-in", "1d"], "not allowed with"),
    (["delete"], "the following arguments are required: ID"),
    (["verify", "--key-file", "/nonexistent/key"], "--key-file '/nonexistent/key': No such file"),
    ([], "the following arguments are required: COMMAND"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_usage_line(
    args: list[str], message: str, sqlite_url: str, tmp_path: Path
) -> None:
    line = fails("keys", *args, "--store", sqlite_url, status=2)
    assert line.startswith("keysentry keys")
    assert ": error: " in line
    assert message in line
    assert not list(tmp_path.iterdir())  # refused before any store was opened


def test_bad_store_urls(tmp_path: Path) -> None:
    assert "unsupported store URL scheme 'nosuch'" in fails(
        "keys", "list", "--store", "nosuch://x", status=2
    )
    assert "a memory store lives inside one process" in fails(
        "keys", "create", "--store", "memory://", status=2
    )
    assert "not 'postgresql+mysql'" in fails(
        "keys", "list", "--store", "postgresql+mysql://h/db", status=2
    )
    missing = f"sqlite:///{tmp_path}/nope/keys.db"
    assert "no database file" in fails("keys", "show", "x", "--store", missing, status=1)
    assert "is unavailable: " in fails("keys", "create", "--store", missing, status=1)
    assert not (tmp_path / "nope").exists()
    short = _env(KEYSENTRY_SECRET="too-short")
    assert "$KEYSENTRY_SECRET: the digest secret must be at least 16 bytes" in fails(
        "keys", "create", "--store", f"sqlite:///{tmp_path}/k.db", status=2, env=short
    )


@pytest.mark.parametrize(
    "url",
    ["redis://:hunter2@127.0.0.1:1/0", "postgresql://keysentry:hunter2@127.0.0.1:1/db"],
    ids=["redis", "postgres"],
)
def test_an_unreachable_store_is_named_without_its_password(url: str) -> None:
    started = time.monotonic()
    line = fails("keys", "list", "--store", url, status=1)
    assert time.monotonic() - started < 10
    masked = url.replace("hunter2", "***")
    assert line.startswith(f"keysentry: store {masked} is unavailable: ")
    assert "hunter2" not in line


#: Forms of the password "Le/ak" that must never be printed, nor its tail after the '/'.
LEAKS = ("Le/ak", "Le%2Fak", "Le%2fak", "ak@")


@pytest.mark.parametrize(
    ("url", "leaks"),
    [
        ("postgresql://u:Le/ak@127.0.0.1:1/x", LEAKS),
        ("postgresql+psycopg://u:Le%2Fak@127.0.0.1:1/x", LEAKS),
        ("postgresql://u@127.0.0.1:1/x?password=Le/ak", LEAKS),
        # SQLAlchemy reads the port "wd@127.0.0.1:1" and says so: "wd" is the password's.
        ("postgresql://u:p@ss:wd@127.0.0.1:1/x", ("p@ss", "wd", "ss:")),
        # urllib ends the authority at the '/': redis-py would call "Le" the port.
        ("redis://u:Le/ak@127.0.0.1:1/0", (*LEAKS, "'Le'")),
        ("redis://127.0.0.1:1/0?password=Le%2Fak", LEAKS),
        ("u:Le/ak@127.0.0.1:1/x", LEAKS),  # the scheme forgotten
    ],
)
def test_a_password_of_any_characters_is_never_printed(url: str, leaks: tuple[str, ...]) -> None:
    r = keysentry("keys", "--store", url, "list")
    assert r.returncode in (1, 2), (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    assert r.stderr.startswith("keysentry: ")
    assert r.stderr.count("\n") == 1, r.stderr
    for leak in leaks:
        assert leak not in r.stdout + r.stderr, (leak, r.stderr)


def test_an_invalidator_password_is_never_printed(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'k.db'}"
    line = fails(
        "keys",
        "create",
        "--store",
        store,
        "--invalidator",
        "redis://:Le/ak@127.0.0.1:1/0",
        status=2,
    )
    assert line.startswith("keysentry: invalidator redis://:***@127.0.0.1:1/0: ")
    for leak in (*LEAKS, "'Le'"):
        assert leak not in line


@contextlib.contextmanager
def _silent_server() -> Iterator[int]:
    """A port whose server accepts connections and never answers (a frozen store)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


@pytest.mark.parametrize("scheme", ["redis", "postgresql"])
def test_a_silent_store_times_out_in_seconds(scheme: str) -> None:
    with _silent_server() as port:
        started = time.monotonic()
        line = fails("keys", "list", "--store", f"{scheme}://127.0.0.1:{port}/0", status=1)
        assert time.monotonic() - started < 10
    assert "is unavailable: " in line


def test_what_the_store_refuses_is_one_line_and_exit_1(sqlite_url: str) -> None:
    s = ("--store", sqlite_url)
    brief = ok("keys", "create", "--expires-in", "1s", *s, "--json")
    for command in ("show", "disable", "enable", "revoke", "rotate", "delete", "update"):
        extra = (
            ("--name", "x") if command == "update" else ("--yes",) if command == "delete" else ()
        )
        message = fails("keys", command, "nosuchkey000", *extra, *s, status=1)
        assert message == "keysentry: no key with id 'nosuchkey000'"
    # A key id's place holds a full key by mistake: the message does not repeat it.
    assert brief["key"] not in fails("keys", "show", brief["key"], *s, status=1)

    time.sleep(max(0.0, (_at(brief["expires_at"]) - datetime.now(timezone.utc)).total_seconds()))
    assert ok("keys", "show", brief["id"], *s, "--json")["status"] == "expired"
    # Its successor would inherit the expiry: refused rather than born expired.
    assert "expired at" in fails("keys", "rotate", brief["id"], *s, status=1)
    ok("keys", "revoke", brief["id"], *s)
    assert fails("keys", "rotate", brief["id"], *s, status=1) == (
        f"keysentry: key {brief['id']} is revoked: issue a new key instead"
    )
    assert [k["status"] for k in ok("keys", "list", *s, "--json")["keys"]] == ["revoked"]

    # The first key of a metered line holds its successors' credits: refused before asking.
    metered = ok("keys", "create", "--credits", "5", *s, "--json")
    successor = ok("keys", "rotate", metered["id"], "--grace", "1h", *s, "--json")
    assert fails("keys", "delete", metered["id"], *s, status=1) == (
        f"keysentry: key {metered['id']} holds the credits of its rotation line, which its "
        f"successor {successor['id']} spends: revoke it instead of deleting it"
    )


# -- the issue's check: keys created here, served by the demo on the same store -----------------


@contextlib.contextmanager
def _demo(store_url: str, cwd: Path, *extra: str) -> Iterator[int]:
    proc = subprocess.Popen(
        [str(SCRIPT), "demo", "--port", "0", "--store", store_url, *extra],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    assert proc.stdout is not None
    watchdog = threading.Timer(30, proc.kill)  # a demo that never prints must not hang the test
    watchdog.start()
    try:
        text = ""
        while "Ctrl-C" not in text:
            line = proc.stdout.readline()
            assert line, text
            text += line
        watchdog.cancel()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", text)
        assert found, text
        port = int(found.group(1))
        deadline = time.monotonic() + 10
        while True:
            try:
                _get(port, "/health")
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        yield port
    finally:
        watchdog.cancel()
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


def _get(port: int, path: str, key: str | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {key}"} if key else {})
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def _code(answer: tuple[int, Any]) -> tuple[int, str | None]:
    status, body = answer
    return status, body["error"]["code"] if status >= 400 else None


def test_the_demo_serves_keys_the_cli_creates(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/k.db"
    ci = ok(
        *("keys", "create", "--name", "ci", "--scopes", "read"),
        *("--rate-limit", "5/minute", "--credits", "3", "--json"),
        env=_env(KEYSENTRY_STORE=url),
    )
    s = ("--store", url)
    rotating = ok("keys", "create", "--name", "rotating", *s, "--json")

    with _demo(url, tmp_path) as port:
        for _ in range(3):
            assert _code(_get(port, "/v1/me", ci["key"])) == (200, None)
        assert _code(_get(port, "/v1/me", ci["key"])) == (402, "INSUFFICIENT_CREDITS")
    # The demo wrote its usage on the way out.
    shown = ok("keys", "show", ci["id"], *s, "--json")
    assert (shown["credits"], shown["request_count"]) == (0, 3)
    assert shown["last_used_at"] is not None

    ok("keys", "revoke", ci["id"], *s)
    with _demo(url, tmp_path) as port:
        assert _code(_get(port, "/v1/me", ci["key"])) == (401, "INVALID_API_KEY")

        rotated = ok("keys", "rotate", rotating["id"], "--grace", "2s", *s, "--json")
        until = _at(rotated["old"]["expires_at"])
        assert _code(_get(port, "/v1/me", rotating["key"])) == (200, None)
        assert _code(_get(port, "/v1/me", rotated["key"])) == (200, None)
        time.sleep(max(0.0, (until - datetime.now(timezone.utc)).total_seconds()) + 0.2)
        assert _code(_get(port, "/v1/me", rotating["key"])) == (401, "EXPIRED_API_KEY")
        assert _code(_get(port, "/v1/me", rotated["key"])) == (200, None)


@pytest.mark.redis
def test_changes_announced_with_invalidator_reach_a_running_app_at_once(tmp_path: Path) -> None:
    """An app with an hour-long cache, listening on Redis: `keys disable --invalidator` is
    refused there at once, not an hour later."""
    import time

    from keysentry.decision import Verdict
    from keysentry.invalidation import RedisInvalidator

    redis_or_skip()
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    created = ok("keys", "create", "--name", "watched", "--store", url, "--json")
    listener = RedisInvalidator(REDIS_URL)
    app = Keysentry(from_url(url), secret=SECRET, cache_ttl=3600, invalidator=listener)
    try:
        assert listener.wait_listening(5)
        key = created["key"].encode()
        assert isinstance(app.authenticate(key), Verdict)  # cached for an hour
        ok("keys", "disable", created["id"], "--store", url, "--invalidator", REDIS_URL)
        deadline = time.monotonic() + 2
        while isinstance(app.authenticate(key), Verdict):
            assert time.monotonic() < deadline, "the change was not heard"
            time.sleep(0.02)
        assert getattr(app.authenticate(key), "code", None) == "API_KEY_DISABLED"
    finally:
        listener.close()
        app.store.close()  # type: ignore[union-attr]


def test_an_unreachable_invalidator_is_a_warning_line_not_a_failure(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    created = ok("keys", "create", "--name", "x", "--store", url, "--json")
    r = keysentry(
        "keys", "revoke", created["id"], "--store", url, "--invalidator", "redis://127.0.0.1:1/0"
    )
    assert r.returncode == 0
    assert "Revoked key" in r.stdout
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("keysentry: warning: could not announce")


# -- update, delete, verify, --expires-at: on every store ----------------------------------------


def verify(
    key: str, *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``keys verify`` with ``key`` on its standard input (or ``stdin`` there, when the key
    is given another way); the key is never in its output."""
    r = subprocess.run(
        [str(SCRIPT), "keys", "verify", *args],
        input=key + "\n" if stdin is None else stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=env or _env(),
    )
    assert "Traceback" not in r.stderr
    assert key not in r.stdout + r.stderr
    assert key[20:45] not in r.stdout + r.stderr  # nor a stretch of its secret part
    return r


def test_update_verify_and_delete_on_every_store(store_url: str) -> None:
    s = ("--store", store_url)
    created = ok(
        *("keys", "create", "--name", "ci", "--owner", "acct_1", "--scopes", "read"),
        *("--expires-at", "2031-02-03T04:05:06Z", "--credits", "9", *s, "--json"),
    )
    key, key_id = created["key"], created["id"]
    assert created["expires_at"] == "2031-02-03T04:05:06+00:00"
    assert created["digest_mode"] == "hmac-sha256"

    # Every field update changes, given as options; --expires-at with an offset is UTC.
    updated = ok(
        *("keys", "update", key_id, "--name", "renamed", "--owner", "acct_2"),
        *("--scopes", "read,write", "--scopes", "admin", "--rate-limit", "10/second"),
        *("--credits", "500", "--allow-ip", "10.0.0.0/8", "--metadata", '{"plan": "pro"}'),
        *("--expires-at", "2032-01-01T02:00:00+02:00", *s, "--json"),
    )
    assert updated == {
        **{k: v for k, v in created.items() if k != "key"},
        "name": "renamed",
        "owner": "acct_2",
        "scopes": ["admin", "read", "write"],
        "rate_limit": ["10/second"],
        "credits": 500,
        "allowed_networks": ["10.0.0.0/8"],
        "metadata": {"plan": "pro"},
        "expires_at": "2032-01-01T00:00:00+00:00",
    }

    # verify decides as the middleware does, and never prints the key.
    r = verify(key, *s)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.splitlines() == [
        f"valid: key {key_id} (sk_live_{key_id})",
        "Each request is also checked for: its client address (10.0.0.0/8); its rate limit "
        "(10/second); its credits.",
    ]

    # Back to nothing: each option that clears a field.
    cleared = ok(
        *("keys", "update", key_id, "--no-owner", "--no-scopes", "--rate-limit", "default"),
        *("--unmetered", "--any-ip", "--never-expires", *s, "--json"),
    )
    assert cleared == {
        **updated,
        "owner": None,
        "scopes": [],
        "rate_limit": None,
        "credits": None,
        "allowed_networks": [],
        "expires_at": None,
    }

    # Delete: gone from the store, its listings, and for the apps.
    deleted = ok("keys", "delete", key_id, "--yes", *s, "--json")
    assert deleted == {**cleared, "status": "deleted"}
    r = verify(key, *s)
    assert (r.returncode, r.stdout) == (1, "INVALID_API_KEY: The API key is not valid.\n")
    assert ok("keys", "list", *s, "--json") == {"keys": [], "next": None}


def test_update_and_verify_for_people_and_scripts(sqlite_url: str, tmp_path: Path) -> None:
    s = ("--store", sqlite_url)
    created = ok("keys", "create", "--name", "ci", *s, "--json")
    key, key_id = created["key"], created["id"]
    text = ok("keys", "update", key_id, "--expires-in", "2h", "--rate-limit", "none", *s)
    lines = text.splitlines()
    assert lines[0] == f"Updated key {key_id} (sk_live_{key_id}): expires at, rate limit."
    fields = dict(line.split(": ", 1) for line in lines[2:])
    assert fields["rate_limit"].strip() == "none"
    expires = datetime.strptime(fields["expires_at"].strip(), "%Y-%m-%d %H:%M:%SZ")
    assert _close_to(
        expires.replace(tzinfo=timezone.utc).isoformat(),
        datetime.now(timezone.utc) + timedelta(hours=2),
    )

    key_file = tmp_path / "key.txt"
    key_file.write_text(f"  {key}\n")
    r = verify(key, "--key-file", str(key_file), *s, "--json", stdin="")  # not from stdin
    assert r.returncode == 0
    assert json.loads(r.stdout) == {
        "valid": True,
        "id": key_id,
        "prefix": f"sk_live_{key_id}",
        "name": "ci",
        "owner": None,
        "scopes": [],
        "expires_at": ok("keys", "show", key_id, *s, "--json")["expires_at"],
    }

    ok("keys", "disable", key_id, *s)
    r = verify(key, *s, "--json")
    assert (r.returncode, json.loads(r.stdout)) == (
        1,
        {
            "valid": False,
            "code": "API_KEY_DISABLED",
            "status": 403,
            "message": "The API key is disabled.",
            "details": {},
        },
    )
    r = verify(key[:-1] + ("0" if key[-1] != "0" else "1"), *s)  # a typo: the checksum says so
    assert r.returncode == 1
    assert r.stdout.startswith("INVALID_API_KEY: The API key's checksum does not match")


def test_delete_asks_first(sqlite_url: str) -> None:
    s = ("--store", sqlite_url)
    created = ok("keys", "create", "--name", "precious", *s, "--json")
    key_id = created["id"]
    for answer in ("n\n", ""):  # no, and no answer at all
        r = subprocess.run(
            [str(SCRIPT), "keys", "delete", key_id, *s],
            input=answer,
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(),
        )
        assert (r.returncode, r.stdout) == (1, ""), answer
        assert r.stderr == (
            f"Delete key {key_id} (sk_live_{key_id}, 'precious') for good? Its requests get "
            "401 and it cannot be restored. [y/N] \n"
            f"keysentry: key {key_id} was not deleted (--yes deletes without asking)\n"
        )
    r = subprocess.run(
        [str(SCRIPT), "keys", "delete", f"sk_live_{key_id}", *s],
        input="Y\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert r.returncode == 0
    assert r.stdout.startswith(f"Deleted key {key_id} (sk_live_{key_id}, 'precious'): it is gone")
    assert fails("keys", "show", key_id, *s, status=1)


def test_enable_refuses_a_revoked_key(sqlite_url: str) -> None:
    s = ("--store", sqlite_url)
    created = ok("keys", "create", *s, "--json")
    revoked = ok("keys", "revoke", created["id"], *s, "--json")
    assert fails("keys", "enable", created["id"], *s, status=1) == (
        f"keysentry: key {created['id']} is revoked: it cannot be enabled again; issue a new "
        "key instead"
    )
    assert ok("keys", "show", created["id"], *s, "--json") == revoked


def test_a_key_is_named_by_its_id_or_its_listed_prefix(sqlite_url: str) -> None:
    s = ("--store", sqlite_url)
    created = ok("keys", "create", "--name", "named", "--prefix", "sk_test", *s, "--json")
    key_id, prefix = created["id"], created["prefix"]
    assert prefix == f"sk_test_{key_id}"
    shown = ok("keys", "show", prefix, *s, "--json")
    assert shown == {k: v for k, v in created.items() if k != "key"}
    assert ok("keys", "disable", prefix + "...", *s, "--json")["status"] == "disabled"  # as logged
    # A prefix that is not the key's own names no key.
    assert fails("keys", "show", f"sk_live_{key_id}", *s, status=1) == (
        f"keysentry: no key with prefix 'sk_live_{key_id}'"
    )


def test_list_on_a_new_directory_is_an_empty_table(tmp_path: Path) -> None:
    r = keysentry("keys", "list", cwd=tmp_path)
    assert r.returncode == 0
    assert r.stdout.splitlines() == [
        "ID  NAME  OWNER  PREFIX  SCOPES  STATUS  CREDITS  LAST USED  REQUESTS"
    ]
    assert r.stderr == (
        "keysentry: note: store sqlite:///keysentry.db: no database file 'keysentry.db' yet "
        "(keysentry keys create makes one)\n"
    )
    r = keysentry("keys", "list", "--json", cwd=tmp_path)
    assert (r.returncode, json.loads(r.stdout)) == (0, {"keys": [], "next": None})
    assert not list(tmp_path.iterdir())  # listing made no file


def test_the_digest_mode_is_shown_and_a_mismatch_is_told(tmp_path: Path) -> None:
    """A key made with KEYSENTRY_SECRET, looked at and verified without it (and the other
    way round): show says how each was digested, verify refuses it and the warning names
    the key id and the likely cause, never the key."""
    s = ("--store", f"sqlite:///{tmp_path / 'k.db'}")
    plain_env = {k: v for k, v in _env().items() if k != "KEYSENTRY_SECRET"}
    keyed = ok("keys", "create", "--name", "keyed", *s, "--json")
    plain = ok("keys", "create", "--name", "plain", *s, "--json", env=plain_env)
    assert (keyed["digest_mode"], plain["digest_mode"]) == ("hmac-sha256", "sha256")

    text = ok("keys", "show", keyed["id"], *s, env=plain_env)
    assert "digest_mode:      hmac-sha256 (with a secret)" in text
    assert text.endswith(
        "Note: this key was digested with a secret, and $KEYSENTRY_SECRET is not set here: "
        "it verifies only in apps given the secret it was created with.\n"
    )
    text = ok("keys", "show", plain["id"], *s)
    assert "digest_mode:      sha256 (without a secret)" in text
    assert text.endswith(
        "Note: this key was digested without a secret, and $KEYSENTRY_SECRET is set here: it "
        "verifies only in apps without one.\n"
    )
    assert SECRET not in text

    r = verify(keyed["key"], *s, env=plain_env)
    assert (r.returncode, r.stdout) == (1, "INVALID_API_KEY: The API key is not valid.\n")
    assert r.stderr == (
        f"keysentry: warning: key {keyed['id']} was refused: the key presented does not match "
        "its stored digest; its record was digested with a secret (hmac-sha256) and this app "
        "has none (sha256): give it the KEYSENTRY_SECRET the key was created with\n"
    )
    r = verify(plain["key"], *s)
    assert r.returncode == 1
    assert f"key {plain['id']} was refused" in r.stderr
    assert "was the key created where KEYSENTRY_SECRET was not set?" in r.stderr
    assert SECRET not in r.stderr


@pytest.mark.redis
def test_a_deletion_announced_with_invalidator_reaches_a_running_app_at_once(
    tmp_path: Path,
) -> None:
    from keysentry.decision import Verdict
    from keysentry.invalidation import RedisInvalidator

    redis_or_skip()
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    created = ok("keys", "create", "--name", "doomed", "--store", url, "--json")
    listener = RedisInvalidator(REDIS_URL)
    app = Keysentry(from_url(url), secret=SECRET, cache_ttl=3600, invalidator=listener)
    try:
        assert listener.wait_listening(5)
        key = created["key"].encode()
        assert isinstance(app.authenticate(key), Verdict)  # cached for an hour
        ok("keys", "delete", created["id"], "--yes", "--store", url, "--invalidator", REDIS_URL)
        deadline = time.monotonic() + 2
        while isinstance(app.authenticate(key), Verdict):
            assert time.monotonic() < deadline, "the deletion was not heard"
            time.sleep(0.02)
        assert getattr(app.authenticate(key), "code", None) == "INVALID_API_KEY"
    finally:
        listener.close()
        app.store.close()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate-limit", "-5/minute"], "argument --rate-limit: not a rate: '-5/minute'"),
        (["--rate-limit=lots/minute"], "argument --rate-limit: not a rate: 'lots/minute'"),
        (["--rate-limit", ""], "argument --rate-limit: '' holds no rate"),
    ],
)
def test_the_demo_names_its_option_for_a_bad_rate(
    args: list[str], message: str, tmp_path: Path
) -> None:
    line = fails("demo", *args, "--store", f"sqlite:///{tmp_path}/k.db", status=2)
    assert line.startswith("keysentry demo: error: ")
    assert message in line
    assert not list(tmp_path.iterdir())  # refused before any store was opened


# -- usage history ---------------------------------------------------------------------------------


def _used_keys(store_url: str) -> tuple[Any, Any]:
    """Two keys of one owner on the store, the first used for three requests (two routes)
    through an app that records usage and its routes."""
    store = from_url(store_url)
    ks = Keysentry(store, secret=SECRET, usage_interval=3600, usage_routes=True)
    used, idle = (ks.issue(name=name, owner="acct_u") for name in ("used", "idle"))
    client = Client("starlette", ks)
    for path in ("/", "/a", "/b"):
        assert client.get(path, {"X-API-Key": used.key.reveal()}).status == 200
    ks.close()  # writes the batch
    store.close()
    return used.record, idle.record


def test_usage_on_every_store(store_url: str) -> None:
    """The requests an app let through, per day and route, as `keys usage` shows them."""
    used, idle = _used_keys(store_url)
    today = datetime.now(timezone.utc).date()
    yesterday = (today - timedelta(days=1)).isoformat()
    shown = ok("keys", "usage", used.id, "--days", "2", "--store", store_url, "--json")
    assert shown == {
        "id": used.id,
        "prefix": used.prefix,
        "days": [
            {"day": yesterday, "requests": 0, "routes": {}},
            {"day": today.isoformat(), "requests": 3, "routes": {"/": 1, "/{path:path}": 2}},
        ],
        "total": 3,
    }
    account = ok("keys", "--json", "usage", "--owner", "acct_u", "--store", store_url)
    assert account["days"][-1] == shown["days"][-1]
    assert len(account["days"]) == 30
    assert (account["owner"], account["total"]) == ("acct_u", 3)
    assert account["keys"] == dict(sorted({used.id: 3, idle.id: 0}.items()))


def test_usage_for_people_and_what_it_refuses(sqlite_url: str) -> None:
    used, idle = _used_keys(sqlite_url)
    s = ("--store", sqlite_url)
    today = datetime.now(timezone.utc).date()
    yesterday = (today - timedelta(days=1)).isoformat()
    text = ok("keys", "usage", used.prefix + "...", "--days", "2", *s)  # a listed prefix
    assert text.splitlines() == [
        f"Requests of key {used.id} ({used.prefix}) per UTC day, the last 2:",
        "",
        "DAY         REQUESTS  ROUTES",
        f"{yesterday}         0  -",
        f"{today.isoformat()}         3  /{{path:path}} 2, / 1",
        "",
        "Total: 3",
    ]
    text = ok("keys", "usage", "--owner", "acct_u", "--days", "1", *s)
    assert "Requests of the 2 keys of owner 'acct_u' per UTC day, the last 1:" in text
    assert re.search(rf"(?m)^{used.id}  {used.prefix}  used  active +3$", text)
    assert re.search(rf"(?m)^{idle.id}  {idle.prefix}  idle  active +0$", text)
    assert fails("keys", "usage", "nosuchkey000", *s, status=1) == (
        "keysentry: no key with id 'nosuchkey000'"
    )
    assert "give a key's ID or --owner OWNER" in fails("keys", "usage", *s, status=2)
    assert "--days: '0': a number of days from 1 to 3660" in fails(
        "keys", "usage", used.id, "--days", "0", *s, status=2
    )

"""``keysentry accounts``: the accounts of key owners, managed from the command line, and
honoured at once by a running app (the demo) that listens for changes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .services import REDIS_URL, redis_or_skip
from .test_cli import _code, _demo, _get, fails, ok


def test_two_keys_share_an_account_then_the_account_is_disabled_at_once(tmp_path: Path) -> None:
    """The issue's check: two keys of one owner share a balance of 3 set from the CLI (three
    200s across both, then 402 naming the account); `accounts disable` with the invalidator
    makes both answer 403 ACCOUNT_DISABLED within a second in the running demo; the demo's
    /v1/generate costs 5, so a key limited to 10/minute gets two 200s there, then 429."""
    redis_or_skip()
    url = f"sqlite:///{tmp_path}/k.db"
    s = ("--store", url)
    one = ok("keys", "create", "--name", "one", "--owner", "acme", *s, "--json")
    two = ok("keys", "create", "--name", "two", "--owner", "acme", *s, "--json")
    gen = ok("keys", "create", "--name", "gen", "--rate-limit", "10/minute", *s, "--json")
    account = ok("accounts", "credits", "acme", "3", *s, "--json")
    assert (account["owner"], account["credits"], account["status"]) == ("acme", 3, "active")

    with _demo(url, tmp_path, "--invalidator", REDIS_URL) as port:
        answers = [_code(_get(port, "/v1/me", k["key"])) for k in (one, two, one)]
        assert answers == [(200, None)] * 3
        status, body = _get(port, "/v1/me", two["key"])
        assert (status, body["error"]["code"]) == (402, "INSUFFICIENT_CREDITS")
        assert "acme" in body["error"]["message"]

        ok("accounts", "credits", "acme", "10", *s)
        for key in (one, two):
            assert _code(_get(port, "/v1/me", key["key"])) == (200, None)
        ok("accounts", "disable", "acme", *s, "--invalidator", REDIS_URL)
        deadline = time.monotonic() + 1.0
        for key in (one, two):
            while _code(_get(port, "/v1/me", key["key"])) != (403, "ACCOUNT_DISABLED"):
                assert time.monotonic() < deadline, "the demo still admits the account's keys"
                time.sleep(0.02)

        generations = [_code(_get(port, "/v1/generate", gen["key"])) for _ in range(3)]
        assert generations == [(200, None), (200, None), (429, "RATE_LIMITED")]

    shown = ok("accounts", "show", "acme", *s, "--json")
    assert shown == {
        "owner": "acme",
        "exists": True,
        "status": "disabled",
        "credits": 8,
        "rate_limit": [],
        "refill": None,
        "refilled_at": None,
        "keys": 2,
    }


def test_account_commands_for_people_and_scripts(tmp_path: Path) -> None:
    s = ("--store", f"sqlite:///{tmp_path}/k.db")
    ok("keys", "create", "--name", "k", "--owner", "team one", *s)
    text = ok("accounts", "show", "team one", *s)
    assert "status       active (no account record)" in text
    assert "keys         1" in text
    limited = ok("accounts", "limit", "team one", "100/minute, 10000/day", *s, "--json")
    assert limited["rate_limit"] == ["100/minute", "10000/day"]
    added = ok("accounts", "credits", "team one", "5", "--add", "--refill", "+50/week", *s)
    assert "added 5 credits to account 'team one'" in added
    assert "refill       +50/week" in added
    again = ok("accounts", "credits", "team one", "7", "--add", *s, "--json")
    assert (again["credits"], again["refill"]) == (12, "+50/week")
    assert again["refilled_at"] is not None
    cleared = ok("accounts", "credits", "team one", "none", "--refill", "none", *s, "--json")
    assert (cleared["credits"], cleared["refill"]) == (None, None)
    assert ok("accounts", "limit", "team one", "none", *s, "--json")["rate_limit"] == []
    assert ok("accounts", "enable", "team one", *s, "--json")["status"] == "active"
    key = ok("keys", "create", "--name", "daily", "--credits", "0", "--refill", "20/day", *s,
             "--json")  # fmt: skip
    assert (key["credits"], key["refill"]) == (0, "20/day")
    updated = ok("keys", "update", key["id"], "--refill", "none", *s, "--json")
    assert updated["refill"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("accounts", "credits", "acme", "-3"), "credits cannot be negative"),
        (("accounts", "credits", "acme", "lots"), "not a number of credits"),
        (("accounts", "credits", "acme", "none", "--add"), "--add needs a number"),
        (("accounts", "credits", "acme", "3", "--refill", "3/fortnight"), "not a refill"),
        (("accounts", "limit", "acme", "fast"), "not a rate"),
        (("accounts", "show", ""), "owner cannot be empty"),
        (("keys", "create", "--name", "x", "--refill", "monthly"), "not a refill"),
    ],
)
def test_bad_account_input_is_one_usage_line(
    args: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    line = fails(*args, "--store", f"sqlite:///{tmp_path}/k.db", status=2)
    assert message in line
    assert not (tmp_path / "k.db").exists()

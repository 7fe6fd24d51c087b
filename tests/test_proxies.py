"""Allowlists behind trusted reverse proxies: X-Forwarded-For and Forwarded (RFC 7239).

The parser first (examples, bounds, then properties: it never raises, it answers an IP or None,
it changes nothing without trusted proxies, and whatever a client writes into the header it
cannot stand in for the address the last trusted proxy saw), then the same through each
framework's own test client and through hand-built scopes and environs.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from werkzeug.test import Client as WerkzeugClient

from keysentry import Keysentry, MemoryStore
from keysentry.proxies import MAX_ENTRIES, MAX_HEADER_BYTES, TrustedProxies

from .apps import fastapi_app, flask_app, starlette_app, werkzeug_app
from .conftest import SECRET
from .raw import asgi_call, environ, http_scope, result, wsgi_call

PROXIES = ("192.0.2.0/24", "2001:db8:ffff::/48")
XFF = TrustedProxies(PROXIES)
FWD = TrustedProxies(PROXIES, header="Forwarded")
PROXY = "192.0.2.10"

# -- the parser: X-Forwarded-For ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "client"),
    [
        (b"203.0.113.9", "203.0.113.9"),
        (b"  203.0.113.9\t", "203.0.113.9"),
        (b"203.0.113.9:5678", "203.0.113.9"),
        (b"2001:db8::1", "2001:db8::1"),
        (b"[2001:db8::1]", "2001:db8::1"),
        (b"[2001:db8::1]:443", "2001:db8::1"),
        (b"2001:DB8:0::1", "2001:db8::1"),
        (b"::ffff:203.0.113.9", "::ffff:203.0.113.9"),
        # The rightmost entry that is not a trusted proxy, whatever stands left of it.
        (b"10.0.0.1, 203.0.113.9", "203.0.113.9"),
        (b"garbage, 203.0.113.9", "203.0.113.9"),
        (b"203.0.113.9, 192.0.2.7", "203.0.113.9"),
        (b"203.0.113.9,192.0.2.7,[2001:db8:ffff::1]:80", "203.0.113.9"),
        (b"10.0.0.1, 203.0.113.9:80, 192.0.2.7", "203.0.113.9"),
        # Every entry a trusted proxy: the leftmost.
        (b"192.0.2.1, 192.0.2.7", "192.0.2.1"),
        (b"::ffff:192.0.2.1", "::ffff:192.0.2.1"),
    ],
)
def test_x_forwarded_for(header: bytes, client: str) -> None:
    found = XFF.client(PROXY, [header])
    assert found is not None
    assert ipaddress.ip_address(found) == ipaddress.ip_address(client)


@pytest.mark.parametrize(
    "header",
    [
        b"",
        b" ",
        b"unknown",
        b"_hidden",
        b"not-an-ip",
        b"203.0.113.9, ",
        b"203.0.113.9,,192.0.2.7",
        b"203.0.113.300",
        b"203.0.113.09",
        b"203.0.113.9:",
        b"203.0.113.9:123456",
        b"203.0.113.9:port",
        b"[203.0.113.9]",
        b"[2001:db8::1",
        b"[2001:db8::1]443",
        b"[2001:db8::1]:",
        b"2001:db8::1:443:",
        b"fe80::1%eth0",
        b"203.0.113.9 203.0.113.8",
        b"\xff\xfe",
        b"203.0.113.9\x00",
        b'"203.0.113.9"',
        b"for=203.0.113.9",
        b"1" * 100,
    ],
)
def test_x_forwarded_for_unreadable_is_none(header: bytes) -> None:
    assert XFF.client(PROXY, [header]) is None


# -- the parser: Forwarded ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "client"),
    [
        (b"for=203.0.113.9", "203.0.113.9"),
        (b"For=203.0.113.9", "203.0.113.9"),
        (b"FOR=203.0.113.9;PROTO=https", "203.0.113.9"),
        (b'for="203.0.113.9"', "203.0.113.9"),
        (b'for="203.0.113.9:4711"', "203.0.113.9"),
        (b'for="[2001:db8::1]"', "2001:db8::1"),
        (b'for="[2001:db8::1]:4711"', "2001:db8::1"),
        (b'for="[2001:db8::1]:_port"', "2001:db8::1"),
        (b"proto=https;for=203.0.113.9;by=192.0.2.10;host=example.com", "203.0.113.9"),
        (b" for = 203.0.113.9 ; proto=http", "203.0.113.9"),
        (b'for=10.0.0.1, for=203.0.113.9;by="[2001:db8:ffff::1]"', "203.0.113.9"),
        (b"for=unknown, for=203.0.113.9, for=192.0.2.7", "203.0.113.9"),
        (b"for=192.0.2.1, for=192.0.2.7", "192.0.2.1"),
    ],
)
def test_forwarded(header: bytes, client: str) -> None:
    assert FWD.client(PROXY, [header]) == client


@pytest.mark.parametrize(
    "header",
    [
        b"",
        b"for=unknown",
        b"for=_hidden",
        b'for="_hidden:_port"',
        b"for=_hidden, for=192.0.2.7",
        b"proto=https",
        b"by=192.0.2.10",
        b"for",
        b"for=",
        b'for=""',
        b'for="',
        b'for="203.0.113.9',
        b'for=203.0.113.9"',
        b'for="203.0.113.9"x',
        b'for="20\\3.0.113.9"',
        b"for=203.0.113.9;for=198.51.100.1",
        b"for=[2001:db8::1]x",
        b"203.0.113.9",
        b"forwarded=203.0.113.9",
        b"for=\xff",
    ],
)
def test_forwarded_unreadable_is_none(header: bytes) -> None:
    assert FWD.client(PROXY, [header]) is None


# -- the parser: who is asked, and bounds ---------------------------------------------------------


@pytest.mark.parametrize("proxies", [XFF, FWD])
@pytest.mark.parametrize("peer", ["203.0.113.9", "2001:db8::1", "testclient", "", "::ffff:1.2.3.4"])
def test_an_untrusted_peer_is_the_client(proxies: TrustedProxies, peer: str) -> None:
    assert proxies.client(peer, [b"192.0.2.1", b"for=192.0.2.1"]) == peer


def test_no_peer_is_no_client() -> None:
    assert XFF.client(None, [b"203.0.113.9"]) is None


def test_a_trusted_peer_without_the_header_is_the_client() -> None:
    assert XFF.client(PROXY, []) == PROXY
    assert FWD.client("2001:db8:ffff::2", []) == "2001:db8:ffff::2"


def test_an_ipv4_mapped_peer_is_trusted_as_its_ipv4() -> None:
    assert XFF.client("::ffff:192.0.2.10", [b"203.0.113.9"]) == "203.0.113.9"


@pytest.mark.parametrize("proxies", [XFF, FWD])
def test_header_lines_form_one_list_in_order(proxies: TrustedProxies) -> None:
    prefix = b"for=" if proxies is FWD else b""
    lines = [prefix + b"203.0.113.9", prefix + b"198.51.100.1, " + prefix + b"192.0.2.7"]
    assert proxies.client(PROXY, lines) == "198.51.100.1"
    assert proxies.client(PROXY, lines[::-1]) == "203.0.113.9"
    assert proxies.client(PROXY, [prefix + b"192.0.2.1", prefix + b"192.0.2.7"]) == "192.0.2.1"


def test_a_chain_of_trusted_proxies_up_to_the_cap_is_walked() -> None:
    chain = b", ".join([b"192.0.2.1"] * (MAX_ENTRIES - 1) + [b"192.0.2.2"])
    assert XFF.client(PROXY, [chain]) == "192.0.2.1"


def test_a_chain_past_the_cap_is_undetermined() -> None:
    trusted = [b"192.0.2.1"] * MAX_ENTRIES
    assert XFF.client(PROXY, [b", ".join([b"203.0.113.9", *trusted])]) is None
    assert XFF.client(PROXY, [b"203.0.113.9", *trusted]) is None
    # An untrusted entry within the cap ends the walk before it.
    assert XFF.client(PROXY, [b", ".join([b"198.51.100.1", *trusted[1:]])]) == "198.51.100.1"


def test_a_huge_header_is_read_from_its_right_end_only() -> None:
    """Only the last MAX_HEADER_BYTES and MAX_ENTRIES are examined: what lies further left,
    however large or malformed, changes nothing (and so costs nothing to parse)."""
    huge = b"203.0.113.9, " * 200_000 + b"198.51.100.1"  # 2.6 MB
    garbage_left = b"\xff\x00 not an address; " * 100_000 + b", 198.51.100.1"
    assert XFF.client(PROXY, [huge]) == "198.51.100.1"
    assert XFF.client(PROXY, [garbage_left]) == "198.51.100.1"
    assert XFF.client(PROXY, [b"x" * 5_000_000]) is None
    assert XFF.client(PROXY, [b"192.0.2.1"] * 100_000) is None
    assert FWD.client(PROXY, [b"for=" + b";" * 1_000_000]) is None


def test_a_cut_header_does_not_make_up_its_leftmost_entry() -> None:
    # All trusted, fewer than MAX_ENTRIES, but the left end lies past MAX_HEADER_BYTES.
    padded = b"192.0.2.1" + b" " * 200
    fits = MAX_HEADER_BYTES // (len(padded) + 1)
    assert fits + 1 < MAX_ENTRIES
    assert XFF.client(PROXY, [b",".join([padded] * fits)]) == "192.0.2.1"
    assert XFF.client(PROXY, [b",".join([padded] * (fits + 1))]) is None
    assert XFF.client(PROXY, [padded] * (fits + 1)) is None


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("networks", "message"),
    [
        (["10.0.0.0/33"], "not a network"),
        (["10.0.0.1/8"], "host bits"),
        (["proxy.internal"], "not a network"),
        (["10.0.0.0/8", ""], "not a network"),
        ([167772160], "not a CIDR string"),
        ([b"\n\x00\x00\x00"], "not a CIDR string"),
    ],
)
def test_bad_networks_are_refused(networks: list[Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrustedProxies(networks)
    with pytest.raises(ValueError, match=message):
        Keysentry(MemoryStore(), trusted_proxies=networks)


@pytest.mark.parametrize(
    "header", ["X-Real-IP", "X-Forwarded-Host", "", "X-Forwarded-For, Forwarded"]
)
def test_other_headers_are_refused(header: str) -> None:
    with pytest.raises(ValueError, match="'X-Forwarded-For' or 'Forwarded'"):
        Keysentry(MemoryStore(), trusted_proxies=["10.0.0.0/8"], forwarded_header=header)
    with pytest.raises(ValueError, match="'X-Forwarded-For' or 'Forwarded'"):
        Keysentry(MemoryStore(), forwarded_header=header)


def test_configuration() -> None:
    assert Keysentry(MemoryStore()).settings.proxies is None
    ks = Keysentry(MemoryStore(), trusted_proxies="10.0.0.0/8", forwarded_header="forwarded")
    proxies = ks.settings.proxies
    assert proxies is not None
    assert proxies.networks == (ipaddress.ip_network("10.0.0.0/8"),)
    assert (proxies.header, proxies.header_name, proxies.environ_key) == (
        "Forwarded",
        b"forwarded",
        "HTTP_FORWARDED",
    )
    assert repr(proxies) == "TrustedProxies([10.0.0.0/8], header='Forwarded')"
    xff = TrustedProxies([ipaddress.ip_network("::1/128"), "127.0.0.1"])
    assert (xff.header_name, xff.environ_key) == (b"x-forwarded-for", "HTTP_X_FORWARDED_FOR")
    assert not TrustedProxies(())


# -- properties ----------------------------------------------------------------------------------

any_peer = st.one_of(st.ip_addresses().map(str), st.text(max_size=50))
header_lines = st.lists(st.binary(max_size=200), max_size=5)


@settings(max_examples=500, deadline=None)
@given(proxies=st.sampled_from([XFF, FWD]), values=header_lines)
def test_never_raises_and_answers_an_ip_or_none(
    proxies: TrustedProxies, values: list[bytes]
) -> None:
    client = proxies.client(PROXY, values)
    assert client is None or ipaddress.ip_address(client)


@settings(max_examples=300, deadline=None)
@given(header=st.sampled_from(["X-Forwarded-For", "Forwarded"]), peer=any_peer, values=header_lines)
def test_without_trusted_proxies_the_peer_is_the_client(
    header: str, peer: str, values: list[bytes]
) -> None:
    assert TrustedProxies((), header).client(peer, values) == peer


def _untrusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not XFF.trusts(address)


untrusted_ips = st.ip_addresses().filter(_untrusted)
trusted_ips = st.one_of(
    st.ip_addresses(network="192.0.2.0/24"), st.ip_addresses(network="2001:db8:ffff::/48")
)


def _xff_entry(address: ipaddress.IPv4Address | ipaddress.IPv6Address, style: int) -> bytes:
    text = str(address)
    if address.version == 6:
        text = [text, f"[{text}]", f"[{text}]:443"][style % 3]
    elif style % 2:
        text += ":5678"
    return text.encode()


def _forwarded_entry(address: ipaddress.IPv4Address | ipaddress.IPv6Address, style: int) -> bytes:
    node = f'"[{address}]:4711"' if address.version == 6 else str(address)
    element = [f"for={node}", f"For={node};proto=https", f"proto=http;by=_p;FOR={node}"]
    return element[style % 3].encode()


@settings(max_examples=500, deadline=None)
@given(
    forwarded=st.booleans(),
    spoofed=header_lines,
    client=untrusted_ips,
    hops=st.lists(trusted_ips, min_size=1, max_size=8),
    styles=st.lists(st.integers(0, 5), min_size=9, max_size=9),
    lines=st.booleans(),
)
def test_a_client_cannot_spoof_past_the_last_trusted_proxy(
    forwarded: bool,
    spoofed: list[bytes],
    client: ipaddress.IPv4Address | ipaddress.IPv6Address,
    hops: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
    styles: list[int],
    lines: bool,
) -> None:
    """The client writes anything into the header; each trusted proxy appends the address it
    saw (the first one the client's), as a new line or after a comma; the last is the peer."""
    proxies, entry = (FWD, _forwarded_entry) if forwarded else (XFF, _xff_entry)
    seen = [client, *hops[:-1]]
    appended = [
        entry(address, style) for address, style in zip(seen, styles[: len(seen)], strict=True)
    ]
    values = list(spoofed)
    for item in appended:
        if lines or not values:
            values.append(item)
        else:
            values[-1] += b", " + item
    assert proxies.client(str(hops[-1]), values) == str(client)


# -- through the frameworks ----------------------------------------------------------------------

ASGI = {"starlette": starlette_app, "fastapi": fastapi_app}
WSGI = {"flask": flask_app, "werkzeug": werkzeug_app}
FRAMEWORKS = [*ASGI, *WSGI]
Headers = list[tuple[str, str]]


def _status(framework: str, ks: Keysentry, peer: str, headers: Headers) -> tuple[int, str]:
    if framework in ASGI:
        client = TestClient(ASGI[framework](ks), client=(peer, 40000))
        r = client.get("/", headers=headers)
        return r.status_code, r.json().get("error", {}).get("code", "")
    wz = WerkzeugClient(WSGI[framework](ks))
    resp = wz.get("/", headers=headers, environ_base={"REMOTE_ADDR": peer})
    return resp.status_code, resp.get_json().get("error", {}).get("code", "")


def _guard(store: MemoryStore, **settings: Any) -> tuple[Keysentry, str]:
    ks = Keysentry(store, secret=SECRET, **settings)
    key = ks.issue(name="office", allowed_networks=["10.0.0.0/8", "2001:db8::/32"]).key.reveal()
    return ks, key


@pytest.fixture
def plain(store: MemoryStore) -> tuple[Keysentry, str]:
    return _guard(store)


@pytest.fixture
def behind_xff(store: MemoryStore) -> tuple[Keysentry, str]:
    return _guard(store, trusted_proxies=PROXIES)


@pytest.fixture
def behind_forwarded(store: MemoryStore) -> tuple[Keysentry, str]:
    return _guard(store, trusted_proxies=PROXIES, forwarded_header="Forwarded")


DENIED = (403, "IP_NOT_ALLOWED")


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_spoofed_header_without_trusted_proxies(
    plain: tuple[Keysentry, str], framework: str
) -> None:
    ks, key = plain
    spoofed = [("X-API-Key", key), ("X-Forwarded-For", "10.1.2.3"), ("Forwarded", "for=10.1.2.3")]
    assert _status(framework, ks, "203.0.113.9", spoofed) == DENIED
    # Nor from a proxy nobody said to trust.
    assert _status(framework, ks, PROXY, spoofed) == DENIED


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize(
    ("forwarded_for", "expected"),
    [
        ("10.1.2.3", (200, "")),
        ("[2001:db8::7]:443", (200, "")),
        ("10.1.2.3:5678, 192.0.2.7", (200, "")),
        ("203.0.113.9, 10.1.2.3", (200, "")),
        ("203.0.113.9", DENIED),
        ("10.1.2.3, 203.0.113.9", DENIED),
        ("10.1.2.3, 203.0.113.9, 192.0.2.7", DENIED),
    ],
)
def test_behind_a_trusted_proxy_the_forwarded_client_is_checked(
    behind_xff: tuple[Keysentry, str],
    framework: str,
    forwarded_for: str,
    expected: tuple[int, str],
) -> None:
    ks, key = behind_xff
    headers = [("X-API-Key", key), ("X-Forwarded-For", forwarded_for)]
    assert _status(framework, ks, PROXY, headers) == expected
    # The same header from anywhere else is ignored: the peer is checked.
    assert _status(framework, ks, "203.0.113.9", headers) == DENIED
    assert _status(framework, ks, "10.9.9.9", headers)[0] == 200


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_trusted_proxy_without_the_header_is_the_client(
    behind_xff: tuple[Keysentry, str], framework: str
) -> None:
    ks, key = behind_xff
    assert _status(framework, ks, PROXY, [("X-API-Key", key)]) == DENIED


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ("for=10.1.2.3", (200, "")),
        ("for=10.1.2.3;proto=https;by=192.0.2.10", (200, "")),
        ('For="[2001:db8::7]:4711"', (200, "")),
        ("for=203.0.113.9, for=10.1.2.3;proto=https", (200, "")),
        ("for=10.1.2.3, for=203.0.113.9", DENIED),
        ("for=_hidden", DENIED),
        ("for=unknown", DENIED),
    ],
)
def test_the_forwarded_header(
    behind_forwarded: tuple[Keysentry, str],
    framework: str,
    forwarded: str,
    expected: tuple[int, str],
) -> None:
    ks, key = behind_forwarded
    headers = [("X-API-Key", key), ("Forwarded", forwarded)]
    assert _status(framework, ks, PROXY, headers) == expected


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_only_the_configured_header_counts(
    behind_forwarded: tuple[Keysentry, str], framework: str
) -> None:
    ks, key = behind_forwarded
    headers = [("X-API-Key", key), ("X-Forwarded-For", "10.1.2.3")]
    assert _status(framework, ks, PROXY, headers) == DENIED


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize(
    "forwarded_for",
    ["not-an-ip", "unknown", "", ",,,", "10.1.2.3, junk", "[10.1.2.3]", "1" * 10_000],
)
def test_a_malformed_header_from_a_trusted_proxy_is_403_not_500(
    behind_xff: tuple[Keysentry, str], framework: str, forwarded_for: str
) -> None:
    ks, key = behind_xff
    headers = [("X-API-Key", key), ("X-Forwarded-For", forwarded_for)]
    assert _status(framework, ks, PROXY, headers) == DENIED


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_several_header_lines(behind_xff: tuple[Keysentry, str], framework: str) -> None:
    ks, key = behind_xff
    inside, outside = ("X-Forwarded-For", "10.1.2.3"), ("X-Forwarded-For", "203.0.113.9")
    assert _status(framework, ks, PROXY, [("X-API-Key", key), inside, outside]) == DENIED
    assert _status(framework, ks, PROXY, [("X-API-Key", key), outside, inside])[0] == 200
    trusted = ("X-Forwarded-For", "192.0.2.7")
    assert _status(framework, ks, PROXY, [("X-API-Key", key), inside, trusted])[0] == 200


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_keys_without_an_allowlist_never_read_the_header(
    behind_xff: tuple[Keysentry, str], framework: str
) -> None:
    ks, _ = behind_xff
    free = ks.issue(name="anywhere").key.reveal()
    headers = [("X-API-Key", free), ("X-Forwarded-For", "junk")]
    assert _status(framework, ks, PROXY, headers)[0] == 200


# -- raw bytes, as servers hand them over --------------------------------------------------------


@pytest.mark.parametrize(
    "value", [b"\xff\xfe", b"10.1.2.3\x00", b"\x00", b"10.1.2.3\xa0", b"\xe2\x80\x8910.1.2.3"]
)
def test_raw_bytes_asgi(behind_xff: tuple[Keysentry, str], value: bytes) -> None:
    ks, key = behind_xff
    scope = http_scope("/", [(b"x-api-key", key.encode()), (b"x-forwarded-for", value)])
    scope["client"] = (PROXY, 40000)
    app = starlette_app(ks)
    assert result(asgi_call(app, scope, [{"type": "http.request", "body": b""}])).status == 403


@pytest.mark.parametrize("value", ["\xff\xfe", "10.1.2.3\x00", "10.1.2.3\xa0", "\u2009 10.1.2.3"])
def test_raw_values_wsgi(behind_xff: tuple[Keysentry, str], value: str) -> None:
    ks, key = behind_xff
    env = environ("/", {"X-API-Key": key, "X-Forwarded-For": value}, REMOTE_ADDR=PROXY)
    assert wsgi_call(werkzeug_app(ks), env).status == 403


def test_websocket_behind_a_trusted_proxy(behind_xff: tuple[Keysentry, str]) -> None:
    ks, key = behind_xff
    client = TestClient(starlette_app(ks), client=(PROXY, 40000))
    headers = {"X-API-Key": key, "X-Forwarded-For": "10.1.2.3"}
    with client.websocket_connect("/ws", headers=headers) as ws:
        assert ws.receive_json()["name"] == "office"


def test_trusting_every_address_is_allowed_but_warned(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="keysentry"):
        TrustedProxies(["0.0.0.0/0"])
    assert "every address" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="keysentry"):
        TrustedProxies(["10.0.0.0/8"])
    assert caplog.text == ""

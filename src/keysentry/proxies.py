"""The client address behind trusted reverse proxies, from ``X-Forwarded-For`` or ``Forwarded``.

Off unless configured: without trusted proxies the client is the direct peer and forwarding
headers mean nothing, as anyone can send them. With them, the standard rightmost-untrusted
walk (uvicorn's and werkzeug ``ProxyFix``'s): a peer that is not a trusted proxy is the client;
otherwise the forwarded chain is read right to left, past the entries that are trusted proxies
themselves, and the first other entry is the client (all trusted: the leftmost). Each proxy
appends what it saw, so the entries a client wrote can only ever stand left of that.

Fail closed: an entry the walk must read that is not an IP address (malformed, ``unknown``, an
obfuscated ``_name``) makes the client undetermined (None), and an allowlist refuses None.
The work is bounded: only the last :data:`MAX_HEADER_BYTES` of the header and the last
:data:`MAX_ENTRIES` entries are considered; a walk that would need more is undetermined too.

Entries are split at every ``,`` and ``Forwarded`` parameters at every ``;``. No node contains
either, so a quoted string holding one can only break up the element it sits in: it cannot hide
an entry a proxy appended after it, which a quote-aware split would let an unterminated quote do.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Sequence

from .records import Network

__all__ = ["FORWARDING_HEADERS", "MAX_ENTRIES", "MAX_HEADER_BYTES", "TrustedProxies"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: The headers a chain can be read from (one per configuration: two sources are ambiguous).
FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded")
#: Bytes of the header(s) considered, counted from the right.
MAX_HEADER_BYTES = 4096
#: Entries examined, counted from the right.
MAX_ENTRIES = 32
_MAX_NODE = 64  # "[IPv6]:port" is at most 53 bytes; anything longer is not an address


class TrustedProxies:
    """The proxies whose forwarding header is believed, and which header that is.

    :param networks: CIDRs (``"10.0.0.0/8"``) or single addresses of the proxies; host bits
        set in a CIDR (``"10.0.0.1/8"``) are refused as a likely typo.
    :param header: ``"X-Forwarded-For"`` or ``"Forwarded"`` (RFC 7239), case-insensitive.
    """

    __slots__ = ("_forwarded", "environ_key", "header", "header_name", "networks")

    def __init__(
        self, networks: str | Iterable[str | Network], header: str = "X-Forwarded-For"
    ) -> None:
        self.networks: tuple[Network, ...] = tuple(
            _network(n) for n in ((networks,) if isinstance(networks, str) else networks)
        )
        if any(n.prefixlen == 0 for n in self.networks):
            # Right only where nothing but the proxy can reach the app (a private network).
            logging.getLogger("keysentry").warning(
                "trusted_proxies includes every address: any client's forwarding header "
                "decides its address for IP allowlists"
            )
        canonical = {h.lower(): h for h in FORWARDING_HEADERS}.get(header.lower())
        if canonical is None:
            raise ValueError(
                f"forwarding header {header!r} is not supported: use 'X-Forwarded-For' or "
                "'Forwarded' (the one your proxy sets)"
            )
        self.header = canonical
        #: The header's name as ASGI delivers it, and its WSGI environ key.
        self.header_name = canonical.lower().encode()
        self.environ_key = "HTTP_" + canonical.upper().replace("-", "_")
        self._forwarded = canonical == "Forwarded"

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __repr__(self) -> str:
        networks = ", ".join(str(n) for n in self.networks)
        return f"TrustedProxies([{networks}], header={self.header!r})"

    def trusts(self, address: Address) -> bool:
        """Whether ``address`` is one of the trusted proxies (IPv4-mapped IPv6 as IPv4)."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return any(address.ipv4_mapped in network for network in self.networks)
        return any(address in network for network in self.networks)

    def client(self, peer: str | None, values: Sequence[bytes]) -> str | None:
        """The client's address: ``peer`` (the direct peer's address) unless it is a trusted
        proxy, else read from ``values``, the forwarding header's values in the order received
        (several header lines form one list). None when it cannot be determined."""
        if peer is None:
            return None
        address = _ip(peer.encode("ascii", "replace"))
        if address is None or not self.trusts(address):
            return peer
        if not values:
            return peer  # no forwarding header: the proxy itself is the client
        return self._walk(values)

    def _walk(self, values: Sequence[bytes]) -> str | None:
        """The rightmost untrusted entry of the chain in ``values`` (all trusted: the leftmost)."""
        tail, cut = _tail(values)
        entries = tail.rsplit(b",", MAX_ENTRIES)
        if cut or len(entries) > MAX_ENTRIES:
            entries, cut = entries[1:], True  # the leftmost piece is partial or past the cap
        node = _forwarded_node if self._forwarded else _xff_node
        leftmost = None
        for entry in reversed(entries):
            address = node(entry)
            if address is None:
                return None
            if not self.trusts(address):
                return str(address)
            leftmost = address
        # All trusted: the leftmost is the client, unless entries left of it went unread.
        return None if cut or leftmost is None else str(leftmost)


def _network(value: str | Network) -> Network:
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    if not isinstance(value, str):  # ipaddress would read an int or bytes as an address
        raise ValueError(f"trusted proxy {value!r} is not a CIDR string or network")
    try:
        return ipaddress.ip_network(value)
    except ValueError as exc:
        raise ValueError(
            f"trusted proxy {value!r} is not a network: expected a CIDR such as '10.0.0.0/8' "
            f"or an address ({exc})"
        ) from None


def _tail(values: Sequence[bytes]) -> tuple[bytes, bool]:
    """The values joined by commas, cut to their last :data:`MAX_HEADER_BYTES` (about); and
    whether anything was cut. Values left of that are never touched, nor copied whole."""
    parts: list[bytes] = []
    room = MAX_HEADER_BYTES
    for value in reversed(values):
        if len(value) > room:
            parts.append(value[len(value) - max(room, 0) :])
            parts.reverse()
            return b",".join(parts), True
        parts.append(value)
        room -= len(value) + 1  # and a comma
    parts.reverse()
    return b",".join(parts), False


def _xff_node(entry: bytes) -> Address | None:
    """An ``X-Forwarded-For`` entry: ``1.2.3.4``, ``1.2.3.4:80``, ``::1``, ``[::1]:443``."""
    return _node(entry.strip(b" \t"))


def _forwarded_node(element: bytes) -> Address | None:
    """The address in an RFC 7239 element's ``for=`` parameter (exactly one, names in any case;
    other parameters ignored), a token or a quoted string."""
    value = None
    for pair in element.split(b";"):
        name, equals, raw = pair.partition(b"=")
        if name.strip(b" \t").lower() != b"for":
            continue
        if not equals or value is not None:
            return None  # "for" without a value, or twice: ambiguous
        value = raw.strip(b" \t")
    if value is None:
        return None
    if value[:1] == b'"':
        if len(value) < 2 or value[-1:] != b'"':
            return None
        value = value[1:-1]
    # No node needs an escape or a quote inside: either is garbage, not something to unescape.
    return None if b'"' in value or b"\\" in value else _node(value)


def _node(node: bytes) -> Address | None:
    """An address with an optional port: ``[IPv6]``, ``[IPv6]:port``, ``IPv4:port`` or a bare
    address. ``unknown`` and obfuscated ``_names`` are not addresses."""
    if len(node) > _MAX_NODE:
        return None
    if node[:1] == b"[":
        host, closed, rest = node[1:].partition(b"]")
        if not closed or (rest and not (rest[:1] == b":" and _is_port(rest[1:]))):
            return None
        address = _ip(host)
        return address if address is not None and address.version == 6 else None
    if node.count(b":") == 1:
        host, _, port = node.partition(b":")
        address = _ip(host) if _is_port(port) else None
        return address if address is not None and address.version == 4 else None
    return _ip(node)


def _is_port(port: bytes) -> bool:
    """Digits, or an RFC 7239 obfuscated port (``_`` then letters, digits, ``.``, ``_``, ``-``)."""
    if port.isdigit():
        return len(port) <= 5
    if len(port) < 2 or port[:1] != b"_":
        return False
    rest = port[1:].replace(b".", b"").replace(b"_", b"").replace(b"-", b"")
    return not rest or rest.isalnum()


def _ip(host: bytes) -> Address | None:
    """``host`` as an IP address; None for anything else, zone ids (``fe80::1%eth0``) included."""
    if not host or not host.isascii() or b"%" in host:
        return None
    try:
        return ipaddress.ip_address(host.decode("ascii"))
    except ValueError:
        return None

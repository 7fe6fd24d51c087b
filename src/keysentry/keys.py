"""The key format: minting, parsing, checksum and digest.

A native key reads ``<prefix>_<body>``, the body 53 ASCII letters and digits::

    sk_live_ 7fK2pQ9xLm3a  W0…(33)…Zq  1c9e44a0
             key id (12)   secret (33) CRC32 of everything before it, 8 hex digits

The key id is public: it names the record in the store and appears in logs and listings
(``sk_live_7fK2pQ9xLm3a...``). The secret carries 33 base62 digits from :mod:`secrets`, 196 bits.
The checksum catches typos and random garbage before any store or cache is touched; it is not a
security measure (anyone can compute it), the digest comparison is.

The store never sees a key, only its digest: HMAC-SHA256 under a server-side secret when one is
configured (a stolen table then cannot be checked offline), plain SHA-256 otherwise. The digest
covers the whole key, so keys imported from another system (any opaque string) are digested and
verified the same way, looked up by digest instead of by id.

Parsing works on ``bytes`` because that is what ASGI hands us and what ``crc32`` and ``hmac``
take: a valid key is never decoded, copied into ``str`` or matched with a regex on the hot path.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from zlib import crc32

from .errors import Denial, InvalidKeyFormat
from .records import DIGEST_MODES

__all__ = [
    "BODY_LENGTH",
    "DEFAULT_PREFIX",
    "KEY_ID_LENGTH",
    "Digester",
    "ImportedFormat",
    "KeyFormat",
    "SecretKey",
    "display_prefix",
    "mint",
    "validate_prefix",
]

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KEY_ID_LENGTH = 12
SECRET_LENGTH = 33  # 33 * log2(62) = 196.5 bits
CHECKSUM_LENGTH = 8
BODY_LENGTH = KEY_ID_LENGTH + SECRET_LENGTH + CHECKSUM_LENGTH
DEFAULT_PREFIX = "sk_live"
MAX_PREFIX_LENGTH = 32
#: Longest credential looked at; anything longer is refused before it is hashed.
DEFAULT_MAX_LENGTH = 256

# The refusals the parser can produce, built once: garbage keys allocate nothing.
NOT_A_KEY = Denial.of(
    "INVALID_API_KEY", "The API key is not in a recognised format (wrong length or characters)."
)
BAD_CHECKSUM = Denial.of(
    "INVALID_API_KEY",
    "The API key's checksum does not match: it was mistyped, truncated or altered.",
)
UNKNOWN_PREFIX = Denial.of(
    "INVALID_API_KEY", "The API key's prefix is not one this service issues."
)


def validate_prefix(prefix: str) -> str:
    """``prefix`` if it can head a key: lowercase letters and digits in ``_``-joined parts."""
    parts = prefix.split("_")
    if (
        not prefix
        or len(prefix) > MAX_PREFIX_LENGTH
        or not all(p and p.isascii() and p.isalnum() and p == p.lower() for p in parts)
    ):
        raise InvalidKeyFormat(
            f"key prefix {prefix!r} must be 1-{MAX_PREFIX_LENGTH} lowercase letters and digits, "
            "in parts joined by single underscores (for example 'sk_live')"
        )
    return prefix


def _checksum(head: bytes) -> bytes:
    return b"%08x" % crc32(head)


def _random_base62(n: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(n))


def display_prefix(prefix: str, key_id: str) -> str:
    """What listings and logs show of a native key: its prefix and public id, never the secret."""
    return f"{prefix}_{key_id}"


class SecretKey:
    """A full API key. Its ``repr`` and ``str`` show only the public part.

    Call :meth:`reveal` to get the key itself, once, to hand it to its owner.
    """

    __slots__ = ("_public", "_value")

    def __init__(self, value: str, public: str) -> None:
        self._value = value
        self._public = public

    def reveal(self) -> str:
        return self._value

    @property
    def public(self) -> str:
        """The part that may be shown: prefix and key id (or an imported key's first letters)."""
        return self._public

    def __repr__(self) -> str:
        return f"SecretKey('{self._public}...')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretKey):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a SecretKey is not pickled: store its digest, not the key")


def mint(prefix: str = DEFAULT_PREFIX) -> tuple[str, SecretKey]:
    """A fresh native key: its public id and the full key."""
    validate_prefix(prefix)
    key_id = _random_base62(KEY_ID_LENGTH)
    head = f"{prefix}_{key_id}{_random_base62(SECRET_LENGTH)}"
    full = head + _checksum(head.encode()).decode()
    return key_id, SecretKey(full, display_prefix(prefix, key_id))


@dataclass(frozen=True, slots=True)
class ImportedFormat:
    """Keys issued by another system, verified by digest lookup (they carry no id).

    ``ImportedFormat("grx_sk_", length=48, alphabet="0123456789abcdef")`` accepts
    ``grx_sk_`` followed by exactly 48 lowercase hex digits. ``length`` counts what follows
    the prefix; None accepts 16 to 200 characters.
    """

    prefix: str
    length: int | None = None
    alphabet: str = ALPHABET + "-_"

    def __post_init__(self) -> None:
        if not self.prefix or not self.prefix.isascii() or not self.prefix.isprintable():
            raise InvalidKeyFormat("an imported key prefix must be printable ASCII")
        if not self.alphabet.isascii() or any(c.isspace() or c == "," for c in self.alphabet):
            raise InvalidKeyFormat("an imported key alphabet must be ASCII without spaces or ','")

    def matches(self, token: bytes) -> bool:
        prefix = self.prefix.encode()
        if not token.startswith(prefix):
            return False
        n = len(token) - len(prefix)
        if self.length is None:
            if not 16 <= n <= 200:
                return False
        elif n != self.length:
            return False
        return not token[len(prefix) :].translate(None, self.alphabet.encode())

    def public(self, key: str) -> str:
        """What listings show of an imported key: its prefix and the next four characters."""
        return key[: len(self.prefix) + 4]


class KeyFormat:
    """Decides, from the presented bytes alone, whether they can be a key, and which.

    :meth:`identify` answers with the lookup key (the 12-byte key id of a native key, or the
    32-byte digest of an imported one) or with the :class:`Denial` that names what is wrong.
    """

    __slots__ = ("_imported", "_max_length", "_prefixes")

    def __init__(
        self,
        prefixes: Iterable[str] | None = None,
        imported: Iterable[ImportedFormat] = (),
        max_length: int = DEFAULT_MAX_LENGTH,
    ) -> None:
        self._prefixes = (
            None if prefixes is None else frozenset(validate_prefix(p).encode() for p in prefixes)
        )
        self._imported = tuple(imported)
        self._max_length = max_length

    @property
    def max_length(self) -> int:
        return self._max_length

    def identify(self, token: bytes) -> bytes | Denial | None:
        """Key id for a native key, None for an imported key (look up by digest), or a denial."""
        if self._imported:
            for fmt in self._imported:
                if fmt.matches(token):
                    return None
        # The body has a fixed length, so the separator has a fixed place: no search.
        cut = len(token) - BODY_LENGTH - 1
        if cut < 1 or token[cut] != 95:  # b"_"
            return NOT_A_KEY
        body = token[cut + 1 :]
        if not body.isalnum():
            return NOT_A_KEY
        if self._prefixes is not None and token[:cut] not in self._prefixes:
            return UNKNOWN_PREFIX
        # Inline _checksum: a function call is a tenth of this method's cost.
        if not token.endswith(b"%08x" % crc32(token[:-CHECKSUM_LENGTH])):
            return BAD_CHECKSUM
        return body[:KEY_ID_LENGTH]


def shown_id(key_id: str) -> str:
    """A key id as messages may show it: no longer than an id, so a whole key passed where its
    id belongs never reaches an exception message or a log line."""
    return key_id[:KEY_ID_LENGTH] + ("..." if len(key_id) > KEY_ID_LENGTH else "")


_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


class Digester:
    """The keyed digest of a key: HMAC-SHA256 with a server secret, else SHA-256.

    HMAC (RFC 2104) is ``H((K ^ opad) || H((K ^ ipad) || m))``. The two SHA-256 states after
    absorbing the padded secret depend on the secret alone, so they are computed once here and
    copied per call: the same bytes as ``hmac.digest``, in 40% of its time, which makes it the
    cheapest correct HMAC that the standard library or ``cryptography`` offers for a 60-byte
    key (benchmarks/digest.py). Without a secret the digest is one SHA-256.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, secret: str | bytes | None = None) -> None:
        if isinstance(secret, str):
            secret = secret.encode()
        self._inner: Any = None
        self._outer: Any = None
        if secret is None:
            return
        if len(secret) < 16:
            raise ValueError("the digest secret must be at least 16 bytes")
        block = hashlib.sha256().block_size
        padded = (hashlib.sha256(secret).digest() if len(secret) > block else secret).ljust(
            block, b"\0"
        )
        self._inner = hashlib.sha256(padded.translate(_IPAD))
        self._outer = hashlib.sha256(padded.translate(_OPAD))

    @property
    def keyed(self) -> bool:
        return self._inner is not None

    @property
    def mode(self) -> str:
        """``"hmac-sha256"`` with a secret, ``"sha256"`` without: what records carry as
        ``digest_mode`` (never the secret)."""
        return DIGEST_MODES[0] if self._inner is not None else DIGEST_MODES[1]

    def __call__(self, key: bytes) -> bytes:
        if self._inner is None:
            return hashlib.sha256(key).digest()
        inner = self._inner.copy()
        inner.update(key)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"Digester({'HMAC-SHA256' if self.keyed else 'SHA-256'})"

"""Finding the one credential a request presents (SPEC §2), from raw header bytes.

Pure functions of the values the drivers collect: no I/O, no regex, nothing allocated for a
well-formed single credential. Every malformed case answers a :class:`Denial` whose message
names the cause, because "401" alone is the most common support ticket an API vendor gets:

==========================================  ====  ===========================================
what the client sent                        code  message says
==========================================  ====  ===========================================
nothing                                     401   no API key was sent
``Authorization: sk_live_...``              401   the ``Bearer`` prefix is missing
``Authorization: Basic ...``                401   only the Bearer scheme is accepted
``Authorization: Bearer`` / empty value     401   the credential is empty
``Bearer  key``, ``Bearer a b``             401   exactly one token after ``Bearer``
leading or trailing whitespace              401   whitespace around the key
``X-API-Key: Bearer sk_...``                401   X-API-Key takes the bare key
value longer than the key length limit      401   too long (refused before hashing)
two different credentials                   400   send one credential, not two
==========================================  ====  ===========================================

The same key sent twice (in both headers, or a header repeated) is accepted as one.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qsl

from .errors import Denial

__all__ = ["CredentialReader"]

_WHITESPACE = frozenset(b" \t\r\n\x0b\x0c")

MISSING = Denial.of("MISSING_API_KEY", "No API key was sent: use 'Authorization: Bearer <key>'.")
NO_SCHEME = Denial.of(
    "INVALID_API_KEY",
    "The Authorization header is missing the 'Bearer ' prefix: send 'Authorization: Bearer <key>'.",
)
OTHER_SCHEME = Denial.of(
    "INVALID_API_KEY",
    "The Authorization header uses a scheme other than Bearer: send 'Authorization: Bearer <key>'.",
)
EMPTY = Denial.of("INVALID_API_KEY", "The API key is empty.")
NOT_ONE_TOKEN = Denial.of(
    "INVALID_API_KEY",
    "The Bearer credential must be exactly one token, after a single space: 'Bearer <key>'.",
)
WHITESPACE = Denial.of(
    "INVALID_API_KEY",
    "The API key has leading or trailing whitespace (a copy-paste artefact?): send the key alone.",
)
TWO_CREDENTIALS = Denial.of(
    "INVALID_REQUEST",
    "The request carries two different credentials: send exactly one API key.",
)


class CredentialReader:
    """Reads the Authorization header, the API-key header and, when enabled, a query parameter."""

    __slots__ = ("_bearer_in_api_key", "_max_length", "_too_long", "query_param")

    def __init__(self, *, api_key_header: str, query_param: str | None, max_length: int) -> None:
        self.query_param = query_param
        self._max_length = max_length
        self._too_long = Denial.of(
            "INVALID_API_KEY", f"The API key is too long (longer than {max_length} characters)."
        )
        self._bearer_in_api_key = Denial.of(
            "INVALID_API_KEY",
            f"The {api_key_header} header takes the bare key, without 'Bearer ': send "
            f"'{api_key_header}: <key>'.",
        )

    def read(
        self, authorization: bytes | None, api_key: bytes | None, query: bytes | None = None
    ) -> bytes | Denial:
        """The token, given at most one value from each place (the common case)."""
        if authorization is not None:
            token = self.bearer(authorization)
            if api_key is None and query is None:
                return token
            return self._one(token, api_key, query)
        if api_key is not None:
            token = self.bare(api_key)
            return token if query is None else self._one(token, None, query)
        if query is not None:
            return self.bare(query)
        return MISSING

    def read_all(
        self,
        authorization: Sequence[bytes],
        api_key: Sequence[bytes],
        query: Sequence[bytes] = (),
    ) -> bytes | Denial:
        """The token, given every value from each place (repeated headers or parameters)."""
        tokens: list[bytes] = []
        places = ((authorization, self.bearer), (api_key, self.bare), (query, self.bare))
        for values, parse in places:
            for value in values:
                token = parse(value)
                if isinstance(token, Denial):
                    return token
                tokens.append(token)
        if not tokens:
            return MISSING
        if any(t != tokens[0] for t in tokens):
            return TWO_CREDENTIALS
        return tokens[0]

    def _one(
        self, first: bytes | Denial, api_key: bytes | None, query: bytes | None
    ) -> bytes | Denial:
        if isinstance(first, Denial):
            return first
        for value in (api_key, query):
            if value is not None:
                token = self.bare(value)
                if isinstance(token, Denial):
                    return token
                if token != first:
                    return TWO_CREDENTIALS
        return first

    def bearer(self, value: bytes) -> bytes | Denial:
        """The token of an ``Authorization`` value (RFC 6750 §2.1, scheme case-insensitive)."""
        if len(value) > self._max_length + 7:
            return self._too_long
        if not value:
            return EMPTY
        if value[0] in _WHITESPACE or value[-1] in _WHITESPACE:
            return WHITESPACE
        if value.startswith(b"Bearer "):  # as clients send it: no partition, one slice
            token = value[7:]
        else:
            scheme, space, token = value.partition(b" ")
            if scheme.lower() != b"bearer":
                return OTHER_SCHEME if space else NO_SCHEME
            if not space:
                return EMPTY
        # Empty, or whitespace inside (the value's ends were checked above): split() is the
        # fastest test for all of ASCII whitespace at once.
        if len(token.split()) != 1 or token[0] in _WHITESPACE:
            return NOT_ONE_TOKEN
        return token

    def bare(self, value: bytes) -> bytes | Denial:
        """The token of an API-key header or query value: the key and nothing else."""
        if len(value) > self._max_length:
            return self._too_long
        if not value:
            return EMPTY
        if value[0] in _WHITESPACE or value[-1] in _WHITESPACE:
            return WHITESPACE
        if len(value.split()) != 1:
            return self._bearer_in_api_key if value[:7].lower() == b"bearer " else NOT_ONE_TOKEN
        return value

    def query_values(self, query_string: bytes) -> list[bytes]:
        """Values of the configured query parameter (percent-decoded), when it is enabled."""
        if self.query_param is None or not query_string:
            return []
        name = self.query_param
        return [
            v.encode("latin-1", "replace")
            for k, v in parse_qsl(
                query_string.decode("latin-1"), keep_blank_values=True, encoding="latin-1"
            )
            if k == name
        ]

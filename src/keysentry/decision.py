"""The decision on a presented key, given what the store (or the cache) knows of it.

Pure and synchronous: the drivers fetch, this decides. Order matters for what a client can
learn: possession of the key is proven first (constant-time digest comparison, made the same
way whether the id is known or not, so timing does not reveal which ids exist), and only then
does the answer say anything about the key's state (expired, disabled).

A :class:`Verdict` is built once per record, the first time a presented key matches it, and
cached with it in an :class:`Entry`: the identity handed to the app (with the scopes the
guard's scope implications grant it) and the denials that depend only on the record are not
rebuilt per request. An id the store does not know is cached as an
entry of the same shape (a *phantom*, with no record), so a refusal takes the same steps whether
the id exists or not.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from ._scopes import Implications
from .accounts import AccountRecord, owner_hash
from .errors import Denial
from .ratelimit.gcra import Policy, policies_of
from .ratelimit.headers import policy_field
from .records import KeyIdentity, KeyRecord

__all__ = [
    "ACCOUNT_DISABLED",
    "NO_CREDITS",
    "Charge",
    "Entry",
    "UNKNOWN_KEY",
    "Lookup",
    "Verdict",
    "client_allowed",
    "standing",
]

UNKNOWN_KEY = Denial.of("INVALID_API_KEY", "The API key is not valid.")
DISABLED = Denial.of("API_KEY_DISABLED", "The API key is disabled.")
IP_NOT_ALLOWED = Denial.of(
    "IP_NOT_ALLOWED", "This API key may not be used from this client address."
)
NO_CREDITS = Denial.of(
    "INSUFFICIENT_CREDITS", "The API key has no credits left: top it up or use another key."
)
ACCOUNT_DISABLED = Denial.of("ACCOUNT_DISABLED", "The account of this API key is disabled.")


def account_out_of_credits(owner: str) -> Denial:
    """402 for a key whose account's shared balance is spent: the message names the account
    (the client proved it holds one of its keys)."""
    return Denial.of(
        "INSUFFICIENT_CREDITS",
        f"The account {owner!r} has insufficient credits: top it up to go on.",
        {"account": owner},
    )


class Charge(NamedTuple):
    """What a request was charged: ``amount`` credits of ``account``, a key id, or with
    ``shared`` an account's owner (the balance all its keys spend). The middleware leaves it
    for the route helpers, which give it back when a route refuses the request."""

    account: str
    amount: int = 1
    shared: bool = False


def account_rate_key(owner: str) -> str:
    """The rate-limit state an account's keys share: a fixed-shape name for any owner."""
    return "account-" + owner_hash(owner)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A record prepared for the hot path."""

    record: KeyRecord
    identity: KeyIdentity
    expires: float  # POSIX seconds; inf when the key does not expire
    expired: Denial | None
    policies: tuple[Policy, ...] = ()  # rate limits in force: the record's or the default
    policy_field: str = ""  # RateLimit-Policy value for those
    policy_field_bytes: bytes = b""
    #: Whose rate-limit state a request is charged to: one for every key of a rotation line
    #: (its first key's id), so a rotation's grace period does not double the limit.
    rate_key: str = ""
    #: Nothing for standing() to check: not revoked, not disabled, never expires.
    in_good_standing: bool = False
    #: The key is bound to client networks (client_allowed() must run).
    restricted: bool = False
    #: Each allowed request costs a credit (the key has a balance).
    charged: bool = False
    #: Any of the three above: the drivers' one test for the checks after authentication.
    admit: bool = False
    #: What a request at the default cost is charged; None when unmetered.
    charge: Charge | None = None
    #: The refusal when the balance is spent (the key's, or its account's).
    unpaid: Denial = NO_CREDITS
    #: The key's account is disabled (``standing`` refuses it).
    account_disabled: bool = False
    #: Limits the key's account shares among its keys, and the state they are counted in.
    account_policies: tuple[Policy, ...] = ()
    account_rate_key: str = ""
    account_policy_field: str = ""

    @classmethod
    def of(
        cls,
        record: KeyRecord,
        default_policies: tuple[Policy, ...] = (),
        implications: Implications | None = None,
        account: AccountRecord | None = None,
    ) -> Verdict:
        expired = None
        expires = math.inf
        if record.expires_at is not None:
            expires = record.expires_at.timestamp()
            expired = Denial.of(
                "EXPIRED_API_KEY",
                "The API key has expired: ask its owner for a new one.",
                {"expired_at": record.expires_at.isoformat()},
            )
        policies = default_policies if record.rate_limit is None else policies_of(record.rate_limit)
        described = policy_field(policies)
        restricted = bool(record.allowed_networks)
        charge: Charge | None = None
        unpaid = NO_CREDITS
        shared: tuple[Policy, ...] = ()
        shared_key = shared_field = ""
        disabled = False
        if account is not None and record.owner == account.owner:
            disabled = account.disabled
            if account.credits is not None:
                charge = Charge(account.owner, 1, True)
                unpaid = account_out_of_credits(account.owner)
            if account.rate_limit:
                shared = policies_of(account.rate_limit)
                shared_key = account_rate_key(account.owner)
                shared_field = policy_field(shared)
        if shared and not policies:
            described = shared_field  # the account's limits are the ones on the response
        if charge is None and (record.credits is not None or record.credits_from is not None):
            charge = Charge(record.credits_from or record.id)
        charged = charge is not None
        if implications:
            # Once per verdict (a cache fill), not per request: the routes read the result.
            granted, every = implications.effective(record.scopes)
            identity = record.identity(granted - record.scopes, every)
        else:
            identity = record.identity()
        return cls(
            record,
            identity,
            expires,
            expired,
            policies,
            described,
            described.encode(),
            record.line_id,
            record.revoked_at is None and not record.disabled and expired is None and not disabled,
            restricted,
            charged,
            restricted or charged or bool(policies) or bool(shared),
            charge,
            unpaid,
            disabled,
            shared,
            shared_key,
            shared_field,
        )


class Entry:
    """What the cache holds for one key id (or one imported key's digest).

    ``digest`` is what a presented key must match; ``tag`` the process-local MAC of the key
    that last matched (a random one until then, so it matches nothing); ``verdict`` is built
    on the first match; ``record`` is None for a phantom (an id the store does not know, which
    holds the digest and tag of the key that was presented for it, and refuses every key).
    A plain slotted class: built on every cache miss, the same way for both kinds.
    """

    __slots__ = ("account", "digest", "record", "tag", "verdict")

    def __init__(
        self,
        digest: bytes,
        tag: bytes,
        verdict: Verdict | None,
        record: KeyRecord | None,
        account: AccountRecord | None = None,
    ) -> None:
        self.digest = digest
        self.tag = tag
        self.verdict = verdict
        self.record = record
        #: The record's account, when its owner has one (read with the record).
        self.account = account

    def __repr__(self) -> str:
        if self.record is None:
            return "Entry(unknown id)"
        return f"Entry({self.record.prefix!r}, {'verified' if self.verdict else 'unverified'})"


@dataclass(frozen=True, slots=True)
class Lookup:
    """A well-formed key the cache knows nothing about: what to ask the store for."""

    key_id: bytes | None  # a native key's id; None for an imported key (found by digest)
    digest: bytes = field(repr=False)
    tag: bytes | None = field(repr=False)  # the presented native key's process-local MAC
    generation: int  # the cache's, when the lookup began


def standing(verdict: Verdict, clock: Callable[[], float]) -> Verdict | Denial:
    """The key's state, once possession of it is proven: revoked, expired, disabled or good."""
    record = verdict.record
    if record.revoked_at is not None:
        return UNKNOWN_KEY
    if verdict.expired is not None and clock() >= verdict.expires:
        return verdict.expired
    if record.disabled:
        return DISABLED
    if verdict.account_disabled:
        return ACCOUNT_DISABLED
    return verdict


def client_allowed(verdict: Verdict, client: str | None) -> Denial | None:
    """None if the key may be used from ``client`` (the peer address), else the refusal.

    Called only for keys with an allowlist. An address that is missing or not an IP (a Unix
    socket, a test client's placeholder) is refused: an allowlist fails closed.
    """
    if client is None:
        return IP_NOT_ALLOWED
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return IP_NOT_ALLOWED
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for network in verdict.record.allowed_networks:
        if address in network:
            return None
    return IP_NOT_ALLOWED

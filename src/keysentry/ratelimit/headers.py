"""RateLimit header fields (draft-ietf-httpapi-ratelimit-headers-10, structured fields).

    RateLimit-Policy: "per-minute";q=60;w=60
    RateLimit: "per-minute";r=59;t=1

``q`` and ``w`` are the policy's limit and window; ``r`` what the client may still send at once;
``t`` the seconds until ``r`` next grows (0 when the burst is full). On a refusal ``r`` is 0
for the refusing policy and ``Retry-After`` is never earlier than its ``t``. The older
``X-RateLimit-Limit/Remaining/Reset`` trio, for clients that read only those, describes the
policy with the least room.
"""

from __future__ import annotations

from collections.abc import Sequence

from .gcra import Policy, RateDecision

__all__ = ["encoded_rate_headers", "legacy_headers", "policy_field", "rate_headers"]


def policy_field(policies: tuple[Policy, ...]) -> str:
    """The ``RateLimit-Policy`` value: fixed per policy set, so built once per key record."""
    return ", ".join(f'"{p.name}";q={p.limit};w={p.window}' for p in policies)


def rate_field(decision: RateDecision) -> str:
    if len(decision.policies) == 1:
        return f'"{decision.policies[0].name}";r={decision.remaining[0]};t={decision.reset[0]}'
    return ", ".join(
        f'"{p.name}";r={r};t={t}'
        for p, r, t in zip(decision.policies, decision.remaining, decision.reset, strict=True)
    )


def legacy_headers(decision: RateDecision) -> list[tuple[str, str]]:
    i = min(range(len(decision.policies)), key=decision.remaining.__getitem__)
    return [
        ("X-RateLimit-Limit", str(decision.policies[i].limit)),
        ("X-RateLimit-Remaining", str(decision.remaining[i])),
        ("X-RateLimit-Reset", str(decision.reset[i])),
    ]


#: How many ``(r, t)`` pairs a policy remembers the fields of: a limit of 100 a minute has
#: under 200 that occur; past the bound the fields are formatted per request.
MEMO_MOST = 1024


def rate_headers(decision: RateDecision, policy: str, legacy: bool) -> Sequence[tuple[str, str]]:
    """Headers for a response to a request this decision was about (allowed or refused)."""
    if legacy or not decision.allowed or len(decision.policies) != 1:
        return _rate_headers(decision, policy, legacy)
    # One policy, allowed: the fields depend on the policy and two small numbers only.
    p = decision.policies[0]
    r = decision.remaining[0]
    t = decision.reset[0]
    memo = p.plain
    key = r << 32 | t
    fields = memo.get(key)
    if fields is None:
        fields = (("RateLimit-Policy", policy), ("RateLimit", f'"{p.name}";r={r};t={t}'))
        if len(memo) < MEMO_MOST:
            memo[key] = fields
    return fields


def _rate_headers(decision: RateDecision, policy: str, legacy: bool) -> list[tuple[str, str]]:
    headers = [("RateLimit-Policy", policy), ("RateLimit", rate_field(decision))]
    if legacy:
        headers += legacy_headers(decision)
    if not decision.allowed:
        headers.append(("Retry-After", str(decision.retry_after)))
    return headers


def encoded_rate_headers(
    decision: RateDecision, policy: bytes, legacy: bool
) -> Sequence[tuple[bytes, bytes]]:
    """:func:`rate_headers` for an allowed request, as ASGI wants them (lowercase bytes)."""
    policies = decision.policies
    if len(policies) != 1 or legacy:
        field = rate_field(decision).encode()
        headers = [(b"ratelimit-policy", policy), (b"ratelimit", field)]
        if legacy:
            headers += [(k.lower().encode(), v.encode()) for k, v in legacy_headers(decision)]
        return headers
    p = policies[0]
    r = decision.remaining[0]
    t = decision.reset[0]
    memo = p.encoded
    key = r << 32 | t  # t counts whole seconds of a tolerance below 2**51 µs: under 2**32
    fields = memo.get(key)
    if fields is None:
        fields = ((b"ratelimit-policy", policy), (b"ratelimit", b"%s%d;t=%d" % (p.head, r, t)))
        if len(memo) < MEMO_MOST:
            memo[key] = fields
    return fields

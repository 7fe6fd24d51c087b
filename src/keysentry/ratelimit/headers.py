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


def rate_headers(decision: RateDecision, policy: str, legacy: bool) -> list[tuple[str, str]]:
    """Headers for a response to a request this decision was about (allowed or refused)."""
    headers = [("RateLimit-Policy", policy), ("RateLimit", rate_field(decision))]
    if legacy:
        headers += legacy_headers(decision)
    if not decision.allowed:
        headers.append(("Retry-After", str(decision.retry_after)))
    return headers


def encoded_rate_headers(
    decision: RateDecision, policy: bytes, legacy: bool
) -> list[tuple[bytes, bytes]]:
    """:func:`rate_headers` for an allowed request, as ASGI wants them (lowercase bytes)."""
    policies = decision.policies
    if len(policies) == 1:
        field = b"%s%d;t=%d" % (policies[0].head, decision.remaining[0], decision.reset[0])
    else:
        field = rate_field(decision).encode()
    headers = [(b"ratelimit-policy", policy), (b"ratelimit", field)]
    if legacy:
        headers += [(k.lower().encode(), v.encode()) for k, v in legacy_headers(decision)]
    return headers

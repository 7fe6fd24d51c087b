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

__all__ = ["legacy_headers", "policy_field", "rate_headers"]


def policy_field(policies: tuple[Policy, ...]) -> str:
    """The ``RateLimit-Policy`` value: fixed per policy set, so built once per key record."""
    return ", ".join(f'"{p.name}";q={p.limit};w={p.window}' for p in policies)


def rate_field(decision: RateDecision) -> str:
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

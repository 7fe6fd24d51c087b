"""The limiter contract: what the core needs of a rate-limit backend."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .gcra import Policy, RateDecision

__all__ = ["Limiter"]


@runtime_checkable
class Limiter(Protocol):
    """Decides one request for one key against that key's policies, all-or-nothing.

    ``hit`` serves WSGI, ``ahit`` ASGI. Raise :class:`~keysentry.errors.StoreUnavailable`
    when the backend cannot answer; the core then fails open or closed as configured.
    """

    def hit(self, key: str, policies: tuple[Policy, ...], cost: int = 1) -> RateDecision: ...

    async def ahit(self, key: str, policies: tuple[Policy, ...], cost: int = 1) -> RateDecision: ...

    def reset(self, key: str) -> None: ...

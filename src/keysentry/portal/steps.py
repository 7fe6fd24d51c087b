"""How the portal's logic waits, written once for both drivers: a generator that yields what it
needs and is sent the answer.

* :class:`Call`: a lifecycle method of the guard (``get``, ``issue``, ``rotate``, ...). The WSGI
  driver calls ``ks.get(...)``, the ASGI driver awaits its twin ``ks.aget(...)``.
* :data:`SIGNED_IN`: the host's ``owner_of(request)``, called by each driver with its own
  framework's request.

An exception a call raises is thrown into the generator, at the ``yield`` that asked. A
:class:`Refusal` raised by the logic ends the request with its denial.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import Denial

__all__ = ["SIGNED_IN", "Call", "Refusal", "SignedIn", "Step"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """A call of the guard's lifecycle method ``method`` (its ``a*`` twin on ASGI)."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


class SignedIn:
    """Ask the host who is signed in: its ``owner_of(request)``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SIGNED_IN"


SIGNED_IN = SignedIn()

#: The portal's logic: yields what it waits for, returns its result.
Step = Generator[Call | SignedIn, Any, T]


class Refusal(Exception):
    """The request is refused with ``denial`` (rendered as the guard renders refusals)."""

    def __init__(self, denial: Denial) -> None:
        super().__init__(denial.code)
        self.denial = denial

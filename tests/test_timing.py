"""Timing does not tell which key ids exist: a well-formed key with a wrong secret takes the
same steps whether its id is known or not.

Known and unknown ids are held to the same *calls*, step for step: every Python function and
every builtin keysentry runs for one class, it runs for the other, in the same order, cold
(first sight: one store lookup each) and warm (both remembered, for as long as each other).
That is what makes their time the same, and unlike a clock it says so on a busy machine too.
How close the times come is measured, not asserted: ``benchmarks/timing.py`` runs Welch's t
over 20 000 interleaved calls per class (figures in the README, "Guessing keys").

The one step allowed to differ is the digest-mismatch review (mismatches.py): by design it
falls on whichever refusal comes next after its interval, of either class, so its calls are
left out of the comparison.
"""

from __future__ import annotations

import gc
import secrets
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any
from zlib import crc32

import pytest

from keysentry import Keysentry
from keysentry.cache import MISS
from keysentry.decision import Denial
from keysentry.keys import ALPHABET, KEY_ID_LENGTH, SECRET_LENGTH
from keysentry.stores.memory import MemoryStore

SECRET = "timing-test-secret-0123456789"
REVIEW = "DigestMismatches._review"


def _token(key_id: str) -> bytes:
    """A well-formed key (valid checksum) for ``key_id`` with a random secret."""
    secret = "".join(secrets.choice(ALPHABET) for _ in range(SECRET_LENGTH))
    head = f"sk_live_{key_id}{secret}".encode()
    return head + b"%08x" % crc32(head)


def _random_id() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(KEY_ID_LENGTH))


def _guard() -> Keysentry:
    return Keysentry(MemoryStore(), secret=SECRET, usage_interval=None)


def steps(call: Callable[[], object]) -> list[str]:
    """Every call ``call()`` makes, Python functions and builtins, in order, with the
    mismatch review's own calls left out."""
    seen: list[str] = []
    depth = 0  # > 0 while inside the review

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal depth
        if event == "call":
            name = frame.f_code.co_qualname
        elif event == "c_call":
            module = getattr(arg, "__module__", None)
            name = arg.__qualname__ if module is None else f"{module}.{arg.__qualname__}"
        elif event == "return" and frame.f_code.co_qualname == REVIEW:
            depth -= 1
            return
        else:
            return
        if name == REVIEW:
            depth += 1
        if depth == 0:
            seen.append(name)

    gc.disable()
    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
        gc.enable()
    return seen[:-1]  # the last is setprofile(None) itself


def _refused(ks: Keysentry, token: bytes) -> Callable[[], object]:
    def call() -> None:
        assert isinstance(ks.authenticate(token), Denial)

    return call


@pytest.mark.parametrize("first", ["known", "unknown"])
def test_cold_known_id_wrong_secret_takes_the_steps_of_an_unknown_id(first: str) -> None:
    ks = _guard()
    known_id = ks.issue(name="k").record.id
    unknown_id = _random_id()
    known, unknown = _token(known_id), _token(unknown_id)
    # Each sees its id for the first time: one store lookup each.
    order = [known, unknown] if first == "known" else [unknown, known]
    traced = {token: steps(_refused(ks, token)) for token in order}
    assert traced[known] == traced[unknown]
    assert "MemoryStore.get" in traced[known]
    # ...and both ids are now remembered, each for as long.
    assert ks.cache.get(known_id.encode()) is not MISS
    assert ks.cache.get(unknown_id.encode()) is not MISS
    assert ks.cache.negative_ttl == ks.cache.ttl


def test_warm_known_id_wrong_secret_takes_the_steps_of_an_unknown_id() -> None:
    ks = _guard()
    # A known id in use: its real key has been verified, so it is cached with its tag.
    issued = ks.issue(name="real")
    assert not isinstance(ks.authenticate(issued.key.reveal().encode()), Denial)
    # An unknown id tried once: remembered as unknown.
    unknown_id = _random_id()
    assert isinstance(ks.authenticate(_token(unknown_id)), Denial)
    known = _token(issued.record.id)
    unknown = _token(unknown_id)
    traced_known = steps(_refused(ks, known))
    traced_unknown = steps(_refused(ks, unknown))
    assert traced_known == traced_unknown
    assert not any(step.endswith("Store.get") for step in traced_known)  # from the cache


def test_the_trace_tells_different_steps_apart() -> None:
    """The comparison can fail: a known id's right key takes other steps than a wrong one."""
    ks = _guard()
    issued = ks.issue(name="real")
    right = issued.key.reveal().encode()
    assert steps(lambda: ks.authenticate(right)) != steps(_refused(ks, _token(issued.record.id)))

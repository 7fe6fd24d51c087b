"""Cost of digesting one API key (~61 bytes), the per-request crypto on keysentry's hot path.

Compares the standard library's one-shot and object APIs with the ``cryptography`` package's,
for HMAC-SHA256 (keysentry with a secret) and plain SHA-256 (without one), two ways of
precomputing the secret's part of the HMAC, the 32-byte constant-time comparison and keysentry's
own format check. Median over repeats of ns per call, timed with ``timeit``; the cases take turns
so that a noisy moment does not land on one of them.

    uv run python benchmarks/digest.py [--number 20000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import platform
import ssl
import statistics
import timeit
from importlib.metadata import version

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as chmac

from keysentry import Keysentry, MemoryStore

SECRET = b"benchmark-secret-0123456789abcdef"


def crypto_hmac(key: bytes) -> bytes:
    h = chmac.HMAC(SECRET, hashes.SHA256())
    h.update(key)
    return h.finalize()


def crypto_sha256(key: bytes) -> bytes:
    h = hashes.Hash(hashes.SHA256())
    h.update(key)
    return h.finalize()


# Two ways to keep the secret's share of the HMAC out of the per-call cost.
HMAC_STATE = hmac.new(SECRET, digestmod=hashlib.sha256)
_BLOCK = SECRET.ljust(64, b"\0")  # SHA-256 block size; the secret is shorter than a block
INNER = hashlib.sha256(bytes(b ^ 0x36 for b in _BLOCK))
OUTER = hashlib.sha256(bytes(b ^ 0x5C for b in _BLOCK))


def hmac_copy(key: bytes) -> bytes:
    h = HMAC_STATE.copy()
    h.update(key)
    return h.digest()


def pads_copy(key: bytes) -> bytes:
    """RFC 2104 HMAC from SHA-256 states already fed the padded secret."""
    inner = INNER.copy()
    inner.update(key)
    outer = OUTER.copy()
    outer.update(inner.digest())
    return outer.digest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=20000, help="calls per timing (20000)")
    parser.add_argument("--repeat", type=int, default=15, help="timings per case (15)")
    args = parser.parse_args()

    ks = Keysentry(MemoryStore(), secret=SECRET)
    key = ks.new_key(name="bench").key.reveal().encode()
    a, b = hmac.digest(SECRET, key, "sha256"), hashlib.sha256(key).digest()
    # The same digests, whichever API computes them.
    assert a == hmac.new(SECRET, key, "sha256").digest() == crypto_hmac(key) == ks.digest(key)
    assert a == hmac_copy(key) == pads_copy(key)
    assert b == crypto_sha256(key)

    cases = {
        'hmac.digest(secret, key, "sha256")': "hmac.digest(SECRET, key, 'sha256')",
        'hmac.new(secret, key, "sha256").digest()': "hmac.new(SECRET, key, 'sha256').digest()",
        "cryptography hmac.HMAC(secret, SHA256())": "crypto_hmac(key)",
        "hmac.new(secret) made once, .copy() per call": "hmac_copy(key)",
        "sha256 ipad/opad states made once, .copy() per call": "pads_copy(key)",
        "keysentry Digester (HMAC-SHA256)": "ks.digest(key)",
        "hashlib.sha256(key).digest()": "hashlib.sha256(key).digest()",
        "cryptography hashes.Hash(SHA256())": "crypto_sha256(key)",
        "hmac.compare_digest (32 bytes, equal)": "hmac.compare_digest(a, a2)",
        "keysentry KeyFormat.identify (crc32 checksum)": "ks.format.identify(key)",
    }
    names = {**globals(), "ks": ks, "key": key, "a": a, "a2": bytes(a)}

    print(f"Python {platform.python_version()}, {ssl.OPENSSL_VERSION}")
    print(f"cryptography {version('cryptography')}; key of {len(key)} bytes")
    print(f"median of {args.repeat} x {args.number} calls, cases interleaved per repeat\n")
    timers = {label: timeit.Timer(stmt, globals=names) for label, stmt in cases.items()}
    per_call: dict[str, list[float]] = {label: [] for label in cases}
    for _ in range(args.repeat):
        for label, timer in timers.items():
            per_call[label].append(timer.timeit(args.number) / args.number * 1e9)
    print("| operation | median ns/call | min ns/call |\n|---|---:|---:|")
    for label, ns in per_call.items():
        print(f"| {label} | {statistics.median(ns):.0f} | {min(ns):.0f} |")


if __name__ == "__main__":
    main()

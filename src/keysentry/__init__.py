"""keysentry: API-key authentication and per-key rate limiting for any ASGI or WSGI app.

from keysentry import ASGIMiddleware, Keysentry, MemoryStore

ks = Keysentry(MemoryStore(), secret=os.environ["KEYSENTRY_SECRET"])
app.add_middleware(ASGIMiddleware, keysentry=ks)
print(ks.issue(name="ci").key.reveal())   # shown once; only its digest is stored
"""

from .asgi import ASGIMiddleware
from .core import IssuedKey, Keysentry
from .decision import Verdict
from .errors import (
    ERRORS,
    Denial,
    DuplicateKey,
    ErrorKind,
    InsufficientCredits,
    InvalidKeyFormat,
    KeyNotFound,
    KeysentryError,
    StoreUnavailable,
)
from .keys import ImportedFormat, SecretKey
from .records import KeyIdentity, KeyRecord, Rate
from .responses import default_error_body
from .stores import AsyncKeyStore, KeyChanges, KeyStore, MemoryStore, from_url
from .wsgi import WSGIMiddleware

__version__ = "0.1.0"

__all__ = [
    "ERRORS",
    "ASGIMiddleware",
    "AsyncKeyStore",
    "Denial",
    "DuplicateKey",
    "ErrorKind",
    "ImportedFormat",
    "InsufficientCredits",
    "InvalidKeyFormat",
    "IssuedKey",
    "KeyChanges",
    "KeyIdentity",
    "KeyNotFound",
    "KeyRecord",
    "KeyStore",
    "Keysentry",
    "KeysentryError",
    "MemoryStore",
    "Rate",
    "SecretKey",
    "StoreUnavailable",
    "Verdict",
    "WSGIMiddleware",
    "__version__",
    "default_error_body",
    "from_url",
]

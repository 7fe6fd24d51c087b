from __future__ import annotations

import pytest

from keysentry import Keysentry, MemoryStore

from .apps import FRAMEWORKS, Client
from .services import (  # noqa: F401  (fixtures)
    ns,
    pg_schema,
    redis_cluster,
    redis_sentinel,
    redis_server,
    store_redis_server,
)

SECRET = "test-digest-secret-0123456789abcdef"


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def ks(store: MemoryStore) -> Keysentry:
    return Keysentry(store, secret=SECRET, exempt=["/health", "/public/*"])


@pytest.fixture
def key(ks: Keysentry) -> str:
    """A valid key named 'test', owned by 'acct_1', with scope 'read'."""
    return ks.issue(name="test", owner="acct_1", scopes=["read"]).key.reveal()


@pytest.fixture(params=FRAMEWORKS)
def client(request: pytest.FixtureRequest, ks: Keysentry) -> Client:
    """The same protected API in Starlette, FastAPI, Flask and bare werkzeug."""
    return Client(request.param, ks)

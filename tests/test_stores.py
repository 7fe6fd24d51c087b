"""The store contract (keysentry.testing) against every built-in store."""

from __future__ import annotations

import pytest

from keysentry import MemoryStore
from keysentry.testing import AsyncKeyStoreContract, KeyStoreContract


class TestMemoryStore(KeyStoreContract):
    @pytest.fixture
    def store(self) -> MemoryStore:
        return MemoryStore()


class TestMemoryStoreAsync(AsyncKeyStoreContract):
    @pytest.fixture
    def store(self) -> MemoryStore:
        return MemoryStore()

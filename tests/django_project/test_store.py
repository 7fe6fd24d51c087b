"""The store contract (keysentry.testing) against DjangoStore, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from keysentry.django.store import DjangoStore
from keysentry.testing import AsyncKeyStoreContract, KeyStoreContract

from .conftest import empty_tables


class TestDjangoStoreSQLite(KeyStoreContract):
    @pytest.fixture
    def store(self) -> DjangoStore:
        return DjangoStore("default")


class TestDjangoStoreSQLiteAsync(AsyncKeyStoreContract):
    @pytest.fixture
    def store(self) -> DjangoStore:
        return DjangoStore("default")


@pytest.mark.postgres
class TestDjangoStorePostgres(KeyStoreContract):
    @pytest.fixture
    def store(self, postgres_database: str) -> DjangoStore:
        empty_tables(postgres_database)
        return DjangoStore(postgres_database)


@pytest.mark.postgres
class TestDjangoStorePostgresAsync(AsyncKeyStoreContract):
    @pytest.fixture
    def store(self, postgres_database: str) -> DjangoStore:
        empty_tables(postgres_database)
        return DjangoStore(postgres_database)


def test_the_migrations_hold_every_model_change() -> None:
    """A change of the models ships with its migration (``makemigrations --check`` exits 1)."""
    from django.core.management import call_command

    call_command("makemigrations", "keysentry", check=True, dry_run=True, verbosity=0)

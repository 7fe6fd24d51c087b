"""Django, configured once for this process (see ``settings.py``), and its databases.

Not pytest-django: it would configure Django for the whole suite, and its database fixtures
wrap tests in transactions that the store's threads (the conformance kit's races, the usage
flusher) could not see through. Here each test starts on empty key and account tables,
committed, in a SQLite file and, for the PostgreSQL tests, a database this session creates
and drops.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import django
import pytest
from django.conf import settings

from tests.services import pg_connect, unavailable

from . import settings as test_settings

if not settings.configured:
    settings.configure(**test_settings.SETTINGS)
    django.setup()

from django.core.management import call_command
from django.db import connections
from django.test.utils import setup_test_environment

setup_test_environment()


@pytest.fixture(scope="session", autouse=True)
def sqlite_database() -> Iterator[None]:
    call_command("migrate", verbosity=0, interactive=False)
    yield
    connections.close_all()
    shutil.rmtree(test_settings.DIRECTORY, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """The alias of a PostgreSQL database of this session's own, with keysentry's tables."""
    import psycopg

    try:
        conn = pg_connect()
    except psycopg.Error:
        unavailable("PostgreSQL")
    name = test_settings.PG_DATABASE
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        call_command("migrate", "keysentry", database="postgres", verbosity=0)
        yield "postgres"
    finally:
        connections["postgres"].close()
        with pg_connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def empty_tables(alias: str) -> None:
    from rest_framework_api_key.models import APIKey as DRFAPIKey

    from keysentry.django.models import Account, APIKey

    APIKey.objects.using(alias).all().delete()
    Account.objects.using(alias).all().delete()
    if alias == "default":
        DRFAPIKey.objects.using(alias).all().delete()


@pytest.fixture(autouse=True)
def _empty_tables() -> None:
    empty_tables("default")

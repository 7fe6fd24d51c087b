"""The Django settings of keysentry's Django tests, made once per test process.

Django is configured once per process, and the rest of the suite shares the process: these
settings are applied by this directory's ``conftest.py`` (``settings.configure``), so they
exist only once a Django test is collected, and nothing else of the suite sees them. The
databases: a SQLite file in a temporary directory (``default``) and a PostgreSQL database of
the session's own (``postgres``), created and dropped by the conftest.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

from tests.services import PG_URL

SECRET = "django-test-digest-secret-0123456789"
DIRECTORY = Path(tempfile.mkdtemp(prefix="kstest-django-"))
PG_DATABASE = f"kstest_django_{uuid.uuid4().hex[:10]}"


def _postgres() -> dict[str, Any]:
    from urllib.parse import urlsplit

    url = urlsplit(PG_URL)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": PG_DATABASE,
        "USER": url.username or "postgres",
        "PASSWORD": url.password or "",
        "HOST": url.hostname or "127.0.0.1",
        "PORT": str(url.port or 5432),
        "TEST": {"NAME": PG_DATABASE},
    }


SETTINGS: dict[str, Any] = {
    "DEBUG": False,
    "SECRET_KEY": "django-tests-only-not-secret",
    "ALLOWED_HOSTS": ["testserver", "127.0.0.1", "localhost"],
    "USE_TZ": True,
    "STATIC_URL": "/static/",
    "ROOT_URLCONF": "tests.django_project.urls",
    "INSTALLED_APPS": [
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "rest_framework",
        "rest_framework_api_key",
        "drf_spectacular",
        "keysentry.django",
    ],
    "MIDDLEWARE": [
        "keysentry.django.middleware.KeysentryMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    ],
    "TEMPLATES": [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "APP_DIRS": True,
            "OPTIONS": {
                "context_processors": [
                    "django.template.context_processors.request",
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                ]
            },
        }
    ],
    "DATABASES": {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DIRECTORY / "keys.sqlite3"),
            "TEST": {"NAME": str(DIRECTORY / "keys.sqlite3")},
            "OPTIONS": {"timeout": 20, "init_command": "PRAGMA synchronous=OFF"},
        },
        "postgres": _postgres(),
    },
    # Fast password hashing for the admin's test user; the old hasher that
    # djangorestframework-api-key used before 3.0 stays available to verify its keys.
    "PASSWORD_HASHERS": [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ],
    "REST_FRAMEWORK": {
        "DEFAULT_AUTHENTICATION_CLASSES": ["keysentry.django.drf.APIKeyAuthentication"],
        "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    },
    "KEYSENTRY": {
        "SECRET": SECRET,
        "EXEMPT": ["/health", "/admin/*", "/public/*"],
        "FAILURE_LIMIT": None,
        "USAGE_INTERVAL": None,
        "DRF_API_KEYS": True,
    },
}

"""A small Django project whose API needs keysentry's keys (see README.md beside it)."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# Development values: set both from the environment (and keep them out of the repository)
# anywhere else.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret")
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    # Only while moving keys over from djangorestframework-api-key (manage.py keysentry
    # import-drf-api-keys reads its table).
    "rest_framework_api_key",
    "keysentry.django",
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "keysentry.django.middleware.KeysentryMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

KEYSENTRY = {
    # The secret keys are digested with (HMAC-SHA256): the same in every process that
    # verifies keys, and in manage.py keysentry.
    "SECRET": os.environ.get("KEYSENTRY_SECRET", "example-digest-secret-not-for-production"),
    "EXEMPT": ["/admin/*", "/static/*", "/health"],
    "LIMITER": "memory://",  # redis://... to share rate limits between processes
    "DRF_API_KEYS": True,  # keys imported from djangorestframework-api-key keep working
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["keysentry.django.drf.APIKeyAuthentication"],
}

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
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
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DATABASE", BASE_DIR / "db.sqlite3"),
    }
}

USE_TZ = True
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

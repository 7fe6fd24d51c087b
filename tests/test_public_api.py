"""What ``import keysentry`` offers: what users construct, receive or catch, and nothing that
needs an extra until it is asked for."""

from __future__ import annotations

import subprocess
import sys

import pytest

import keysentry


def test_every_name_in_all_is_importable() -> None:
    for name in keysentry.__all__:
        assert getattr(keysentry, name) is not None, name


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("SQLStore", "keysentry.stores.sql"),
        ("RedisStore", "keysentry.stores.redis"),
        ("RedisLimiter", "keysentry.ratelimit.redis"),
        ("LeasedLimiter", "keysentry.ratelimit.leased"),
        ("RedisInvalidator", "keysentry.invalidation"),
    ],
)
def test_extras_are_exported_lazily(name: str, module: str) -> None:
    code = (
        "import sys, keysentry\n"
        f"assert {module!r} not in sys.modules\n"
        "assert 'sqlalchemy' not in sys.modules and 'redis' not in sys.modules\n"
        f"from keysentry import {name}\n"
        f"assert {name}.__module__ == {module!r}\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_internals_are_not_exported() -> None:
    for internal in ("Verdict", "ErrorKind", "ERRORS", "Pipeline", "TTLCache", "Entry"):
        assert internal not in keysentry.__all__
        with pytest.raises(AttributeError):
            getattr(keysentry, internal)


def test_what_users_construct_is_there() -> None:
    from keysentry import (  # noqa: F401
        ASGIMiddleware,
        Keysentry,
        LogDecisions,
        MemoryLimiter,
        MemoryStore,
        RedisInvalidator,
        RedisLimiter,
        RedisStore,
        Settings,
        SQLStore,
        WSGIMiddleware,
    )


def test_from_url_is_typed() -> None:
    import inspect

    annotation = inspect.signature(keysentry.from_url).return_annotation
    assert annotation not in ("Any", inspect.Signature.empty)


def test_import_keysentry_imports_no_django() -> None:
    code = (
        "import sys, keysentry, keysentry.django\n"
        "assert 'django' not in sys.modules and 'rest_framework' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr

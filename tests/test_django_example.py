"""The Django example project as its README runs it: migrate, create a key with the
management command, serve it with runserver: 200 five times, then 429 with the RateLimit
fields; 401 without a key; and a key minted by djangorestframework-api-key, imported, 200."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .services import free_port

PROJECT = Path(__file__).parent.parent / "examples" / "django_project"


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    hidden = ("KEYSENTRY_SECRET", "DJANGO_SETTINGS_MODULE")
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    env["EXAMPLE_DATABASE"] = str(tmp_path / "db.sqlite3")
    return env


def manage(env: dict[str, str], *args: str) -> str:
    ran = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    return ran.stdout


@pytest.fixture
def server(environment: dict[str, str]) -> Iterator[str]:
    manage(environment, "migrate", "-v0")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=PROJECT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "runserver exited"
            assert time.monotonic() < deadline, "runserver did not answer"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_readme_path(server: str, environment: dict[str, str]) -> None:
    command = ["keysentry", "keys", "create", "--name", "ci", "--rate-limit", "5/minute"]
    created = json.loads(manage(environment, *command, "--json"))
    key = created["key"]
    with httpx.Client(base_url=server) as client:
        answers = [
            client.get("/v1/me", headers={"Authorization": f"Bearer {key}"}) for _ in range(6)
        ]
        assert [a.status_code for a in answers] == [200] * 5 + [429]
        assert answers[0].json()["id"] == created["id"]
        for answer in answers:
            assert answer.headers["RateLimit-Policy"] == '"per-minute";q=5;w=60'
            assert answer.headers["RateLimit"].startswith('"per-minute";r=')
        refused = answers[-1]
        assert refused.json()["error"]["code"] == "RATE_LIMITED"
        assert int(refused.headers["Retry-After"]) >= 1
        missing = client.get("/v1/me")
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "MISSING_API_KEY"

        # A key of djangorestframework-api-key, minted before the import.
        old = manage(
            environment,
            "shell",
            "-c",
            "from rest_framework_api_key.models import APIKey; "
            "print(APIKey.objects.create_key(name='old')[1])",
        ).splitlines()[-1]
        manage(environment, "keysentry", "import-drf-api-keys")
        imported = client.get("/v1/me", headers={"Authorization": f"Api-Key {old}"})
        assert imported.status_code == 200
        assert imported.json()["name"] == "old"

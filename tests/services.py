"""Real services for tests: the machine's Redis, and throwaway Redis servers on spare ports.

With ``KEYSENTRY_REQUIRE_SERVICES=1`` (CI) a missing service fails the test; otherwise it skips.
Tests use their own namespace and delete what they wrote; nothing else is touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

REDIS_URL = os.environ.get("KEYSENTRY_TEST_REDIS", "redis://127.0.0.1:6379/0")
PG_URL = os.environ.get("KEYSENTRY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRED = os.environ.get("KEYSENTRY_REQUIRE_SERVICES") == "1"


def unavailable(what: str) -> None:
    if REQUIRED:
        pytest.fail(f"{what} is required (KEYSENTRY_REQUIRE_SERVICES=1) but unavailable")
    pytest.skip(f"{what} unavailable")


def redis_or_skip(url: str = REDIS_URL) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping()
    except redis.RedisError:
        unavailable(f"Redis at {url}")


def namespace() -> str:
    return f"kstest-{uuid.uuid4().hex[:12]}"


def delete_namespace(url: str, ns: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{ns}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def pg_connect(autocommit: bool = True) -> Any:
    import psycopg

    return psycopg.connect(PG_URL, autocommit=autocommit, connect_timeout=2)


def table_prefix() -> str:
    """Fresh SQL tables per test: an empty store without dropping anything."""
    return f"t{uuid.uuid4().hex[:10]}_"


@pytest.fixture(scope="session")
def pg_schema() -> Iterator[str]:
    """A PostgreSQL schema of this test session's own, dropped (with all in it) at the end."""
    import psycopg

    try:
        pg_connect().close()
    except psycopg.Error:
        unavailable(f"PostgreSQL at {PG_URL}")
    schema = f"kstest_{uuid.uuid4().hex[:12]}"
    with pg_connect() as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with pg_connect() as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server of our own on a spare port, that tests may stop, freeze and restart."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server binary")
        self.binary = binary
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="kstest-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.binary is not None
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop_keeping_data(self) -> None:
        """Stop after writing a snapshot, which :meth:`start` loads: the server comes back
        with the data it had, as a restarted production server would."""
        import redis

        client = redis.Redis.from_url(self.url)
        try:
            client.save()
        finally:
            client.close()
        self.stop()


def _throwaway_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None:
            server.thaw()
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    yield from _throwaway_redis()


@pytest.fixture
def store_redis_server() -> Iterator[RedisServer]:
    """A second throwaway server, for tests that stop the key store's Redis and the
    invalidation channel's (``redis_server``) apart."""
    yield from _throwaway_redis()

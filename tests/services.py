"""Real services for tests: the machine's Redis, and throwaway Redis servers on spare ports.

With ``KEYSENTRY_REQUIRE_SERVICES=1`` (CI) a missing service fails the test; otherwise it skips.
Tests use their own namespace and delete what they wrote; nothing else is touched.
"""

from __future__ import annotations

import os
import random
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


@pytest.fixture
def ns() -> Iterator[str]:
    """A namespace of the test's own on the machine's Redis, deleted afterwards."""
    redis_or_skip()
    name = namespace()
    yield name
    delete_namespace(REDIS_URL, name)


def delete_namespace(url: str, ns: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{ns}:*", count=1000))
        with client.pipeline(transaction=False) as pipe:
            for key in keys:  # one by one: a cluster node refuses a DEL across slots
                pipe.delete(key)
            pipe.execute()
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


def free_cluster_port() -> int:
    """A spare port whose cluster bus port (10000 above it) is spare too."""
    for _ in range(100):
        port = random.randrange(20000, 40000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no spare port pair for a cluster node")


class RedisServer:
    """A redis-server of our own on a spare port, that tests may stop, freeze and restart."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server binary")
        self.binary = binary
        self.port = free_port() if port is None else port
        self.dir = tempfile.mkdtemp(prefix="kstest-redis-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *extra: str) -> None:
        """Start (again), with ``extra`` options on top of the usual ones, kept for later
        restarts."""
        assert self.binary is not None
        if extra:
            self.extra = extra
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
                *self.extra,
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


def _wait(check: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            up = bool(check())
        except Exception:  # not up yet
            up = False
        if up:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up")
        time.sleep(0.05)


def _redis_cli() -> str:
    binary = shutil.which("redis-cli")
    if binary is None:
        unavailable("redis-cli binary")
    assert binary is not None
    return binary


class RedisCluster:
    """Three masters (no replicas) on spare ports, every slot assigned: a real Redis Cluster."""

    def __init__(self, masters: int = 3, *options: str) -> None:
        self.servers = [RedisServer(free_cluster_port()) for _ in range(masters)]
        #: Options on top of the cluster's own for every server, e.g.
        #: ``"--cluster-require-full-coverage", "no"``: the other masters serve while one is down.
        self.options = options

    @property
    def nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", server.port) for server in self.servers]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in self.nodes)

    def start(self) -> None:
        import redis

        for server in self.servers:
            server.start(
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                os.path.join(server.dir, "nodes.conf"),
                "--cluster-node-timeout",
                "2000",
                *self.options,
            )
        subprocess.run(
            [
                _redis_cli(),
                "--cluster",
                "create",
                *(f"{h}:{p}" for h, p in self.nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
        for server in self.servers:
            client = redis.Redis.from_url(server.url)
            try:
                _wait(
                    lambda c=client: c.cluster("info")["cluster_state"] == "ok",
                    "the cluster",
                )
            finally:
                client.close()

    def node_of(self, key: str) -> int:
        """The index in :attr:`servers` of the master owning ``key``'s slot."""
        import redis
        from redis.crc import key_slot

        slot = key_slot(key.encode())
        client = redis.Redis.from_url(self.servers[0].url)
        try:
            for start, end, master, *_ in client.execute_command("CLUSTER SLOTS"):
                if start <= slot <= end:
                    return [s.port for s in self.servers].index(int(master[1]))
        finally:
            client.close()
        raise LookupError(slot)

    def node_id(self, index: int) -> str:
        import redis

        client = redis.Redis.from_url(self.servers[index].url)
        try:
            return str(client.execute_command("CLUSTER MYID").decode())
        finally:
            client.close()

    def move_slots(self, source: int, target: int) -> None:
        """Migrate every slot (and key) of one master to another, as ``redis-cli --cluster
        reshard`` does: clients that knew the old layout are told ``MOVED``."""
        subprocess.run(
            [
                _redis_cli(),
                "--cluster",
                "reshard",
                f"127.0.0.1:{self.servers[0].port}",
                "--cluster-from",
                self.node_id(source),
                "--cluster-to",
                self.node_id(target),
                "--cluster-slots",
                str(16384),  # all of the source's
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )

    def delete_namespace(self, ns: str) -> None:
        """Delete every key of a namespace, on every master."""
        for server in self.servers:
            if server.proc is not None:
                delete_namespace(server.url, ns)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
            shutil.rmtree(server.dir, ignore_errors=True)


class RedisSentinel:
    """A master and one Sentinel watching it as ``mymaster`` (quorum 1)."""

    service = "mymaster"

    def __init__(self) -> None:
        self.master = RedisServer()
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/{self.service}"

    def start(self) -> None:
        import redis

        self.master.start()
        config = os.path.join(self.master.dir, "sentinel.conf")
        with open(config, "w") as f:
            f.write(
                f"port {self.port}\nbind 127.0.0.1\ndir {self.master.dir}\n"
                f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 1\n"
                f"sentinel down-after-milliseconds {self.service} 5000\n"
            )
        binary = shutil.which("redis-sentinel")
        command = [binary, config] if binary else [self.master.binary, config, "--sentinel"]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=1)
        try:
            _wait(
                lambda: (
                    client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
                    is not None
                ),
                "the sentinel",
            )
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None
        self.master.stop()
        shutil.rmtree(self.master.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A 3-master Redis Cluster for the session, stopped at its end."""
    cluster = RedisCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[RedisSentinel]:
    """A Redis master with one Sentinel for the session, stopped at its end."""
    sentinel = RedisSentinel()
    try:
        sentinel.start()
        yield sentinel
    finally:
        sentinel.stop()

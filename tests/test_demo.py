"""``keysentry demo`` as a user runs it: the real console script, a real socket, curl-like calls."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .services import (
    PG_URL,
    REDIS_URL,
    RedisCluster,
    RedisServer,
    delete_namespace,
    namespace,
    redis_or_skip,
)

SCRIPT = Path(sys.executable).with_name("keysentry")


@pytest.fixture
def demo_args() -> list[str]:
    return []


@pytest.fixture
def demo_banner(demo_args: list[str], tmp_path: Path) -> Iterator[tuple[str, int, str]]:
    """The demo on a free port, in an empty directory (its SQLite file lands there): its key,
    its port and what it printed."""
    env = {k: v for k, v in os.environ.items() if k not in ("KEYSENTRY_SECRET", "KEYSENTRY_STORE")}
    proc = subprocess.Popen(
        [str(SCRIPT), "demo", "--port", "0", *demo_args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(lines)
        key = re.search(r"Bearer (sk_live_[A-Za-z0-9]+)", text)
        port = re.search(r"http://127\.0\.0\.1:(\d+)/", text)
        assert key, text
        assert port, text
        _wait_for(int(port.group(1)))
        assert ("--store" in demo_args) or (tmp_path / "keysentry.db").exists()
        yield key.group(1), int(port.group(1)), text
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def demo(demo_banner: tuple[str, int, str]) -> tuple[str, int]:
    key, port, _ = demo_banner
    return key, port


def _wait_for(port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            _get(port, "/health")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), json.loads(r.read())
    finally:
        conn.close()


def test_demo_serves_the_printed_key(demo: tuple[str, int]) -> None:
    key, port = demo
    status, _, body = _get(port, "/v1/me", {"Authorization": f"Bearer {key}"})
    assert status == 200
    assert key.startswith(body["prefix"])

    status, headers, body = _get(port, "/v1/me")
    assert (status, body["error"]["code"]) == (401, "MISSING_API_KEY")
    assert headers["www-authenticate"].startswith("Bearer ")

    status, _, body = _get(port, "/v1/me", {"Authorization": key})
    assert (status, body["error"]["code"]) == (401, "INVALID_API_KEY")
    assert "'Bearer ' prefix" in body["error"]["message"]

    i = len(key) // 2
    changed = key[:i] + ("x" if key[i] != "x" else "y") + key[i + 1 :]
    status, _, body = _get(port, "/v1/me", {"Authorization": f"Bearer {changed}"})
    assert (status, body["error"]["code"]) == (401, "INVALID_API_KEY")


def test_demo_serves_prometheus_metrics_without_a_key(demo: tuple[str, int]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    key, port = demo
    assert _get(port, "/v1/me", {"Authorization": f"Bearer {key}"})[0] == 200
    assert _get(port, "/v1/me", {"X-API-Key": key})[0] == 200
    assert _get(port, "/v1/me")[0] == 401
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        status, kind, text = r.status, r.getheader("content-type", ""), r.read().decode()
    finally:
        conn.close()
    assert status == 200
    assert kind.startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    # The scrape itself is exempt: not a decision.
    assert samples[("keysentry_decisions_total", (("code", ""), ("outcome", "allowed")))] == 2
    denied = (("code", "MISSING_API_KEY"), ("outcome", "denied"))
    assert samples[("keysentry_decisions_total", denied)] == 1
    assert samples[("keysentry_cache_lookups_total", (("result", "hit"),))] == 1
    assert samples[("keysentry_cache_lookups_total", (("result", "miss"),))] == 1


def test_demo_refuses_a_bad_store_url() -> None:
    r = subprocess.run(
        [str(SCRIPT), "demo", "--port", "0", "--store", "nosuch://x"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2
    assert "unsupported store URL" in r.stderr
    assert "Traceback" not in r.stderr


#: Forms of the password "Le/ak" that must never be printed, nor its tail after the '/'.
LEAKS = ("Le/ak", "Le%2Fak", "Le%2fak", "ak@")


@pytest.mark.parametrize(
    "args",
    [
        ["--store", "postgresql://u:Le/ak@127.0.0.1:1/x"],
        ["--store", "postgresql://u:p@ss:Le/ak@127.0.0.1:1/x"],
        ["--store", "redis://u:Le/ak@127.0.0.1:1/0"],
        ["--store", "memory://", "--limiter", "redis://u:Le/ak@127.0.0.1:1/0"],
        ["--store", "memory://", "--invalidator", "redis://:Le/ak@127.0.0.1:1/0"],
    ],
    ids=["postgres", "postgres-port", "redis", "limiter", "invalidator"],
)
def test_demo_errors_never_print_a_password(args: list[str], tmp_path: Path) -> None:
    r = subprocess.run(
        [str(SCRIPT), "demo", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert r.returncode in (1, 2), (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("keysentry demo: ")
    assert r.stderr.count("\n") == 1, r.stderr
    for leak in (*LEAKS, "'Le'"):
        assert leak not in r.stdout + r.stderr, (leak, r.stderr)


@pytest.mark.postgres
def test_the_demo_banner_never_prints_a_password(pg_schema: str, tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    # The server trusts local connections: the password is sent and ignored, the demo runs.
    pg = make_url(PG_URL)
    where = f"{pg.host}:{pg.port or 5432}/{pg.database}"
    store = f"postgresql://{pg.username}:Le/ak@{where}?options=-csearch_path%3D{pg_schema}"
    limiter = "redis://u:Le%2Fak@127.0.0.1:1/0?password=Le%2Fak"  # not used until a request
    proc = subprocess.Popen(
        [str(SCRIPT), "demo", "--port", "0", "--store", store, "--limiter", limiter],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    try:
        text = ""
        while "Ctrl-C" not in text:
            line = proc.stdout.readline()
            assert line, text
            text += line
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
    assert f"(store: postgresql://{pg.username}:***@{where}?options=" in text
    assert "(limiter: redis://u:***@127.0.0.1:1/0?password=***)" in text
    for leak in LEAKS:
        assert leak not in text, (leak, text)


@pytest.mark.parametrize(
    "demo_args",
    [
        ["--rate-limit", "5/minute"],
        ["--rate-limit", "5/minute", "--limiter", "redis://127.0.0.1:6379/0"],
    ],
    ids=["memory", "redis"],
)
def test_demo_rate_limit_answers_the_sixth_request_with_429(
    demo: tuple[str, int], demo_args: list[str]
) -> None:
    if "--limiter" in demo_args:
        redis_or_skip()
    key, port = demo
    for i in range(5):
        status, headers, _ = _get(port, "/v1/me", {"Authorization": f"Bearer {key}"})
        assert status == 200
        assert headers["ratelimit-policy"] == '"per-minute";q=5;w=60'
        assert headers["ratelimit"].startswith(f'"per-minute";r={4 - i};t=')
    status, headers, body = _get(port, "/v1/me", {"Authorization": f"Bearer {key}"})
    assert (status, body["error"]["code"]) == (429, "RATE_LIMITED")
    assert int(headers["retry-after"]) >= 1
    assert headers["ratelimit"].startswith('"per-minute";r=0;t=')
    if "--limiter" in demo_args:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        client.delete(f"keysentry:rl:{{{key[len('sk_live_') : len('sk_live_') + 12]}}}")
        client.close()


def _shell(lines: str) -> str:
    return subprocess.run(
        ["bash", "-c", lines], capture_output=True, text=True, timeout=60, check=True
    ).stdout


def test_the_demo_prints_no_429_line_without_a_rate_limit(
    demo_banner: tuple[str, int, str],
) -> None:
    _, _, text = demo_banner
    assert "429" not in text
    assert "Rate limit of the key: none" in text


@pytest.mark.parametrize(
    ("demo_args", "allowed"),
    [(["--rate-limit", "5/minute"], 5), (["--rate-limit", "3/minute, 100/day"], 3)],
    ids=["one-rate", "two-rates"],
)
def test_the_demo_prints_a_curl_line_that_gets_the_429(
    demo_banner: tuple[str, int, str], allowed: int
) -> None:
    """The lines under the 429 comment, pasted into a shell as printed, count 200s and a 429."""
    key, port, text = demo_banner
    comment = re.search(r"\n    # .*429 RATE_LIMITED.*\n((?:    .*\n)+)", text)
    assert comment, text
    counts = {
        status: int(count)
        for count, status in (line.split() for line in _shell(comment.group(1)).splitlines())
    }
    assert counts == {"200": allowed, "429": 1}
    status, _, body = _get(port, "/v1/me", {"Authorization": f"Bearer {key}"})
    assert (status, body["error"]["code"]) == (429, "RATE_LIMITED")


class TestDemoLimitingOnACluster:
    """``keysentry demo --limiter redis+cluster://...``: the limiter on a real Redis Cluster."""

    @pytest.fixture
    def demo_args(self, redis_cluster: RedisCluster) -> list[str]:
        # A generous timeout: the limiter fails open, and a busy test machine is slow to
        # answer the cluster client's first calls.
        url = f"{redis_cluster.url}?namespace=demo&socket_timeout=2&socket_connect_timeout=2"
        return ["--rate-limit", "5/minute", "--limiter", url]

    def test_the_sixth_request_gets_429(
        self, demo: tuple[str, int], redis_cluster: RedisCluster
    ) -> None:
        key, port = demo
        statuses = [_get(port, "/v1/me", {"Authorization": f"Bearer {key}"})[0] for _ in range(6)]
        assert statuses == [200] * 5 + [429]
        import redis.cluster

        host, node_port = redis_cluster.nodes[0]
        client = redis.cluster.RedisCluster(host=host, port=node_port)
        key_id = key[len("sk_live_") : len("sk_live_") + 12]
        assert client.delete(f"demo:rl:{{{key_id}}}") == 1  # under the URL's namespace
        client.close()


class TestDemoLeasedLimitingOnACluster:
    """``--limiter "redis+cluster://...?lease=16"``: slices of 16, the limit still exact."""

    @pytest.fixture
    def demo_args(self, redis_cluster: RedisCluster) -> list[str]:
        url = f"{redis_cluster.url}?namespace=demo-leased&lease=16&socket_timeout=2"
        return ["--rate-limit", "5/minute", "--limiter", url]

    def test_the_sixth_request_gets_429(
        self, demo: tuple[str, int], redis_cluster: RedisCluster
    ) -> None:
        key, port = demo
        statuses = [_get(port, "/v1/me", {"Authorization": f"Bearer {key}"})[0] for _ in range(8)]
        assert statuses == [200] * 5 + [429] * 3
        import redis.cluster

        host, node_port = redis_cluster.nodes[0]
        client = redis.cluster.RedisCluster(host=host, port=node_port)
        key_id = key[len("sk_live_") : len("sk_live_") + 12]
        state = f"demo-leased:rl:{{{key_id}}}"
        assert client.delete(state, f"{state}:holders") >= 1  # leased under the URL's namespace
        client.close()


CREATE = ("--name", "cli", "--rate-limit", "5/minute", "--json")


class TestKeysAndDemoOnACluster:
    """Keys made by ``keysentry keys --store redis+cluster://... create``, served by
    ``keysentry demo`` with its store and limiter on the same cluster, namespaces left at
    their default (no hash tag): each key's record and limiter state share its id's slot,
    and the limit holds on whichever master that is, plain or leased."""

    @pytest.fixture(params=["", "?lease=16"], ids=["plain", "leased"])
    def demo_args(
        self, request: pytest.FixtureRequest, redis_cluster: RedisCluster
    ) -> Iterator[list[str]]:
        url = redis_cluster.url
        yield ["--store", url, "--limiter", url + request.param, "--rate-limit", "5/minute"]
        redis_cluster.delete_namespace("keysentry")

    def test_cli_keys_on_every_master_get_429_after_5(
        self, demo: tuple[str, int], redis_cluster: RedisCluster
    ) -> None:
        demo_key, port = demo
        env = {
            k: v for k, v in os.environ.items() if k not in ("KEYSENTRY_SECRET", "KEYSENTRY_STORE")
        }
        keys: dict[int, str] = {}
        while len(keys) < len(redis_cluster.servers):
            r = subprocess.run(
                [str(SCRIPT), "keys", "--store", redis_cluster.url, "create", *CREATE],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
            )
            assert (r.returncode, r.stderr) == (0, ""), r.stderr
            created = json.loads(r.stdout)
            keys.setdefault(
                redis_cluster.node_of(f"keysentry:key:{{{created['id']}}}"), created["key"]
            )
        for key in [*keys.values(), demo_key]:
            headers = {"Authorization": f"Bearer {key}"}
            statuses = [_get(port, "/v1/me", headers)[0] for _ in range(6)]
            assert statuses == [200] * 5 + [429], key[:20]


@pytest.fixture(params=["redis", pytest.param("postgres", marks=pytest.mark.postgres)])
def server_store(request: pytest.FixtureRequest) -> Iterator[str]:
    """A store URL on the machine's Redis (own namespace) or PostgreSQL (own schema)."""
    if request.param == "redis":
        redis_or_skip()
        ns = namespace()
        yield f"{REDIS_URL}?namespace={ns}"
        delete_namespace(REDIS_URL, ns)
    else:
        schema = request.getfixturevalue("pg_schema")
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"


def test_demo_runs_on_redis_and_postgres(server_store: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("KEYSENTRY_SECRET", "KEYSENTRY_STORE")}
    proc = subprocess.Popen(
        [str(SCRIPT), "demo", "--port", "0", "--store", server_store],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    try:
        text = ""
        while "Ctrl-C" not in text:
            line = proc.stdout.readline()
            assert line, text
            text += line
        key = re.search(r"Bearer (sk_live_[A-Za-z0-9]+)", text)
        port = re.search(r"http://127\.0\.0\.1:(\d+)/", text)
        assert key, text
        assert port, text
        assert "***" not in server_store  # nothing to mask here, and the banner names it
        assert server_store.split("?")[0] in text
        _wait_for(int(port.group(1)))
        status, _, body = _get(int(port.group(1)), "/v1/me", {"X-API-Key": key.group(1)})
        assert (status, body["name"]) == (200, "demo")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
    assert not (tmp_path / "keysentry.db").exists()  # the server store, not the SQLite default


class TestDemoOnRedisWithAnInvalidator:
    """The demo as a fleet would run it: keys in one Redis, changes heard on another."""

    @pytest.fixture
    def demo_args(self, store_redis_server: RedisServer, redis_server: RedisServer) -> list[str]:
        store = f"{store_redis_server.url}?namespace=demo"
        return ["--store", store, "--invalidator", redis_server.url]

    def test_a_cached_key_keeps_working_when_the_store_dies_and_the_channel_drops(
        self,
        demo: tuple[str, int],
        store_redis_server: RedisServer,
        redis_server: RedisServer,
    ) -> None:
        import redis

        key, port = demo
        headers = {"X-API-Key": key}
        assert _get(port, "/v1/me", headers)[0] == 200  # now cached
        channel = redis.Redis.from_url(redis_server.url)
        try:
            subscribed = {c["id"] for c in channel.client_list(_type="pubsub")}
            assert subscribed  # the demo listens
            store_redis_server.stop()
            assert channel.client_kill_filter(_type="pubsub") == len(subscribed)
            deadline = time.monotonic() + 10
            while not {c["id"] for c in channel.client_list(_type="pubsub")} - subscribed:
                assert time.monotonic() < deadline, "the demo did not subscribe again"
                time.sleep(0.05)
        finally:
            channel.close()
        # Resubscribed, with the store still down: the cached key is served stale, each time.
        for _ in range(10):
            status, _, body = _get(port, "/v1/me", headers)
            assert (status, body.get("name")) == (200, "demo")
            time.sleep(0.05)


def test_the_demo_dashboard_link_signs_in_once(demo_banner: tuple[str, int, str]) -> None:
    key, port, text = demo_banner
    link = re.search(r"http://127\.0\.0\.1:\d+(/sign-in\?token=[A-Za-z0-9_-]{43})\n", text)
    assert link, text
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", link.group(1))
        signed = conn.getresponse()
        signed.read()
        conn.request("GET", link.group(1))
        again = conn.getresponse()
        again.read()
        session = (signed.getheader("set-cookie") or "").split(";")[0]
        conn.request("GET", "/dashboard/", headers={"Cookie": session})
        page = conn.getresponse()
        html = page.read().decode()
        conn.request("GET", "/dashboard/")
        stranger = conn.getresponse()
        stranger.read()
    finally:
        conn.close()
    assert (signed.status, signed.getheader("location")) == (303, "/dashboard/")
    assert "HttpOnly" in (signed.getheader("set-cookie") or "")
    assert again.status == 403  # good once
    assert page.status == 200
    assert key[: len("sk_live_") + 12] in html  # the demo key, by its prefix
    assert key not in html
    assert stranger.status == 401

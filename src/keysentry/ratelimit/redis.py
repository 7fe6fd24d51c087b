"""The Redis limiter: GCRA state shared by every process, one round trip per request.

One Lua script (``lua/gcra.lua``) decides all of a key's policies atomically, with Redis's own
clock (``TIME``), so processes on machines with skewed clocks still agree. It runs by
``EVALSHA``; on ``NOSCRIPT`` (a restarted or failed-over server) it is sent once with ``EVAL``.
A key's state is one hash named ``<namespace>:rl:{<key id>}``: the braces make the key id the
Redis Cluster hash tag, and only the public key id, never a key, appears in the name.

Failures (refused connection, timeout, an open circuit breaker) raise
:class:`~keysentry.errors.StoreUnavailable`; whether that fails open or closed is the core's
setting. Timeouts are short and the breaker keeps a dead server from costing every request a
timeout. The sync client serves WSGI, the asyncio client serves ASGI: the event loop never
waits on a socket.
"""

from __future__ import annotations

import asyncio
import hashlib
from importlib.resources import files
from typing import Any
from urllib.parse import urlsplit

from ..breaker import CircuitBreaker
from ..errors import StoreUnavailable
from .gcra import Policy, RateDecision, describe

__all__ = ["RedisLimiter"]

SCRIPT = (files(__package__) / "lua" / "gcra.lua").read_text()
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode(), usedforsecurity=False).hexdigest()


def _client_options(timeout: float) -> dict[str, Any]:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
    }


class RedisLimiter:
    """``RedisLimiter("redis://127.0.0.1:6379/0")``; share one per process.

    :param timeout: seconds a Redis call may take before it counts as a failure.
    :param failures: consecutive failures that open the circuit breaker.
    :param cooldown: seconds the breaker stays open before one trial call.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        namespace: str = "keysentry",
        timeout: float = 0.1,
        failures: int = 3,
        cooldown: float = 2.0,
    ) -> None:
        try:
            import redis  # noqa: F401
        except ImportError:
            raise ImportError(
                "RedisLimiter needs redis-py: pip install 'keysentry[redis]'"
            ) from None
        self.url = url
        self.namespace = namespace
        self.timeout = timeout
        self.breaker = CircuitBreaker(failures, cooldown)
        self._sync: Any = None
        self._async: Any = None
        self._async_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        where = urlsplit(self.url)  # host and port only: a URL may carry a password
        return (
            f"RedisLimiter({where.hostname}:{where.port or 6379}, "
            f"namespace={self.namespace!r}, {self.breaker.state})"
        )

    def state_key(self, key: str) -> str:
        return f"{self.namespace}:rl:{{{key}}}"

    @staticmethod
    def _args(policies: tuple[Policy, ...], cost: int) -> list[int]:
        args = [cost]
        for p in policies:
            args += (p.interval, p.burst)
        return args

    def hit(self, key: str, policies: tuple[Policy, ...], cost: int = 1) -> RateDecision:
        if not self.breaker.allow():
            raise StoreUnavailable("Redis limiter circuit is open")
        from redis.exceptions import NoScriptError, RedisError

        client = self._sync
        if client is None:
            import redis

            client = self._sync = redis.Redis.from_url(self.url, **_client_options(self.timeout))
        name = self.state_key(key)
        args = self._args(policies, cost)
        try:
            try:
                reply = client.evalsha(SCRIPT_SHA, 1, name, *args)
            except NoScriptError:
                reply = client.eval(SCRIPT, 1, name, *args)
        except (RedisError, OSError) as exc:
            self.breaker.failure()
            raise StoreUnavailable(f"Redis limiter failed: {type(exc).__name__}") from exc
        self.breaker.success()
        return describe(policies, reply[2:], reply[1], reply[0] == 1, cost)

    async def ahit(self, key: str, policies: tuple[Policy, ...], cost: int = 1) -> RateDecision:
        if not self.breaker.allow():
            raise StoreUnavailable("Redis limiter circuit is open")
        from redis.exceptions import NoScriptError, RedisError

        client = self._async
        loop = asyncio.get_running_loop()
        if client is None or self._async_loop is not loop:
            # An asyncio client belongs to the loop it first ran on; a server (or a test
            # client) that runs another loop gets its own.
            import redis.asyncio

            client = self._async = redis.asyncio.Redis.from_url(
                self.url, **_client_options(self.timeout)
            )
            self._async_loop = loop
        name = self.state_key(key)
        args = self._args(policies, cost)
        try:
            try:
                reply = await client.evalsha(SCRIPT_SHA, 1, name, *args)
            except NoScriptError:
                reply = await client.eval(SCRIPT, 1, name, *args)
        except (RedisError, OSError, TimeoutError) as exc:
            self.breaker.failure()
            raise StoreUnavailable(f"Redis limiter failed: {type(exc).__name__}") from exc
        self.breaker.success()
        return describe(policies, reply[2:], reply[1], reply[0] == 1, cost)

    def reset(self, key: str) -> None:
        import redis

        client = self._sync or redis.Redis.from_url(self.url, **_client_options(self.timeout))
        self._sync = client
        client.delete(self.state_key(key))

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        if self._async is not None and self._async_loop is asyncio.get_running_loop():
            await self._async.aclose()
        self._async = None

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

from typing import Any

from .._redis import LuaScript, RedisBackend
from .gcra import Policy, RateDecision, describe

__all__ = ["RedisLimiter"]

GCRA = LuaScript(__package__, "gcra.lua")


class RedisLimiter(RedisBackend):
    """``RedisLimiter("redis://127.0.0.1:6379/0")``; share one per process.

    :param url: one server (``redis://``, ``rediss://``, ``unix://``), a Redis Cluster
        (``redis+cluster://host:port[,host:port...]``) or a Sentinel-managed master
        (``redis+sentinel://host:port[,host:port...]/service``); ``?namespace=`` sets
        ``namespace`` unless it is given. Or, instead of a URL:
    :param client: a blocking redis-py client of your own (``redis.Redis``,
        ``redis.cluster.RedisCluster``, ``Sentinel(...).master_for(...)``), for WSGI;
    :param aclient: its asyncio counterpart, for ASGI (give both for both). Given clients
        are used as they are, timeouts and retries included, and never closed.
    :param namespace: prefix of the limiter's Redis keys (``keysentry`` by default).
    :param timeout: seconds a Redis call may take before it counts as a failure.
    :param failures: consecutive failures that open the circuit breaker.
    :param cooldown: seconds the breaker stays open before one trial call.

    On a Redis Cluster a key's state is one hash under its ``{hash tag}``, so the script runs
    on the node owning it and counts exactly, whichever process asks; the cluster client
    follows ``MOVED``/``ASK``. One breaker covers the whole cluster: a node that is down
    fails (open or closed, as configured) the keys it owns and, once the breaker opens,
    every key until a trial call gets through.
    """

    kind = "RedisLimiter"

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        aclient: Any = None,
        namespace: str | None = None,
        timeout: float = 0.1,
        failures: int = 3,
        cooldown: float = 2.0,
    ) -> None:
        super().__init__(
            url,
            client=client,
            aclient=aclient,
            timeout=timeout,
            failures=failures,
            cooldown=cooldown,
        )
        self.namespace = namespace if namespace is not None else self.url_namespace or "keysentry"

    def __repr__(self) -> str:
        return f"RedisLimiter({self._where()}, namespace={self.namespace!r}, {self.breaker.state})"

    def state_key(self, key: str) -> str:
        return f"{self.namespace}:rl:{{{key}}}"

    @staticmethod
    def _args(policies: tuple[Policy, ...], cost: int) -> list[int | str]:
        args: list[int | str] = [cost]
        for p in policies:
            args += (p.name, p.interval, p.burst)
        return args

    def hit(self, key: str, policies: tuple[Policy, ...], cost: int = 1) -> RateDecision:
        name, args = self.state_key(key), self._args(policies, cost)
        with self._guard("hit"):
            reply = GCRA.run(self._client(), (name,), args)
        return describe(policies, reply[2:], reply[1], reply[0] == 1, cost)

    async def ahit(self, key: str, policies: tuple[Policy, ...], cost: int = 1) -> RateDecision:
        name, args = self.state_key(key), self._args(policies, cost)
        with self._guard("hit"):
            reply = await GCRA.arun(await self._aclient(), (name,), args)
        return describe(policies, reply[2:], reply[1], reply[0] == 1, cost)

    def reset(self, key: str) -> None:
        with self._guard("reset"):
            self._client().delete(self.state_key(key))

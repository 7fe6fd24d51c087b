"""What every Redis-backed part of keysentry shares: how clients are built, how failures
become :class:`~keysentry.errors.StoreUnavailable`, and how the package's Lua scripts run.

Clients use short timeouts and never retry on their own: a request must not wait on a sick
server longer than one timeout, and a :class:`~keysentry.breaker.CircuitBreaker` stops even that
once a server is known to be down. The blocking client is built once, on first use, and shared
by every thread; an asyncio client belongs to the event loop it first ran on, so there is one
per loop, dropped (and its connections with it) when the loop is.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import threading
import weakref
from collections.abc import Callable, Sequence
from importlib.resources import files
from typing import Any

from ._urls import safe_url, scrub
from .breaker import CircuitBreaker, Guarded

__all__ = ["LuaScript", "RedisBackend", "client_options"]


def client_options(timeout: float) -> dict[str, Any]:
    """redis-py options for one attempt per command, bounded by ``timeout`` seconds."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
    }


class LuaScript:
    """A Lua script of this package (``<package>/lua/<name>``), run by ``EVALSHA``.

    On ``NOSCRIPT`` (a restarted or failed-over server, a ``SCRIPT FLUSH``) it is sent once
    with ``EVAL``, which caches it on the server again. Clients are redis-py's, blocking
    (:meth:`run`) or asyncio (:meth:`arun`); redis-py is imported only when a call fails.
    """

    __slots__ = ("name", "sha", "text")

    def __init__(self, package: str, name: str) -> None:
        self.name = name
        self.text = (files(package) / "lua" / name).read_text(encoding="utf-8")
        self.sha = hashlib.sha1(self.text.encode(), usedforsecurity=False).hexdigest()

    def __repr__(self) -> str:
        return f"LuaScript({self.name!r}, sha={self.sha[:12]})"

    def run(self, client: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except _no_script():
            return client.eval(self.text, len(keys), *keys, *args)

    async def arun(self, client: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except _no_script():
            return await client.eval(self.text, len(keys), *keys, *args)

    def load(self, client: Any) -> None:
        """Make sure the server has the script (``SCRIPT LOAD`` is idempotent): before
        :meth:`queue`, where a ``NOSCRIPT`` reply cannot be retried command by command."""
        client.script_load(self.text)

    async def aload(self, client: Any) -> None:
        await client.script_load(self.text)

    def queue(self, pipeline: Any, keys: Sequence[str], args: Sequence[Any]) -> None:
        """Add one call to a pipeline, by ``EVALSHA`` only: :meth:`load` it first."""
        pipeline.evalsha(self.sha, len(keys), *keys, *args)


@functools.cache
def _no_script() -> type[Exception]:
    # Called only when a script call raised: an except clause is evaluated when reached.
    from redis.exceptions import NoScriptError

    return NoScriptError


class RedisBackend:
    """Lazily built sync and per-loop asyncio clients for one URL, and a circuit breaker."""

    #: What the subclass is called in errors and the ImportError hint.
    kind = "Redis backend"

    def __init__(self, url: str, *, timeout: float, failures: int, cooldown: float) -> None:
        try:
            from redis.connection import parse_url
            from redis.exceptions import RedisError
        except ImportError:
            hint = f"{self.kind} needs redis-py: pip install 'keysentry[redis]'"
            raise ImportError(hint) from None
        try:
            # Read now, as every client of this URL will read it: a mistake is reported once,
            # here, without the password (redis-py's own message may quote a piece of it as
            # the port), rather than by each client on first use.
            parse: Callable[[str], object] = parse_url  # untyped in redis-py
            parse(url)
        except ValueError as exc:
            reason = scrub(str(exc), url)
            raise ValueError(f"{self.kind}: not a Redis URL: {safe_url(url)} ({reason})") from None
        if timeout <= 0:
            raise ValueError("timeout must be > 0 seconds")
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
        self.url = url
        self.timeout = timeout
        self.breaker = CircuitBreaker(failures, cooldown)
        self._lock = threading.Lock()
        self._sync: Any = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    def _client(self) -> Any:
        client = self._sync
        if client is None:
            import redis

            with self._lock:
                if self._sync is None:
                    self._sync = redis.Redis.from_url(self.url, **client_options(self.timeout))
                client = self._sync
        return client

    def _aclient(self) -> Any:
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            import redis.asyncio

            client = self._async[loop] = redis.asyncio.Redis.from_url(
                self.url, **client_options(self.timeout)
            )
        return client

    def _guard(self, what: str) -> Guarded:
        """One exchange with the server under the breaker (:class:`Guarded`): Redis errors,
        and the socket's, become :class:`StoreUnavailable`. Usable around ``await`` too."""
        return Guarded(self.breaker, self.kind, what, self._errors)

    def close(self) -> None:
        """Close the blocking client. A later call builds a new one."""
        with self._lock:
            client, self._sync = self._sync, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the asyncio client of the running loop."""
        client = self._async.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

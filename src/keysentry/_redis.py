"""What every Redis-backed part of keysentry shares: how clients are built, and how failures
become :class:`~keysentry.errors.StoreUnavailable`.

Clients use short timeouts and never retry on their own: a request must not wait on a sick
server longer than one timeout, and a :class:`~keysentry.breaker.CircuitBreaker` stops even that
once a server is known to be down. The blocking client is built once, on first use, and shared
by every thread; an asyncio client belongs to the event loop it first ran on, so there is one
per loop, dropped (and its connections with it) when the loop is.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ._urls import safe_url, scrub
from .breaker import CircuitBreaker
from .errors import KeysentryError, StoreUnavailable

__all__ = ["RedisBackend", "client_options"]


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

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Run one exchange with the server under the breaker; driver errors become
        :class:`StoreUnavailable`.

        Usable around ``await`` too. keysentry's own errors and ``ValueError`` raised inside
        (a missing key, a refused change) mean the server answered: they count as a success.
        """
        if not self.breaker.allow():
            raise StoreUnavailable(f"{self.kind} circuit is open: {what} not attempted")
        try:
            yield
        except self._errors as exc:
            self.breaker.failure()
            raise StoreUnavailable(f"{self.kind} {what} failed: {type(exc).__name__}") from exc
        except (KeysentryError, ValueError):
            self.breaker.success()
            raise
        except BaseException:
            self.breaker.failure()  # cancelled mid-call: count it, so a trial is not lost
            raise
        self.breaker.success()

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

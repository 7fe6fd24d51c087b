"""What every Redis-backed part of keysentry shares: how clients are built, how failures
become :class:`~keysentry.errors.StoreUnavailable`, and how the package's Lua scripts run.

Clients use short timeouts and never retry on their own: a request must not wait on a sick
server longer than one timeout, and a :class:`~keysentry.breaker.CircuitBreaker` stops even that
once a server is known to be down. The blocking client is built once, on first use, and shared
by every thread; an asyncio client belongs to the event loop it first ran on, so there is one
per loop, dropped (and its connections with it) when the loop is.

Every part takes a URL or clients of the user's own (see :class:`RedisBackend`). URLs are read
in one place, :func:`connect`, in the ``limits`` library's conventions: ``redis://``,
``rediss://``, ``unix://`` (one server), ``redis+cluster://host:port[,host:port...]`` (a Redis
Cluster, through redis-py's cluster client, which follows ``MOVED`` and ``ASK``) and
``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]`` (the master the
Sentinels name). ``?namespace=`` is keysentry's and is taken out before redis-py sees the URL;
other query parameters are redis-py's.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import threading
import weakref
from collections.abc import Callable, Sequence
from importlib.resources import files
from typing import Any

from ._urls import SINGLE_REDIS_SCHEMES, RedisURL, read_redis_url, safe_url, scrub
from .breaker import CircuitBreaker, Guarded

__all__ = [
    "LuaScript",
    "MissingClient",
    "RedisBackend",
    "client_options",
    "connect",
    "is_async_cluster",
]


def client_options(timeout: float, *, asyncio: bool = False) -> dict[str, Any]:
    """redis-py options for one attempt per command, bounded by ``timeout`` seconds."""
    from redis.backoff import NoBackoff

    if asyncio:
        from redis.asyncio.retry import Retry as AsyncRetry

        retry: Any = AsyncRetry(NoBackoff(), 0)
    else:
        from redis.retry import Retry

        retry = Retry(NoBackoff(), 0)
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": retry,
        "health_check_interval": 0,
    }


def _url_kwargs(read: RedisURL) -> dict[str, Any]:
    """Connection options a multi-server URL gives: its credentials and its query, which
    redis-py reads (and types: ``socket_timeout=0.5`` is a float) as it would a
    ``redis://`` URL's."""
    from redis.connection import parse_url

    parse: Callable[[str], dict[str, Any]] = parse_url  # untyped in redis-py
    kwargs = parse("redis://localhost" + (f"/?{read.query}" if read.query else ""))
    kwargs.pop("host", None)
    kwargs.pop("port", None)
    for name in ("username", "password"):
        value = getattr(read, name)
        if value is not None:
            kwargs.setdefault(name, value)
    return kwargs


def connect(url: str | RedisURL, options: dict[str, Any], *, asyncio: bool = False) -> Any:
    """A redis-py client for a keysentry Redis URL (see the module's documentation): blocking,
    or asyncio with ``asyncio=True``. ``options`` (:func:`client_options`) apply to every
    connection it makes, a Sentinel's included; the URL's query parameters override them.

    A cluster client asks a startup node for the cluster's layout when it is built (blocking)
    or on first use (asyncio), so building one may raise redis-py's connection errors.
    """
    read = url if isinstance(url, RedisURL) else read_redis_url(url)
    if read.scheme in SINGLE_REDIS_SCHEMES:
        if asyncio:
            import redis.asyncio

            return redis.asyncio.Redis.from_url(read.url, **options)
        import redis

        return redis.Redis.from_url(read.url, **options)
    kwargs = {**options, **_url_kwargs(read)}
    if read.scheme == "redis+cluster":
        if asyncio:
            from redis.asyncio.cluster import ClusterNode as AsyncNode
            from redis.asyncio.cluster import RedisCluster as AsyncCluster

            nodes: list[Any] = [AsyncNode(host, port) for host, port in read.nodes]
            return AsyncCluster(startup_nodes=nodes, **kwargs)
        from redis import cluster

        sync_cluster: Any = cluster  # partly untyped in redis-py
        nodes = [sync_cluster.ClusterNode(host, port) for host, port in read.nodes]
        return sync_cluster.RedisCluster(startup_nodes=nodes, **kwargs)
    # redis+sentinel: the Sentinels get the same timeouts, no retries and, as in limits,
    # the credentials; the master the database too.
    sentinel_kwargs = {k: v for k, v in kwargs.items() if k != "db"}
    if read.db is not None:
        kwargs.setdefault("db", read.db)
    if asyncio:
        from redis.asyncio import sentinel as async_sentinel

        sentinels: Any = async_sentinel  # untyped in redis-py
    else:
        from redis import sentinel

        sentinels = sentinel
    manager = sentinels.Sentinel(list(read.nodes), sentinel_kwargs=sentinel_kwargs)
    return manager.master_for(read.service, **kwargs)


def sentinels_of(client: Any) -> list[Any]:
    """The Sentinel connections behind a client :func:`connect` built, to close with it."""
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    return list(getattr(manager, "sentinels", ()))


def is_async_cluster(client: Any) -> bool:
    """Whether a client is redis-py's asyncio cluster client (whose pipeline refuses
    ``EVALSHA``, and which learns the cluster's layout on first use)."""
    return hasattr(client, "nodes_manager") and inspect.iscoroutinefunction(
        getattr(client, "initialize", None)
    )


def _is_async(client: Any) -> bool:
    return inspect.iscoroutinefunction(getattr(client, "execute_command", None))


class MissingClient(ValueError):
    """A part given clients of the user's own has none for this face (blocking or asyncio).

    A ``ValueError``: the circuit breaker does not count it as the server's failure, so it
    is never mistaken for an outage (and failed open); it reaches the caller as it is."""


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

    def queue(self, pipeline: Any, keys: Sequence[str], args: Sequence[Any]) -> None:
        """Add one call to a pipeline, by ``EVALSHA`` only: queue ``SCRIPT LOAD`` of
        :attr:`text` before it, as a ``NOSCRIPT`` reply in a pipeline is not retried."""
        pipeline.evalsha(self.sha, len(keys), *keys, *args)


@functools.cache
def _no_script() -> type[Exception]:
    # Called only when a script call raised: an except clause is evaluated when reached.
    from redis.exceptions import NoScriptError

    return NoScriptError


class RedisBackend:
    """Sync and per-loop asyncio clients, built lazily from a URL or given by the user, and a
    circuit breaker.

    ``url`` (see :func:`connect`) or clients of the user's own, not both: ``client`` a blocking
    redis-py client (``redis.Redis``, ``redis.cluster.RedisCluster``, or
    ``Sentinel(...).master_for(...)``) for WSGI and the CLI, ``aclient`` its asyncio
    counterpart (``redis.asyncio``...) for ASGI; give both for a part used from both. A face
    that was not given raises :class:`MissingClient` when used: keysentry does not guess one
    from the other (their retry objects, pools and connection classes differ). Given clients
    are used as they are (their timeouts and retries, not keysentry's short ones), one asyncio
    client for every loop, and are never closed by keysentry: they are the user's.
    """

    #: What the subclass is called in errors and the ImportError hint.
    kind = "Redis backend"

    def __init__(
        self,
        url: str | None,
        *,
        client: Any = None,
        aclient: Any = None,
        timeout: float,
        failures: int,
        cooldown: float,
    ) -> None:
        try:
            from redis.exceptions import RedisError
        except ImportError:
            hint = f"{self.kind} needs redis-py: pip install 'keysentry[redis]'"
            raise ImportError(hint) from None
        given = client is not None or aclient is not None
        if url is not None and given:
            raise ValueError(f"{self.kind}: give a URL or clients, not both")
        if client is not None and _is_async(client):
            raise TypeError(f"{self.kind}: client= is an asyncio client; pass it as aclient=")
        if aclient is not None and not _is_async(aclient):
            raise TypeError(f"{self.kind}: aclient= is a blocking client; pass it as client=")
        if url is None and not given:
            url = "redis://127.0.0.1:6379/0"
        self._target: RedisURL | None = None
        if url is not None:
            self._target = self._read(url)
        if timeout <= 0:
            raise ValueError("timeout must be > 0 seconds")
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
        #: The URL as given (None with clients); show it with ``safe_url``.
        self.url = url
        #: The URL's ``?namespace=``, for the subclass to use unless told otherwise.
        self.url_namespace = None if self._target is None else self._target.namespace
        self.timeout = timeout
        self.breaker = CircuitBreaker(failures, cooldown)
        self._given = client
        self._agiven = aclient
        self._lock = threading.Lock()
        self._sync: Any = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        #: asyncio clients known ready for concurrent use (see :meth:`_aclient`).
        self._ready: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
        self._initializing: weakref.WeakKeyDictionary[Any, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def _read(self, url: str) -> RedisURL:
        try:
            # Read now, as every client of this URL will read it: a mistake is reported once,
            # here, without the password (redis-py's own message may quote a piece of it as
            # the port), rather than by each client on first use.
            read = read_redis_url(url)
            if read.scheme in SINGLE_REDIS_SCHEMES:
                from redis.connection import parse_url

                parse: Callable[[str], object] = parse_url  # untyped in redis-py
                parse(read.url)
            else:
                _url_kwargs(read)
        except ValueError as exc:
            reason = scrub(str(exc), url)
            raise ValueError(f"{self.kind}: not a Redis URL: {safe_url(url)} ({reason})") from None
        return read

    def _where(self) -> str:
        """The URL without its secrets, or what the user's clients are, for ``repr()``."""
        if self.url is not None:
            return repr(safe_url(self.url))
        given = [
            f"{name}={type(c).__module__}.{type(c).__qualname__}"
            for name, c in (("client", self._given), ("aclient", self._agiven))
            if c is not None
        ]
        return ", ".join(given)

    def _missing(self, face: str, other: str) -> MissingClient:
        return MissingClient(
            f"{self.kind} was given an {other} client only; give {face} too to use it "
            f"{'from WSGI, the CLI or threads' if face == 'client=' else 'from ASGI'}"
        )

    def _client(self) -> Any:
        if self._target is None:
            if self._given is None:
                raise self._missing("client=", "asyncio")
            return self._given
        client = self._sync
        if client is None:
            with self._lock:
                if self._sync is None:
                    self._sync = connect(self._target, client_options(self.timeout))
                client = self._sync
        return client

    async def _aclient(self) -> Any:
        """The asyncio client for the running loop, ready for concurrent use: an asyncio
        cluster client (built or given) first learns the cluster's layout alone, as redis-py's
        breaks connections when many commands find it uninitialized at once."""
        if self._target is None:
            if self._agiven is None:
                raise self._missing("aclient=", "blocking")
            client = self._agiven
        else:
            loop = asyncio.get_running_loop()
            client = self._async.get(loop)
            if client is None:
                client = self._async[loop] = connect(
                    self._target, client_options(self.timeout, asyncio=True), asyncio=True
                )
        if self._ready.get(client) is None:
            await self._initialize(client)
        return client

    async def _initialize(self, client: Any) -> None:
        if not is_async_cluster(client):
            self._ready[client] = True
            return
        lock = self._initializing.setdefault(client, asyncio.Lock())
        async with lock:
            if self._ready.get(client) is None:
                await client.initialize()
                self._ready[client] = True

    def _guard(self, what: str, failing: tuple[type[BaseException], ...] = ()) -> Guarded:
        """One exchange with the server under the breaker (:class:`Guarded`): Redis errors,
        and the socket's, become :class:`StoreUnavailable`. Usable around ``await`` too.
        ``failing``: errors of keysentry's own that count as the server's failure."""
        return Guarded(self.breaker, self.kind, what, self._errors, failing=failing)

    def close(self) -> None:
        """Close the blocking client keysentry built (not one given). A later call builds a
        new one."""
        with self._lock:
            client, self._sync = self._sync, None
        if client is not None:
            for sentinel in sentinels_of(client):
                sentinel.close()
            client.close()

    async def aclose(self) -> None:
        """Close the asyncio client keysentry built for the running loop (not one given)."""
        client = self._async.pop(asyncio.get_running_loop(), None)
        if client is not None:
            for sentinel in sentinels_of(client):
                await sentinel.aclose()
            await client.aclose()

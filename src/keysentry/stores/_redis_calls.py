"""The Redis calls the Redis store's steps ask for, as values, and the two ways to make them.

A step of :mod:`._redis_steps` is a generator: it yields a call (:class:`Command`,
:class:`Script`, :class:`Batch`, :class:`Spread`, :class:`Scan`, :class:`More`) and receives
its reply. :func:`call` makes one on a blocking redis-py client, :func:`acall` on an asyncio
one; nothing else differs between the store's two faces, so each multi-step write is written
once, free of I/O (as h11 writes HTTP).

Many script calls at once (:class:`Spread`) need care on a cluster: redis-py's cluster
pipeline refuses ``EVALSHA``. The blocking face sends each node its share in a pipeline of
that node's own client, which loads the scripts first (a call the node redirects is then
made alone through the cluster client, which follows it), so a node that is down fails its
own calls only; the asyncio face makes the calls concurrently through the cluster client, a
bounded number at a time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import AsyncIterator, Iterator, Mapping
from itertools import islice
from typing import Any, TypeAlias

from .._redis import LuaScript, is_async_cluster

__all__ = ["Batch", "Call", "Command", "More", "Scan", "Script", "Spread", "acall", "call"]

#: Script calls an asyncio cluster client has in flight at once for one :class:`Spread`.
CONCURRENCY = 32

Errors: TypeAlias = "tuple[type[BaseException], ...]"


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Command:
    """A redis-py client method by name (``Command("zadd", (name, {id: 0}))``)."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Script:
    """One of the store's Lua scripts, on keys of one hash slot."""

    lua: LuaScript
    keys: tuple[str, ...]
    args: tuple[Any, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Batch:
    """Commands (no scripts) in one non-transactional pipeline (a cluster client sends each
    node its share); the reply is the list of their replies. The first error is raised."""

    commands: tuple[Command, ...]


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Spread:
    """Script calls, each on one slot, made together; the reply is the list of their
    replies. With ``errors``, a failed call's reply is its exception (the step learns which
    calls were made, and nothing is raised); without, the first error is raised."""

    scripts: tuple[Script, ...]
    errors: bool = False


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Scan:
    """The names matching a glob pattern, on every master of a cluster: the reply is a
    cursor for :class:`More`."""

    match: str
    count: int = 500


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class More:
    """The next names (at most ``n``) of a :class:`Scan`'s cursor; none when it is done."""

    cursor: Any
    n: int = 500


Call: TypeAlias = "Command | Script | Batch | Spread | Scan | More"


@functools.cache
def _alone() -> tuple[type[BaseException], ...]:
    """Replies in a node's pipeline that the call answers differently when made alone
    through the cluster client: redirections, and a server without the script."""
    from redis.exceptions import AskError, ClusterDownError, NoScriptError, TryAgainError

    return (AskError, ClusterDownError, NoScriptError, TryAgainError)  # MovedError is an AskError


def _queue(pipe: Any, scripts: list[Script]) -> int:
    """Queue the calls in a pipeline, each script loaded first (``SCRIPT LOAD`` is
    idempotent; in the same pipeline it costs no round trip), so ``EVALSHA`` cannot miss
    where a ``NOSCRIPT`` reply cannot be retried call by call; the number of loads queued."""
    loads = sorted({s.lua for s in scripts}, key=lambda lua: lua.name)
    for lua in loads:
        pipe.script_load(lua.text)
    for s in scripts:
        s.lua.queue(pipe, s.keys, s.args)
    return len(loads)


def _first_error(replies: list[Any]) -> list[Any]:
    for reply in replies:
        if isinstance(reply, BaseException):
            raise reply
    return replies


# -- blocking ----------------------------------------------------------------------------------


def call(client: Any, c: Call, errors: Errors) -> Any:
    """Make one call on a blocking client; ``errors`` are the driver's."""
    if isinstance(c, Script):
        return c.lua.run(client, c.keys, c.args)
    if isinstance(c, Command):
        return getattr(client, c.method)(*c.args, **c.kwargs)
    if isinstance(c, Batch):
        with client.pipeline(transaction=False) as pipe:
            for command in c.commands:
                getattr(pipe, command.method)(*command.args, **command.kwargs)
            return pipe.execute()
    if isinstance(c, Spread):
        replies = _spread(client, c.scripts, errors)
        return replies if c.errors else _first_error(replies)
    if isinstance(c, Scan):
        return client.scan_iter(match=c.match, count=c.count)
    cursor: Iterator[bytes] = c.cursor
    return list(islice(cursor, c.n))


def _spread(client: Any, scripts: tuple[Script, ...], errors: Errors) -> list[Any]:
    replies: list[Any] = [None] * len(scripts)
    for target, indexes in _by_node(client, scripts, errors):
        answers: list[Any] = [None] * len(indexes)
        if target is not None:
            try:
                with target.pipeline(transaction=False) as pipe:
                    loads = _queue(pipe, [scripts[i] for i in indexes])
                    answers = pipe.execute(raise_on_error=False)[loads:]
            except errors as exc:
                answers = [exc] * len(indexes)
        for i, answer in zip(indexes, answers, strict=True):
            if target is None or isinstance(answer, _alone()):
                try:  # through the cluster client, which follows a redirection
                    answer = scripts[i].lua.run(client, scripts[i].keys, scripts[i].args)
                except errors as exc:
                    answer = exc
            replies[i] = answer
    return replies


def _by_node(
    client: Any, scripts: tuple[Script, ...], errors: Errors
) -> list[tuple[Any, list[int]]]:
    """Each node's client with the indexes of the calls whose slot it serves, as the cluster
    client knows it now (one server: the client itself, with every call; None for calls
    whose slot the client cannot place, to be made alone through it)."""
    manager = getattr(client, "nodes_manager", None)
    if manager is None or not hasattr(client, "get_redis_connection"):
        return [(client, list(range(len(scripts))))]
    from redis.crc import key_slot

    groups: dict[str, tuple[Any, list[int]]] = {}
    for i, s in enumerate(scripts):
        try:
            node = manager.get_node_from_slot(key_slot(s.keys[0].encode()))
            target, name = client.get_redis_connection(node), str(node.name)
        except errors:  # a slot no master serves now, as far as the client knows
            target, name = None, ""
        groups.setdefault(name, (target, []))[1].append(i)
    return list(groups.values())


# -- asyncio -----------------------------------------------------------------------------------


async def acall(client: Any, c: Call, errors: Errors) -> Any:
    """:func:`call` on an asyncio client."""
    if isinstance(c, Script):
        return await c.lua.arun(client, c.keys, c.args)
    if isinstance(c, Command):
        return await getattr(client, c.method)(*c.args, **c.kwargs)
    if isinstance(c, Batch):
        async with client.pipeline(transaction=False) as pipe:
            for command in c.commands:
                getattr(pipe, command.method)(*command.args, **command.kwargs)
            return await pipe.execute()
    if isinstance(c, Spread):
        if is_async_cluster(client):
            replies = await _aspread_cluster(client, c.scripts, errors)
        else:
            replies = await _aspread(client, c.scripts, errors)
        return replies if c.errors else _first_error(replies)
    if isinstance(c, Scan):
        return client.scan_iter(match=c.match, count=c.count)
    cursor: AsyncIterator[bytes] = c.cursor
    names: list[bytes] = []
    async for name in cursor:
        names.append(name)
        if len(names) == c.n:
            break
    return names


async def _aspread(client: Any, scripts: tuple[Script, ...], errors: Errors) -> list[Any]:
    try:
        async with client.pipeline(transaction=False) as pipe:
            loads = _queue(pipe, list(scripts))
            replies: list[Any] = (await pipe.execute(raise_on_error=False))[loads:]
    except errors as exc:
        return [exc] * len(scripts)
    for i, reply in enumerate(replies):
        if isinstance(reply, _alone()):
            s = scripts[i]
            try:
                replies[i] = await s.lua.arun(client, s.keys, s.args)
            except errors as exc:
                replies[i] = exc
    return replies


async def _aspread_cluster(client: Any, scripts: tuple[Script, ...], errors: Errors) -> list[Any]:
    room = asyncio.Semaphore(CONCURRENCY)

    async def one(s: Script) -> Any:
        async with room:
            try:
                return await s.lua.arun(client, s.keys, s.args)
            except errors as exc:
                return exc

    return list(await asyncio.gather(*(one(s) for s in scripts)))

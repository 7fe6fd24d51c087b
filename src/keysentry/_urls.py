"""URLs of backends, as the CLI, the demo and configuration files name them: their scheme, a
query parameter taken out, and how to show one (or a message that may quote one) without its
secrets.

The stores, the limiter and the invalidator all import it; it imports none of them, and no
driver until a URL must be parsed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, unquote_plus, urlencode, urlsplit

__all__ = [
    "MASK",
    "REDIS_SCHEMES",
    "SQL_SCHEMES",
    "RedisURL",
    "read_redis_url",
    "safe_url",
    "scheme_of",
    "scrub",
    "take_param",
]


#: Schemes of the SQL store (``stores/sql.py``, which imports SQLAlchemy only when used),
#: with or without a ``+driver``; the store refuses drivers it does not speak.
SQL_SCHEMES = frozenset({"sqlite", "postgresql", "postgres"})
#: Schemes of one Redis server, as redis-py reads them: TCP, TLS, a Unix socket.
SINGLE_REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})
#: Schemes of several servers, as the ``limits`` library writes them: a Redis Cluster by its
#: startup nodes, or the master Sentinel names (see :func:`read_redis_url`).
MULTI_REDIS_SCHEMES = frozenset({"redis+cluster", "redis+sentinel"})
#: Every scheme keysentry's Redis parts (store, limiter, invalidator) take.
REDIS_SCHEMES = SINGLE_REDIS_SCHEMES | MULTI_REDIS_SCHEMES
#: What stands in for a secret.
MASK = "***"

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")
#: Query parameters whose value is taken for a secret (``password``, ``sslpassword``,
#: ``auth_token``, ``client_secret``...), by their decoded name, in any case.
_SECRET_NAME = re.compile(r"pass|pwd|secret|token|credential|api[-_]?key", re.IGNORECASE)
#: A ``name=`` that may start a parameter: at the start, or after ``?``, ``&``, ``;`` or a
#: space (libpq's ``key=value`` strings), wherever it is: a password may hold a raw ``?``.
_PARAM = re.compile(r"(?:^|(?<=[?&;\s]))([^=&;?#\s]+)=")
#: Where a parameter's value ends: an ``&`` that starts another ``name=``. A lone ``&`` may
#: belong to the value, as the writer meant it: kept in the mask.
_VALUE_END = re.compile(r"&(?=[^=&;?#\s]+=)")
#: Where parsers cut a URL; a part of a secret between two of them may show up on its own in
#: a parser's message (``Port could not be cast to integer value as 'Le'``).
_CUTS = re.compile(r"[/?#@:&;=\[\]\s]")


def scheme_of(url: str) -> str | None:
    """The URL's scheme in lower case; None unless it starts with ``scheme://``."""
    found = _SCHEME.match(url)
    return found.group(1).lower() if found else None


def take_param(url: str, name: str) -> tuple[str, str | None]:
    """``url`` without the query parameter ``name``, and its value (None when absent)."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    found = [v for k, v in pairs if k == name]
    if not found:
        return url, None
    rest = urlencode([(k, v) for k, v in pairs if k != name])
    return parts._replace(query=rest).geturl(), found[-1]


def take_query_param(url: str, name: str) -> tuple[str, str | None]:
    """:func:`take_param`, reading the query where the connecting parsers do: after the
    userinfo's last ``@``, so that a ``?`` or ``#`` in a password is not taken for it."""
    authority = url.find("://") + 3 if "://" in url else 0
    at = url.rfind("@", authority)
    start = at + 1 if at >= 0 else authority
    mark = url.find("?", start)
    if mark < 0:
        return url, None
    end = url.find("#", mark)
    end = len(url) if end < 0 else end
    pairs = parse_qsl(url[mark + 1 : end], keep_blank_values=True)
    found = [value for key, value in pairs if key == name]
    if not found:
        return url, None
    rest = urlencode([(key, value) for key, value in pairs if key != name])
    return url[:mark] + (f"?{rest}" if rest else "") + url[end:], found[-1]


# -- Redis URLs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisURL:
    """What a Redis URL names, read by :func:`read_redis_url`; drivers are not involved."""

    #: ``redis``, ``rediss``, ``unix``, ``redis+cluster`` or ``redis+sentinel``.
    scheme: str
    #: The URL without ``?namespace=``: what redis-py reads for the one-server schemes.
    url: str
    #: The ``?namespace=`` parameter, if any: the prefix of keysentry's Redis keys.
    namespace: str | None
    #: Cluster startup nodes, or the Sentinels, as ``(host, port)``; empty for one server.
    nodes: tuple[tuple[str, int], ...] = ()
    #: The Sentinel service (the master's name); None unless ``redis+sentinel``.
    service: str | None = None
    #: The database of a Sentinel-managed master; a cluster has only 0.
    db: int | None = None
    username: str | None = None
    password: str | None = None
    #: The query string left after ``namespace`` is taken out, for redis-py to read.
    query: str = ""

    def __repr__(self) -> str:  # the dataclass's would show the password
        return f"RedisURL({safe_url(self.url)!r})"


_DEFAULT_PORT = {"redis+cluster": 6379, "redis+sentinel": 26379}


def read_redis_url(url: str) -> RedisURL:
    """Read a Redis URL in the ``limits`` library's conventions; ``ValueError`` if it is not
    one (the message may quote the URL: :func:`scrub` it).

    * ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS),
      ``unix://[[user]:password@]/path/redis.sock[?db=N]``: one server, read by redis-py;
    * ``redis+cluster://[[user]:password@]host:port[,host:port...]``: a Redis Cluster by
      its startup nodes (any of them will do; the rest are discovered);
    * ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``: the
      master the Sentinels name ``service``. The password is the master's and, as in
      ``limits``, the Sentinels' too.

    In the two multi-server forms a password may stand alone (``redis+sentinel://secret@...``,
    as ``limits`` documents it as well as ``:secret@``), and the userinfo ends at the last
    ``@``, so a password may hold ``/``, ``?``, ``@``; percent-encoding is decoded. Ports
    default to 6379 (cluster) and 26379 (Sentinel). ``?namespace=`` is taken out of every form;
    the other query parameters are left for redis-py (``socket_timeout=``,
    ``health_check_interval=``...).
    """
    scheme = scheme_of(url)
    if scheme not in REDIS_SCHEMES:
        raise ValueError("the scheme is none of " + ", ".join(sorted(REDIS_SCHEMES)))
    if scheme in SINGLE_REDIS_SCHEMES:
        url, namespace = take_param(url, "namespace")
        return RedisURL(scheme, url, namespace)
    # Read by hand, not by urllib: the userinfo ends at the LAST '@' (as the mask reads it),
    # and a password may hold what urllib would stop at ('/', '?', '[').
    authority = len(scheme) + 3
    at = url.rfind("@", authority)
    userinfo = url[authority:at] if at >= 0 else None
    start = at + 1 if at >= 0 else authority  # of the hosts
    rest = url[start:].partition("#")[0]
    rest, _, query = rest.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    names = [value for name, value in pairs if name == "namespace"]
    namespace = names[-1] if names else None
    if names:
        query = urlencode([(name, value) for name, value in pairs if name != "namespace"])
        url = url[: start + len(rest)] + (f"?{query}" if query else "")
    hosts, _, path = rest.partition("/")
    username = password = None
    if userinfo is not None:
        user, colon, secret = userinfo.partition(":")
        if colon:
            username, password = unquote(user) or None, unquote(secret) or None
        else:
            password = unquote(user) or None
    nodes = tuple(_node(text, _DEFAULT_PORT[scheme]) for text in hosts.split(","))
    parts = [unquote(p) for p in path.split("/") if p]
    service: str | None = None
    db: int | None = None
    if scheme == "redis+sentinel":
        if not parts or len(parts) > 2:
            raise ValueError("a Sentinel URL names its service: .../service_name[/db]")
        service = parts[0]
        if len(parts) == 2:
            db = _number(parts[1], "database")
    elif parts and (len(parts) > 1 or _number(parts[0], "database") != 0):
        raise ValueError("a Redis Cluster has database 0 only")
    return RedisURL(scheme, url, namespace, nodes, service, db, username, password, query)


def _node(text: str, default_port: int) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):  # [IPv6]:port
        host, bracket, port = text[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            raise ValueError("a bracketed IPv6 address must end with ']' or ']:port'")
        port = port[1:]
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise ValueError("every node needs a host (host:port, comma-separated)")
    return unquote(host), _number(port, "port") if port else default_port


def _number(text: str, what: str) -> int:
    if not text.isdigit() or (what == "port" and not 0 < int(text) < 65536):
        raise ValueError(f"the {what} is not a number in range")
    return int(text)


# -- secrets in URLs -----------------------------------------------------------------------------
#
# Parsers disagree on where a URL's password ends. SQLAlchemy's make_url takes everything from
# the first ':' to the next '@' (so '/', '?', '#' may stand in it raw); urllib, and redis-py on
# top of it, end the authority at the first '/', '?' or '#' and the password at the last '@'
# before that; a person may have meant a password with any of these in it. So the mask covers
# what each of them could read as the password: everything from the first ':' after '://' to
# the LAST '@' of the URL (more than any parser, never less); and the value of every query
# parameter whose name says it is a secret, found after any '?', '&' or ';' (a raw '?' in a
# password starts a query for urllib, not for SQLAlchemy). The text outside the masks is the
# URL as given, so what is shown is what was typed. The parser that will connect (SQLAlchemy for
# SQL schemes, redis-py for Redis ones, imported only then and only when installed) then reads
# the masked URL: should it still find a password or a secret parameter that is not the mask,
# nothing but the scheme is shown.


def _secret_spans(url: str) -> list[tuple[int, int]]:
    """Sorted, disjoint ``(start, end)`` ranges of ``url`` that may hold a secret."""
    found = _SCHEME.match(url)
    start = found.end() if found else 0
    spans: list[tuple[int, int]] = []
    at = url.rfind("@", start)
    if at >= 0:
        colon = url.find(":", start, at)
        if colon >= 0:
            spans.append((colon + 1, at))
        elif found is not None and found.group(1).lower() in MULTI_REDIS_SCHEMES:
            # There, a userinfo without ':' is a password (read_redis_url).
            spans.append((start, at))
    for param in _PARAM.finditer(url, start):
        # parse_qsl (SQLAlchemy's and redis-py's reader) decodes names: 'pass%77ord' counts.
        if _SECRET_NAME.search(unquote_plus(param.group(1))):
            stop = _VALUE_END.search(url, param.end())
            spans.append((param.end(), stop.start() if stop else len(url)))
    merged: list[tuple[int, int]] = []
    for begin, end in sorted(spans):
        if merged and begin <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((begin, end))
    return merged


def _read_secrets(url: str) -> list[str] | None:
    """The secrets the library that connects to ``url`` reads from it: the password and the
    values of secret-named query parameters. None when that library is not installed, the
    scheme is not one it reads, or it cannot parse ``url``."""
    scheme = scheme_of(url)
    if scheme is None:
        return None
    base = scheme.partition("+")[0]
    found: list[object] = []
    try:
        if base in SQL_SCHEMES:
            try:
                from sqlalchemy.engine import make_url
            except ImportError:
                return None
            parsed = make_url(url)
            found.append(parsed.password)
            for name, value in parsed.query.items():
                if _SECRET_NAME.search(name):
                    found += [value] if isinstance(value, str) else list(value)
        elif scheme in MULTI_REDIS_SCHEMES:
            read = read_redis_url(url)
            found.append(read.password)
            found += [v for k, v in parse_qsl(read.query) if _SECRET_NAME.search(k)]
        elif base in REDIS_SCHEMES:
            try:
                from redis.connection import parse_url
            except ImportError:
                return None
            parse: Callable[[str], dict[str, Any]] = parse_url  # untyped in redis-py
            # rediss+... and the like: the authority and the query read the same.
            kwargs = parse(base + url[len(scheme) :])
            found += [v for k, v in kwargs.items() if k == "password" or _SECRET_NAME.search(k)]
        else:
            return None
    except Exception:  # the library cannot parse it, so it cannot connect with it either
        return None
    return [str(value) for value in found if value is not None and str(value) != ""]


def safe_url(url: str) -> str:
    """``url`` without its secrets, for ``repr()``, logs, errors and the demo's banner.

    The password in the URL's userinfo, whatever characters it holds, and the value of every
    query parameter named for a secret (``password``, ``sslpassword``, ``token``...) become
    ``***``; the rest is shown as given. Never raises: when in doubt, less is shown.
    """
    try:
        spans = _secret_spans(url)
        parts: list[str] = []
        last = 0
        for begin, end in spans:
            parts += (url[last:begin], MASK)
            last = end
        parts.append(url[last:])
        shown = "".join(parts)
        if any(value != MASK for value in _read_secrets(shown) or ()):
            scheme = scheme_of(url)
            return f"{scheme}://{MASK}" if scheme else MASK
        return shown
    except Exception:
        return MASK


def scrub(message: str, url: str) -> str:
    """``message`` (a driver's, a parser's) without anything of ``url``'s secrets: each one
    as written, decoded and encoded, and each part of it between two of the characters that
    parsers cut URLs at. Parts under four characters are taken out only where they stand
    alone (``'Le'``, not the "le" of "unavailable"); single characters are left. Never
    raises."""
    try:
        fragments: set[str] = set(_read_secrets(url) or ())
        for begin, end in _secret_spans(url):
            written = url[begin:end]
            for form in {written, unquote(written), unquote_plus(written)}:
                fragments |= {form, quote(form, safe=""), quote_plus(form)}
                fragments.update(_CUTS.split(form))
        for fragment in sorted(fragments, key=len, reverse=True):
            if len(fragment) < 2 or fragment == MASK:
                continue
            if len(fragment) >= 4:
                message = message.replace(fragment, MASK)
            else:
                alone = rf"(?<!\w){re.escape(fragment)}(?!\w)"
                message = re.sub(alone, MASK, message)
        return message
    except Exception:
        return MASK

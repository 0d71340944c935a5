"""Redis clients from URLs: one Redis, a Redis Cluster, or the primary a set of Sentinels
names; synchronous (backfill, verify, status) and asyncio (the worker).

URL forms (:func:`parse_redis_url`):

* ``redis://[[user]:password@]host[:port][/db]``, ``rediss://…`` (TLS), ``unix:///path?db=N`` —
  one Redis, as redis-py's own ``from_url`` reads them (query options included).
* ``redis+cluster://[[user]:password@]host[:port][,host[:port]…][/0]`` (``rediss+cluster://``
  for TLS) — a Redis Cluster. The hosts are startup nodes, any of its nodes (the client learns
  the rest with ``CLUSTER SLOTS``); list several so that one being down at start does not
  matter. A cluster has database 0 only.
* ``redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/service[/db][?sentinel_password=…]``
  (``rediss+sentinel://`` for TLS to the data nodes) — the primary that the sentinels name for
  ``service``; the port defaults to 26379. The password in front is the data nodes' (``AUTH``),
  ``sentinel_password`` (percent-encoded) the sentinels' own, if they have one.

The asyncio clients leave retries to their caller (``Retry(NoBackoff(), 0)``): the worker has
one retry loop that logs what it holds (gearsync.redis_errors.until_written). The synchronous
ones (backfill, verify) keep redis-py's own retries — a cluster client reads the topology
again after a failover — unless told not to (``status``, which must answer quickly).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.asyncio.sentinel as aiosentinel
import redis.cluster
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from .connections import connect_mysql, redact
from .constants import DEFAULT_REDIS_PORT, DEFAULT_SENTINEL_PORT

__all__ = ["RedisTarget", "parse_redis_url", "sync_client", "async_client", "is_cluster", "endpoints", "SINGLE",
           "CLUSTER", "SENTINEL", "SCHEMES"]

SINGLE, CLUSTER, SENTINEL = "single", "cluster", "sentinel"
#: scheme → (kind, TLS)
SCHEMES = {
    "redis": (SINGLE, False), "rediss": (SINGLE, True), "unix": (SINGLE, False),
    "redis+cluster": (CLUSTER, False), "rediss+cluster": (CLUSTER, True),
    "redis+sentinel": (SENTINEL, False), "rediss+sentinel": (SENTINEL, True),
}


@dataclass(frozen=True)
class RedisTarget:
    """What a Redis URL names. ``nodes`` are the cluster's startup nodes or the sentinels
    (empty for one Redis, whose URL redis-py reads itself)."""

    kind: str
    url: str
    tls: bool = False
    nodes: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None

    def __str__(self) -> str:
        return redact(self.url)


def _hosts(netloc: str, default_port: int, url: str) -> tuple[tuple[str, int], ...]:
    hosts = []
    for item in netloc.split(","):
        item = item.strip()
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port_text = item.partition(":")
        if not host:
            raise ValueError(f"Redis URL {redact(url)!r}: empty host in {netloc!r}")
        if port_text and not port_text.isdigit():
            raise ValueError(f"Redis URL {redact(url)!r}: port {port_text!r} is not a number")
        hosts.append((host, int(port_text) if port_text else default_port))
    return tuple(hosts)


def parse_redis_url(url: str) -> RedisTarget:
    """What ``url`` names; ValueError (with the password masked) when it is not a Redis URL."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ValueError(f"Redis URL {redact(url)!r}: expected one of "
                         f"{', '.join(s + '://' for s in SCHEMES)}")
    kind, tls = SCHEMES[scheme]
    if kind == SINGLE:
        return RedisTarget(SINGLE, url, tls)
    rest = url.split("://", 1)[1]
    netloc, slash, tail = rest.partition("/")
    path, _, query = tail.partition("?")
    if "?" in netloc:  # no path: redis+cluster://h:1?x=y
        netloc, _, query = netloc.partition("?")
    creds, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, pw = creds.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    options = parse_qs(query, keep_blank_values=True)
    parts = [unquote(p) for p in path.split("/") if p] if slash else []
    if kind == CLUSTER:
        if options:
            raise ValueError(f"Redis URL {redact(url)!r}: unknown option(s) {', '.join(sorted(options))}")
        if parts not in ([], ["0"]):
            raise ValueError(f"Redis URL {redact(url)!r}: a Redis Cluster has database 0 only")
        return RedisTarget(CLUSTER, url, tls, _hosts(hosts, DEFAULT_REDIS_PORT, url), username=username,
                           password=password)
    unknown = sorted(set(options) - {"sentinel_password"})
    if unknown:
        raise ValueError(f"Redis URL {redact(url)!r}: unknown option(s) {', '.join(unknown)}")
    if not parts or len(parts) > 2:
        raise ValueError(f"Redis URL {redact(url)!r}: expected redis+sentinel://host[:port][,…]/service[/db]")
    if len(parts) == 2 and not parts[1].isdigit():
        raise ValueError(f"Redis URL {redact(url)!r}: database {parts[1]!r} is not a number")
    sentinel_password = options["sentinel_password"][0] if "sentinel_password" in options else None
    return RedisTarget(SENTINEL, url, tls, _hosts(hosts, DEFAULT_SENTINEL_PORT, url), parts[0],
                       int(parts[1]) if len(parts) == 2 else 0, username, password, sentinel_password)


def _auth(t: RedisTarget) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if t.username:
        kw["username"] = t.username
    if t.password is not None:
        kw["password"] = t.password
    if t.tls:
        kw["ssl"] = True
    return kw


def _sentinel_kwargs(t: RedisTarget, socket_timeout: float | None, connect_timeout: float | None) -> dict[str, Any]:
    kw: dict[str, Any] = {"socket_timeout": socket_timeout, "socket_connect_timeout": connect_timeout}
    if t.sentinel_password is not None:
        kw["password"] = t.sentinel_password
    return kw


def sync_client(url: str, *, socket_timeout: float | None = 10.0, connect_timeout: float | None = 2.0,
                retries: bool = True) -> Any:
    """A synchronous client for ``url``: ``redis.Redis`` (one Redis, or the primary of a
    Sentinel service, found again after a failover) or ``redis.cluster.RedisCluster``;
    ``retries=False``: none (one answer or an error)."""
    t = parse_redis_url(url)
    common: dict[str, Any] = {"socket_timeout": socket_timeout, "socket_connect_timeout": connect_timeout}
    if not retries:
        common["retry"] = Retry(NoBackoff(), 0)
    if t.kind == SINGLE:
        return redis.Redis.from_url(url, **common)
    if t.kind == CLUSTER:
        return redis.cluster.RedisCluster(
            startup_nodes=[redis.cluster.ClusterNode(h, p) for h, p in t.nodes], **common, **_auth(t))
    sentinel = redis.sentinel.Sentinel(list(t.nodes), sentinel_kwargs=_sentinel_kwargs(t, socket_timeout,
                                                                                       connect_timeout))
    assert t.service is not None
    return sentinel.master_for(t.service, db=t.db, **common, **_auth(t))


def async_client(url: str, *, socket_timeout: float | None = 10.0, connect_timeout: float | None = 2.0) -> Any:
    """The asyncio twin of :func:`sync_client` (``redis.asyncio.Redis`` or
    ``redis.asyncio.RedisCluster``); no retries of its own."""
    t = parse_redis_url(url)
    common: dict[str, Any] = {"socket_timeout": socket_timeout, "socket_connect_timeout": connect_timeout}
    if t.kind == SINGLE:
        return aioredis.Redis.from_url(url, retry=AsyncRetry(NoBackoff(), 0), retry_on_error=[], **common)
    if t.kind == CLUSTER:
        return aiocluster.RedisCluster(
            startup_nodes=[aiocluster.ClusterNode(h, p) for h, p in t.nodes], retry=AsyncRetry(NoBackoff(), 0),
            **common, **_auth(t))
    sentinel = aiosentinel.Sentinel(list(t.nodes), sentinel_kwargs=_sentinel_kwargs(t, socket_timeout,
                                                                                    connect_timeout))
    assert t.service is not None
    return sentinel.master_for(t.service, db=t.db, retry=AsyncRetry(NoBackoff(), 0), retry_on_error=[],
                               **common, **_auth(t))


def is_cluster(client: Any) -> bool:
    """True for a Redis Cluster client (sync or asyncio): its version keys are tagged
    (gearsync.keys.version_key) and its multi-key commands are split per slot."""
    return isinstance(client, (redis.cluster.RedisCluster, aiocluster.RedisCluster))


@contextlib.contextmanager
def endpoints(mysql_url: str | None, redis_url: str, what: str) -> Iterator[tuple[Any, Any]]:
    """(MySQL connection, synchronous Redis client) for ``what`` (a command name: backfill,
    verify, a table's refresh), closed after."""
    if not mysql_url:
        raise ValueError(f"{what} needs a MySQL URL ([mysql] url in the config, --mysql or GEARSYNC_MYSQL_URL)")
    conn = connect_mysql(mysql_url)
    try:
        client = sync_client(redis_url)
        try:
            yield conn, client
        finally:
            client.close()
    finally:
        conn.close()

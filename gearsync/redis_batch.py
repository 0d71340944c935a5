"""One pipelined round trip of commands to one Redis, a Sentinel's primary, or a Redis Cluster
(asyncio), and the wait for replicas that makes a write survive a failover.

:class:`Pipe` runs commands that each touch one hash slot (the caller groups multi-key
commands per slot: :meth:`Pipe.group`, and names each command's slot) and returns the answers
in order, errors included.

* One Redis / Sentinel: redis-py's pipeline, one connection; with ``replicas`` > 0 it ends
  with ``WAIT replicas timeout`` on that same connection.
* Cluster: each command goes to the primary that owns its slot in the client's map; all of a
  node's commands are packed into one write on one of its connections, ending with ``WAIT``
  when ``replicas`` > 0; all nodes at once. (redis-py's cluster pipeline cost about twice the
  time per command here; only its map of slots and its node connections are used.) A command
  answered ``MOVED`` (the slot has a new owner: a resharding or a failover) makes the map be
  read again (``CLUSTER SLOTS``) and goes to the new owner; ``ASK`` (the slot is migrating and
  the key already moved) goes to the node named, after ``ASKING`` on the same connection;
  ``TRYAGAIN`` (the keys of one call are split by a migration) is sent again a moment later —
  a few rounds, each ending in its own WAITs, so every write of the batch is covered by a
  WAIT on the connection that made it.

WAIT counts the replicas that acknowledged the connection's writes. A batch is written only
when every WAIT answered ``replicas``; else :class:`SinkUnavailable` (the caller replays the
batch: every write gearsync makes is idempotent). So when a primary dies and a replica that
acknowledged is promoted, nothing acknowledged is lost. Connection errors, CLUSTERDOWN and a
slot nobody covers also raise SinkUnavailable, after the cluster's map was read again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Sequence, TypeVar

from redis.exceptions import (AskError, ClusterCrossSlotError, ClusterDownError, MovedError, RedisClusterException,
                              ResponseError, SlotNotCoveredError, TryAgainError)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .keys import key_slot
from .redis_clients import is_cluster
from .redis_errors import SinkUnavailable

__all__ = ["Pipe", "pack"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError, ClusterDownError, SlotNotCoveredError)
#: What a plain client gets from a cluster node: it will never pass without a cluster client.
_CLUSTER_ANSWERS = (MovedError, AskError, TryAgainError)
#: Rounds of redirections followed within one batch (then the batch is retried later).
ROUNDS = 5


def _arg(a: Any) -> bytes:
    if isinstance(a, (bytes, bytearray, memoryview)):
        return bytes(a)
    if isinstance(a, str):
        return a.encode("utf-8", "surrogatepass")
    return str(a).encode()


def pack(args: Sequence[Any] | bytes) -> bytes:
    """One command as RESP (an array of bulk strings); ``bytes`` are a command packed already
    (:func:`gearsync.versioned.pack_call`)."""
    if isinstance(args, bytes):
        return args
    parts = [b"*%d\r\n" % len(args)]
    append = parts.append
    for a in args:  # str and bytes inline (an MSET of a drain's batch: half the time of _arg each)
        b = a.encode("utf-8", "surrogatepass") if type(a) is str else a if type(a) is bytes else _arg(a)
        append(b"$%d\r\n" % len(b))
        append(b)
        append(b"\r\n")
    return b"".join(parts)


_ASKING = pack(("ASKING",))


class Pipe:
    """Pipelined commands on ``client`` (redis.asyncio.Redis or RedisCluster); with
    ``replicas`` > 0, a write is done once that many replicas of its primary have it (at most
    ``replica_timeout`` s of waiting per batch)."""

    def __init__(self, client: Any, replicas: int = 0, replica_timeout: float = 1.0) -> None:
        self.client = client
        self.cluster = is_cluster(client)
        self.replicas = int(replicas)
        self.replica_timeout_ms = max(1, int(replica_timeout * 1000))
        self.waits = 0          # WAITs answered
        self.waits_short = 0    # of them, answered by fewer replicas than asked
        self.redirects = 0      # cluster commands answered MOVED/ASK/TRYAGAIN and sent again
        self._logged_redirects = (0, 0.0)

    def group(self, keys: Sequence[T], key: Any = None) -> list[tuple[int | None, list[int]]]:
        """Indices of ``keys`` grouped so that each group can be one multi-key command, with
        its slot: one group per slot in a cluster (in order of first appearance, each in
        order), else one group (slot None). ``key`` maps an item to its Redis key."""
        if not keys:
            return []
        if not self.cluster:
            return [(None, list(range(len(keys))))]
        groups: dict[int, list[int]] = {}
        for i, item in enumerate(keys):
            groups.setdefault(key_slot(key(item) if key else item), []).append(i)  # type: ignore[arg-type]
        return list(groups.items())

    async def run(self, commands: Sequence[Sequence[Any] | bytes],
                  slots: Sequence[int | None] | None = None) -> list[Any]:
        """Send ``commands`` (each within one slot, ``slots[i]``: required by a cluster) in one
        pipelined round trip per node; the answers in order (an error answer is returned, not
        raised). Raises SinkUnavailable when Redis is unreachable, or the replicas did not
        acknowledge."""
        if not commands:
            return []
        if not self.cluster:
            replies = await self._run_pipeline(commands)
            moved = next((r for r in replies if isinstance(r, (*_CLUSTER_ANSWERS, ClusterCrossSlotError))), None)
            if moved is not None:
                raise SinkUnavailable(f"{type(moved).__name__}: {moved} (this Redis is a cluster node: use a "
                                      "redis+cluster:// URL)")
            down = next((r for r in replies if isinstance(r, _UNREACHABLE)), None)
            if down is not None:
                raise SinkUnavailable(f"{type(down).__name__}: {down}")
            if self.replicas > 0:
                self._check_wait(replies.pop(), "the primary")
            return replies
        if slots is None or any(s is None for s in slots):
            raise ValueError("a cluster's commands need their slots")
        replies, waits = await self._run_routed(commands, slots)  # type: ignore[arg-type]
        down = next((r for r in [*replies, *waits.values()] if isinstance(r, _UNREACHABLE)), None)
        if down is not None:
            await self._refresh()
            raise SinkUnavailable(f"{type(down).__name__}: {down}")
        for name, reply in waits.items():
            self._check_wait(reply, name)
        return replies

    async def _run_pipeline(self, commands: Sequence[Sequence[Any] | bytes]) -> list[Any]:
        """The commands on one connection of one Redis in one write, with WAIT at its end when
        asked; the answers (an error answer as its exception). Packed here, not by redis-py's
        pipeline: its per-argument encoding was a third of the worker's CPU in the drain."""
        pool = self.client.connection_pool
        try:
            conn = await pool.get_connection()
        except _UNREACHABLE as e:
            raise SinkUnavailable(f"{type(e).__name__}: {e}") from e
        data = [pack(c) for c in commands]
        if self.replicas > 0:
            data.append(pack(("WAIT", self.replicas, self.replica_timeout_ms)))
        replies: list[Any] = []
        try:
            await conn.send_packed_command(b"".join(data))
            for _ in data:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as e:
                    replies.append(e)
        except Exception as e:  # the connection broke mid-batch: what it applied is replayed as a no-op
            try:
                await conn.disconnect()
            except Exception as close_error:
                log.debug("disconnecting from redis: %r", close_error)
            if isinstance(e, _UNREACHABLE):
                raise SinkUnavailable(f"{type(e).__name__}: {e}") from e
            raise
        finally:
            await pool.release(conn)
        return replies

    def _check_wait(self, reply: Any, where: str) -> None:
        self.waits += 1
        if isinstance(reply, Exception):
            self.waits_short += 1
            raise SinkUnavailable(f"WAIT on {where}: {type(reply).__name__}: {reply}")
        if int(reply) < self.replicas:
            self.waits_short += 1
            raise SinkUnavailable(f"only {int(reply)} of {self.replicas} replicas of {where} acknowledged the "
                                  f"writes within {self.replica_timeout_ms} ms")

    # -- a cluster -------------------------------------------------------------------------------
    async def _run_routed(self, commands: Sequence[Sequence[Any] | bytes], slots: Sequence[int]
                          ) -> tuple[list[Any], dict[str, Any]]:
        """A cluster's commands (see the module): (answers, node → the answer of a WAIT that
        followed its writes; the shortest when a node took several rounds)."""
        await self._initialize()
        replies: list[Any] = [None] * len(commands)
        waits: dict[str, Any] = {}
        todo: list[tuple[int, str | None]] = [(i, None) for i in range(len(commands))]  # (command, ASK target)
        for attempt in range(ROUNDS):
            plan: dict[str, tuple[Any, list[tuple[int, bool]]]] = {}
            for i, ask in todo:
                node = self.client.get_node(node_name=ask) if ask else None
                if node is None:
                    try:
                        node = self.client.nodes_manager.get_node_from_slot(slots[i])
                    except SlotNotCoveredError as e:
                        await self._refresh()
                        raise SinkUnavailable(f"{type(e).__name__}: {e}") from e
                plan.setdefault(node.name, (node, []))[1].append((i, bool(ask) and node.name == ask))
            await asyncio.gather(*(self._send(node, items, commands, replies, waits) for node, items in
                                   plan.values()))
            todo = []
            moved = again = False
            for i in [i for _node, items in plan.values() for i, _ in items]:
                r = replies[i]
                if isinstance(r, MovedError):
                    todo.append((i, None))
                    moved = True
                elif isinstance(r, AskError):
                    todo.append((i, f"{r.host}:{r.port}"))
                elif isinstance(r, TryAgainError):
                    todo.append((i, None))
                    again = True
            if not todo:
                break
            self._count_redirects(len(todo))
            if moved:
                await self._refresh()
            if again:
                await asyncio.sleep(0.05 * (attempt + 1))
        return replies, waits

    async def _send(self, node: Any, items: list[tuple[int, bool]], commands: Sequence[Sequence[Any] | bytes],
                    replies: list[Any], waits: dict[str, Any]) -> None:
        """``items`` (command index, ASKING first?) on one connection of ``node``, then WAIT."""
        try:
            conn = node.acquire_connection()
        except Exception as e:  # its pool is full (MaxConnectionsError): the batch is retried
            full = RedisConnectionError(f"{node.name}: {type(e).__name__}: {e}")
            for i, _ in items:
                replies[i] = full
            waits[node.name] = full
            return
        data = [(_ASKING + pack(commands[i])) if asking else pack(commands[i]) for i, asking in items]
        if self.replicas > 0:
            data.append(pack(("WAIT", self.replicas, self.replica_timeout_ms)))
        try:
            await conn.send_packed_command(b"".join(data))
            for i, asking in items:
                if asking:
                    try:
                        await conn.read_response()
                    except ResponseError:
                        pass  # the command's own answer says what happened
                try:
                    replies[i] = await conn.read_response()
                except ResponseError as e:
                    replies[i] = e
            if self.replicas > 0:
                try:
                    reply: Any = await conn.read_response()
                except ResponseError as e:
                    reply = e
                prior = waits.get(node.name)
                if prior is None or isinstance(reply, Exception) or (
                        not isinstance(prior, Exception) and int(reply) < int(prior)):
                    waits[node.name] = reply
        except Exception as e:  # the node went away mid-batch (or its connection was closed under us)
            err = e if isinstance(e, _UNREACHABLE) else RedisConnectionError(f"{node.name}: {type(e).__name__}: {e}")
            for i, _ in items:
                if replies[i] is None or not isinstance(replies[i], Exception):
                    replies[i] = err
            waits[node.name] = err
            try:
                await conn.disconnect()
            except Exception as close_error:  # already broken
                log.debug("disconnecting from %s: %r", node.name, close_error)
        finally:
            node.release(conn)

    def _count_redirects(self, n: int) -> None:
        self.redirects += n
        logged, at = self._logged_redirects
        if time.monotonic() - at >= 10:
            log.info("redis cluster: %d commands redirected (MOVED, ASK, TRYAGAIN: slots moving or a failover) and "
                     "sent where the cluster says; %d in all", self.redirects - logged, self.redirects)
            self._logged_redirects = (self.redirects, time.monotonic())

    async def _initialize(self) -> None:
        """The cluster client's map of slots (read on first use)."""
        try:
            await self.client.initialize()
        except (*_UNREACHABLE, RedisClusterException) as e:
            raise SinkUnavailable(f"{type(e).__name__}: {e}") from e

    async def _refresh(self) -> None:
        """Read the map of slots again (a promoted replica, a moved slot); the node connections
        in use stay open (redis-py keeps the node objects it knows)."""
        try:
            await self.client.nodes_manager.initialize()
        except Exception as e:  # no node answers yet: the next try reads it again
            log.debug("redis cluster: reading the slots again failed: %r", e)

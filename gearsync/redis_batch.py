"""One pipelined round trip of commands to one Redis, a Sentinel's primary, or a Redis Cluster
(asyncio), and the wait for replicas that makes a write survive a failover.

:class:`Pipe` runs commands that each touch one hash slot (the caller groups multi-key
commands per slot: :meth:`Pipe.group`) and returns the answers in order, errors included.

* One Redis / Sentinel: one pipeline on one connection; with ``replicas`` > 0 it ends with
  ``WAIT replicas timeout`` on that same connection.
* Cluster: redis-py's cluster pipeline sends each node its commands on one connection, all
  nodes at once, and follows MOVED and ASK command by command. Every answer is read before
  the wait, so the writes sit in the replication streams of the primaries that took them
  (those the batch was routed to, or redirected to); then, with ``replicas`` > 0, every primary
  gets ``SET gearsync:sync:{<tag>} … ; WAIT replicas timeout`` on one connection (the marker
  key is in one of its own slots), and WAIT counts the replicas that have the stream up to the
  marker — so up to every write of the batch on that node.

A write is done only when every WAIT answered ``replicas``; else :class:`SinkUnavailable`
(the caller replays the batch: every write gearsync makes is idempotent). So when the
primary dies and a replica that acknowledged is promoted, nothing acknowledged is lost.
Connection errors, CLUSTERDOWN and a slot nobody covers also raise SinkUnavailable, after the
cluster client was told to read the topology again (``CLUSTER SLOTS``) on its next use.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence, TypeVar

from redis.exceptions import (AskError, ClusterDownError, MovedError, RedisClusterException, SlotNotCoveredError,
                              TryAgainError)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .keys import key_slot, sync_key
from .redis_clients import is_cluster
from .redis_errors import WORKER_ID, SinkUnavailable

__all__ = ["Pipe"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError, ClusterDownError, SlotNotCoveredError)
#: What a plain client gets from a cluster node: it will never pass without a cluster client.
_CLUSTER_ANSWERS = (MovedError, AskError, TryAgainError)


class Pipe:
    """Pipelined commands on ``client`` (redis.asyncio.Redis or RedisCluster); with
    ``replicas`` > 0, a write is done once that many replicas of its primary have it (at most
    ``replica_timeout`` s of waiting per batch)."""

    def __init__(self, client: Any, replicas: int = 0, replica_timeout: float = 1.0) -> None:
        self.client = client
        self.cluster = is_cluster(client)
        self.replicas = int(replicas)
        self.replica_timeout_ms = max(1, int(replica_timeout * 1000))
        self._marker_slot: dict[str, int] = {}
        self.waits = 0          # WAIT barriers run
        self.waits_short = 0    # of them, answered by fewer replicas than asked

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

    async def run(self, commands: Sequence[Sequence[Any]], slots: Sequence[int | None] | None = None) -> list[Any]:
        """Send ``commands`` (each within one slot: ``slots``, when the caller knows them) in one
        pipelined round trip per node; the answers in order (an error answer is returned, not
        raised). Raises SinkUnavailable when Redis is unreachable, or the replicas did not
        acknowledge."""
        if not commands:
            return []
        pipe = self.client.pipeline(transaction=False)
        if self.cluster and slots is not None:  # routed here: redis-py need not find each command's keys
            if self.client._initialize:
                await self._initialize()
            owner = self.client.nodes_manager.get_node_from_slot
            for args, slot in zip(commands, slots):
                if slot is None:
                    pipe.execute_command(*args)
                else:
                    pipe.execute_command(*args, target_nodes=owner(slot))
        else:
            for args in commands:
                pipe.execute_command(*args)
        wait = self.replicas > 0 and not self.cluster
        if wait:
            pipe.execute_command("WAIT", self.replicas, self.replica_timeout_ms)
        try:
            replies = list(await pipe.execute(raise_on_error=False))
        except _UNREACHABLE as e:
            await self._lost(e)
            raise SinkUnavailable(f"{type(e).__name__}: {e}") from e
        except RedisClusterException as e:  # no node answers CLUSTER SLOTS with a full map yet
            await self._lost(e)
            raise SinkUnavailable(f"{type(e).__name__}: {e}") from e
        finally:
            await pipe.reset()
        down = next((r for r in replies if isinstance(r, _UNREACHABLE)), None)
        if down is not None:
            await self._lost(down)
            raise SinkUnavailable(f"{type(down).__name__}: {down}")
        if not self.cluster:
            moved = next((r for r in replies if isinstance(r, _CLUSTER_ANSWERS)), None)
            if moved is not None:
                raise SinkUnavailable(f"{type(moved).__name__}: {moved} (this Redis is a cluster node: use a "
                                      "redis+cluster:// URL)")
        if wait:
            self._check_wait(replies.pop(), "the primary")
        elif self.replicas > 0:
            await self._barrier()
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

    def _slot_of(self, node: Any) -> int | None:
        """A slot ``node`` owns in the client's map (cached while it still does)."""
        cache = self.client.nodes_manager.slots_cache
        slot = self._marker_slot.get(node.name)
        if slot is not None and cache.get(slot) and cache[slot][0].name == node.name:
            return slot
        for s, owners in cache.items():
            if owners and owners[0].name == node.name:
                self._marker_slot[node.name] = s
                return int(s)
        return None

    async def _barrier(self) -> None:
        """``SET marker; WAIT`` on every primary, each pair on one connection (see the module)."""
        pipe = self.client.pipeline(transaction=False)
        nodes = []
        for node in self.client.get_primaries():
            slot = self._slot_of(node)
            if slot is None:  # a primary that owns no slot yet takes no writes but ASK-redirected ones
                continue
            nodes.append(node)
            pipe.execute_command("SET", sync_key(slot), WORKER_ID, "PX", 60000, target_nodes=node)
            pipe.execute_command("WAIT", self.replicas, self.replica_timeout_ms, target_nodes=node)
        try:
            replies = await pipe.execute(raise_on_error=False, allow_redirections=False)
        except _UNREACHABLE as e:
            await self._lost(e)
            raise SinkUnavailable(f"{type(e).__name__}: {e}") from e
        finally:
            await pipe.reset()
        for i, node in enumerate(nodes):
            marker = replies[2 * i]
            if isinstance(marker, Exception):  # MOVED: the map is stale; a node down
                await self._lost(marker)
                raise SinkUnavailable(f"WAIT on {node.name}: its marker write failed: {type(marker).__name__}: "
                                      f"{marker}")
            self._check_wait(replies[2 * i + 1], node.name)

    async def _initialize(self) -> None:
        try:
            await self.client.initialize()
        except _UNREACHABLE as e:
            await self._lost(e)
            raise SinkUnavailable(f"{type(e).__name__}: {e}") from e
        except RedisClusterException as e:
            await self._lost(e)
            raise SinkUnavailable(f"{type(e).__name__}: {e}") from e

    async def _lost(self, e: BaseException) -> None:
        """After a connection error or a stale map: a cluster client reads the topology again on
        its next use (a promoted replica, a moved slot)."""
        if self.cluster:
            log.debug("redis cluster: reading the topology again after %s", type(e).__name__)
            try:
                await self.client.aclose()
            except Exception as close_error:  # its sockets are already broken
                log.debug("closing cluster connections: %r", close_error)

"""The one module that writes Redis: a batch of changes in one pipelined round trip."""

from __future__ import annotations

import logging
from typing import Any, Sequence

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .payload import DELETE, SET, Change

__all__ = ["RedisSink", "SinkUnavailable"]

log = logging.getLogger(__name__)


class SinkUnavailable(Exception):
    """Redis could not be reached or did not answer; the batch was not (fully) applied."""


class RedisSink:
    """Apply :class:`Change` batches with SET/DEL in one pipeline (``transaction=False``).

    Replaying a batch after a failure is safe: SET and DEL are idempotent and a batch is
    replayed whole, in order.
    """

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._owned = False

    @classmethod
    def from_url(cls, url: str, *, socket_timeout: float = 10.0, connect_timeout: float = 2.0) -> "RedisSink":
        client = aioredis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 0), retry_on_error=[],
        )
        sink = cls(client)
        sink._owned = True
        return sink

    async def apply(self, changes: Sequence[Change]) -> list[Any]:
        """Apply ``changes`` in order; per change True, or the error Redis answered for it.

        Consecutive SETs go as one MSET and consecutive DELs as one DEL (same final state as
        one command per change, far fewer commands). Raises SinkUnavailable on I/O failure.
        """
        if not changes:
            return []
        pipe = self.redis.pipeline(transaction=False)
        runs: list[int] = []  # length of each run, one pipeline command per run
        i, n = 0, len(changes)
        while i < n:
            op = changes[i].op
            j = i
            if op == SET:
                mapping: dict[str, str] = {}
                while j < n and changes[j].op == SET:
                    c = changes[j]
                    mapping[c.key] = c.value  # type: ignore[assignment]
                    j += 1
                pipe.mset(mapping)
            elif op == DELETE:
                keys = set()
                while j < n and changes[j].op == DELETE:
                    keys.add(changes[j].key)
                    j += 1
                pipe.delete(*keys)
            else:
                raise ValueError(f"unknown op {op!r}")
            runs.append(j - i)
            i = j
        try:
            replies = await pipe.execute(raise_on_error=False)
        except (RedisConnectionError, RedisTimeoutError, OSError) as e:
            raise SinkUnavailable(f"{type(e).__name__}: {e}") from e
        finally:
            await pipe.reset()
        out: list[Any] = []
        for count, reply in zip(runs, replies):
            out.extend([reply if isinstance(reply, Exception) else True] * count)
        return out

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisConnectionError, RedisTimeoutError, OSError) as e:
            raise SinkUnavailable(f"{type(e).__name__}: {e}") from e

    async def close(self) -> None:
        """Close the client if this sink created it. Idempotent."""
        if self._owned:
            self._owned = False
            await self.redis.aclose()

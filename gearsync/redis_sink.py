"""The one module that writes Redis: a batch of changes in one pipelined round trip.

Direct mode: plain SET/DEL (:meth:`RedisSink.apply`). Safe mode: versioned writes
(:meth:`RedisSink.apply_versioned`) through one Lua script, ``versioned.lua``, loaded once and
called with EVALSHA (:mod:`gearsync.versioned`). The version of ``key`` lives beside it in the
string key :func:`gearsync.keys.version_key` (an integer; a tombstone with a TTL after a
delete), so ``GET key`` still returns the bare value.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Sequence, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .changes import DELETE, SET, Change, VersionedChange
from .constants import DEFAULT_TOMBSTONE_TTL
from .versioned import CHUNK, LUA, script_args

__all__ = ["RedisSink", "SinkUnavailable", "until_written"]

log = logging.getLogger(__name__)

T = TypeVar("T")


async def until_written(write: Callable[[], Awaitable[T]], *, held: str, backoff_max: float,
                        stopping: Callable[[], bool], on_retry: Callable[[], None] = lambda: None,
                        ) -> tuple[bool, T | None]:
    """Run ``write()`` until Redis answers: ``(True, result)``. While Redis is unreachable, retry
    with capped exponential backoff (0.1 s doubling to ``backoff_max``), logging each retry with
    what is ``held`` and calling ``on_retry`` (counters, pausing intake); ``(False, None)`` if
    ``stopping()`` says to give up. Other errors propagate."""
    attempt = 0
    while True:
        try:
            result = await write()
        except SinkUnavailable as e:
            if stopping():
                log.warning("stopping with %s unapplied (redis unreachable: %s)", held, e)
                return False, None
            attempt += 1
            on_retry()
            delay = min(backoff_max, 0.1 * 2 ** (attempt - 1))
            log.warning("redis unreachable (%s), retry %d in %.1f s (%s held)", e, attempt, delay, held)
            await asyncio.sleep(delay)
            continue
        if attempt:
            log.info("redis reachable again after %d retries", attempt)
        return True, result


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
        self._sha: str | None = None

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

    async def apply_versioned(self, changes: Sequence[VersionedChange],
                              tombstone_ttl: int = DEFAULT_TOMBSTONE_TTL, mode: str = "v") -> list[int]:
        """Apply versioned changes in one pipeline; per change the script's answer
        (gearsync.versioned: APPLIED, STALE, CORRUPT — the stored version is not a number —,
        RESERVED — a key under ``gearsync:``).

        ``mode`` (see ``versioned.lua``): "v" versioned (safe mode), "nx" only where no version
        is stored (backfill), "cas" only where the version is still ``change.version`` (repair;
        0 = none stored), "w" unconditional (direct mode).

        Raises SinkUnavailable on I/O failure (nothing or part applied: replaying is a no-op
        for what was applied). A Redis restart that forgot the script is handled by reloading it.
        """
        if not changes:
            return []
        for attempt in (1, 2):
            try:
                if self._sha is None:
                    self._sha = str(await self.redis.script_load(LUA))
                replies = await self._eval_chunks(self._sha, changes, int(tombstone_ttl), mode)
            except (RedisConnectionError, RedisTimeoutError, OSError) as e:
                raise SinkUnavailable(f"{type(e).__name__}: {e}") from e
            errors = [r for r in replies if isinstance(r, Exception)]
            if not errors:
                break
            if attempt == 1 and all(isinstance(r, NoScriptError) for r in errors):
                log.info("redis forgot the versioned-write script (restarted?): loading it again")
                self._sha = None
                continue
            raise errors[0]
        out: list[int] = []
        for reply in replies:
            out.extend(int(x) for x in reply)
        return out

    async def _eval_chunks(self, sha: str, changes: Sequence[VersionedChange], ttl: int,
                           mode: str = "v") -> list[Any]:
        pipe = self.redis.pipeline(transaction=False)
        for i in range(0, len(changes), CHUNK):
            keys, argv = script_args(changes[i:i + CHUNK], ttl, mode)
            pipe.evalsha(sha, len(keys), *keys, *argv)
        try:
            return list(await pipe.execute(raise_on_error=False))
        finally:
            await pipe.reset()

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

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
import time
from typing import Any, Awaitable, Callable, Sequence, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (AskError, AuthenticationError, BusyLoadingError, ClusterDownError, MasterDownError,
                              MovedError, NoPermissionError, NoScriptError, OutOfMemoryError, ReadOnlyError,
                              TryAgainError)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .changes import DELETE, SET, Change, VersionedChange, as_versioned
from .constants import APPLIED_AT, DEAD_LETTERS, DEAD_LETTERS_MAX, DEFAULT_TOMBSTONE_TTL
from .versioned import CHUNK, LUA, script_args

__all__ = ["RedisSink", "SinkUnavailable", "until_written", "retryable", "dead_letter_entry"]

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
    """Redis could not be reached, did not answer, or answered with an error that a later try
    can get past (see :func:`retryable`); the batch was not (fully) applied."""


#: Redis errors that go away by themselves: a replica promoted or a primary back
#: (READONLY, MASTERDOWN, NOREPLICAS), a restart (LOADING), memory freed (OOM), a
#: resharding or failover (TRYAGAIN, MOVED, ASK, CLUSTERDOWN), a busy script (BUSY), and the
#: ones an operator fixes without losing data (NOAUTH, NOPERM, WRONGPASS).
_RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError, ReadOnlyError, BusyLoadingError, OutOfMemoryError,
              TryAgainError, ClusterDownError, MasterDownError, MovedError, AskError, AuthenticationError,
              NoPermissionError)
_RETRYABLE_PREFIXES = ("READONLY", "LOADING", "OOM", "TRYAGAIN", "MOVED", "ASK", "CLUSTERDOWN", "MASTERDOWN",
                       "NOREPLICAS", "BUSY", "NOAUTH", "NOPERM", "WRONGPASS")


def dead_letter_entry(function: bytes | str, what: bytes | str, payload: bytes, error: BaseException) -> dict[str, Any]:
    """One entry of :data:`DEAD_LETTERS`: where the change came from (a Gearman function and job
    handle, or ``versioned`` and the key), its payload (cut at 64 KiB) and the error."""
    return {"function": function, "from": what, "payload": bytes(payload[:65536]),
            "error": f"{type(error).__name__}: {error}"}


def retryable(e: BaseException) -> bool:
    """True for a Redis error that a later try can get past; False for one it never will (a
    WRONGTYPE, a script error, a value Redis refuses), which goes to the dead letters."""
    if isinstance(e, _RETRYABLE):
        return True
    text = str(e)
    # a script's error carries the command's error after "Error running script … :"
    inner = text.rsplit(": ", 1)[-1] if "script" in text else text
    return inner.lstrip("-").startswith(_RETRYABLE_PREFIXES) or text.startswith(_RETRYABLE_PREFIXES)


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
        for reply in replies:  # SET and DEL are idempotent: the batch is replayed whole
            if isinstance(reply, Exception) and retryable(reply):
                raise SinkUnavailable(f"{type(reply).__name__}: {reply}")
        out: list[Any] = []
        for count, reply in zip(runs, replies):
            out.extend([reply if isinstance(reply, Exception) else True] * count)
        return out

    async def apply_versioned(self, changes: Sequence[VersionedChange],
                              tombstone_ttl: int = DEFAULT_TOMBSTONE_TTL, mode: str = "v") -> list[Any]:
        """Apply versioned changes in one pipeline; per change the script's answer
        (gearsync.versioned: APPLIED, STALE, CORRUPT — the stored version is not a number —,
        RESERVED — a key under ``gearsync:``), or the error Redis answered for good for that
        change alone (a WRONGTYPE: the caller dead-letters it).

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
            retry = next((e for e in errors if retryable(e)), None)
            if retry is not None:
                raise SinkUnavailable(f"{type(retry).__name__}: {retry}")
            break
        out: list[Any] = []
        for i, reply in enumerate(replies):
            if isinstance(reply, Exception):  # a change of this call can never be written: find which
                out.extend(await self._one_by_one(changes[i * CHUNK:(i + 1) * CHUNK], int(tombstone_ttl), mode))
            else:
                out.extend(int(x) for x in reply)
        return out

    async def _one_by_one(self, changes: Sequence[VersionedChange], ttl: int, mode: str) -> list[Any]:
        """Each change of a call that failed for good, in a call of its own: the others apply
        (a replay of what the failed call applied before its error is a no-op), the culprits
        come back as their errors."""
        assert self._sha is not None
        pipe = self.redis.pipeline(transaction=False)
        for c in changes:
            keys, argv = script_args([c], ttl, mode)
            pipe.evalsha(self._sha, len(keys), *keys, *argv)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except (RedisConnectionError, RedisTimeoutError, OSError) as e:
            raise SinkUnavailable(f"{type(e).__name__}: {e}") from e
        finally:
            await pipe.reset()
        out: list[Any] = []
        for r in replies:
            if isinstance(r, Exception) and retryable(r):
                raise SinkUnavailable(f"{type(r).__name__}: {r}")
            out.append(r if isinstance(r, Exception) else int(r[0]))
        return out

    async def apply_changes(self, changes: Sequence[Change], versions: Sequence[int],
                            tombstone_ttl: int = DEFAULT_TOMBSTONE_TTL) -> list[Any]:
        """Direct mode's writes: changes without a version (the seed's jobs, gman_do_background)
        as plain SET/DEL (:meth:`apply`), those with one (gearsync_send's envelopes) through the
        versioned script (:meth:`apply_versioned`), so a job re-sent or requeued behind newer
        ones cannot leave an older value; per change the answer of the one that wrote it."""
        plain = [i for i, v in enumerate(versions) if not v]
        versioned = [i for i, v in enumerate(versions) if v]
        out: list[Any] = [None] * len(changes)
        if plain:
            for i, r in zip(plain, await self.apply([changes[i] for i in plain])):
                out[i] = r
        if versioned:
            vc = [as_versioned(changes[i], versions[i]) for i in versioned]
            for i, r in zip(versioned, await self.apply_versioned(vc, tombstone_ttl)):
                out[i] = r
        return out

    async def mark_applied(self, tables: Sequence[str]) -> None:
        """Note in :data:`APPLIED_AT` that these tables' changes were applied now (for status);
        best effort: a failure is logged, never raised."""
        if not tables:
            return
        try:
            await self.redis.hset(APPLIED_AT, mapping={t: repr(time.time()) for t in tables})
        except Exception as e:  # status shows an older time; the changes themselves are written
            log.debug("could not note the time of applying %s: %s", ", ".join(tables), e)

    async def dead_letter(self, entries: Sequence[dict[str, Any]]) -> None:
        """Record changes Redis refused for good in the stream :data:`DEAD_LETTERS` (capped at
        about :data:`DEAD_LETTERS_MAX` entries); raises SinkUnavailable if Redis is away."""
        if not entries:
            return
        pipe = self.redis.pipeline(transaction=False)
        for e in entries:
            pipe.xadd(DEAD_LETTERS, {k: v if isinstance(v, bytes) else str(v) for k, v in e.items()},
                      maxlen=DEAD_LETTERS_MAX, approximate=True)
        try:
            await pipe.execute()
        except (RedisConnectionError, RedisTimeoutError, OSError) as e:
            raise SinkUnavailable(f"{type(e).__name__}: {e}") from e
        finally:
            await pipe.reset()

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

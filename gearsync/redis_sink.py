"""The one module that writes Redis: a batch of changes in one pipelined round trip (per node
in a Redis Cluster).

Direct mode: plain SET/DEL (:meth:`RedisSink.apply`). Safe mode: versioned writes
(:meth:`RedisSink.apply_versioned`) through one Lua script, ``versioned.lua``, loaded once and
called with EVALSHA (:mod:`gearsync.versioned`). The version of ``key`` lives beside it in the
string key :func:`gearsync.keys.version_key` (an integer; a tombstone with a TTL after a
delete), so ``GET key`` still returns the bare value; in a cluster the version key carries a
hash tag that puts it in its key's slot, and every multi-key command (MSET, DEL, one EVALSHA
of many changes) holds the keys of one slot only (:meth:`gearsync.redis_batch.Pipe.group`).
With ``replicas`` a batch counts as written once that many replicas have it (Redis ``WAIT``).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

from redis.exceptions import NoScriptError

from .changes import DELETE, SET, Change, VersionedChange, as_versioned
from .constants import APPLIED_AT, DEAD_LETTERS, DEAD_LETTERS_MAX, DEFAULT_TOMBSTONE_TTL
from .keys import key_slot
from .redis_batch import Pipe
from .redis_clients import async_client
from .redis_errors import SinkUnavailable, dead_letter_entry, retryable, until_written
from .versioned import CHUNK, LUA, answers, pack_call

__all__ = ["RedisSink", "SinkUnavailable", "until_written", "retryable", "dead_letter_entry"]

log = logging.getLogger(__name__)

#: Seconds between two notes of one table's last apply in :data:`APPLIED_AT` (status shows its age).
MARK_EVERY = 0.5


class RedisSink:
    """Apply :class:`Change` batches with SET/DEL in one pipeline (``transaction=False``).

    Replaying a batch after a failure is safe: SET and DEL are idempotent and a batch is
    replayed whole, in order (the changes of one key share a slot, so they keep their order in
    a cluster too). ``replicas``/``replica_timeout``: see :class:`gearsync.redis_batch.Pipe`.
    """

    def __init__(self, redis: Any, *, replicas: int = 0, replica_timeout: float = 1.0) -> None:
        self.redis = redis
        self.pipe = Pipe(redis, replicas, replica_timeout)
        self.cluster = self.pipe.cluster
        self._owned = False
        self._sha: str | None = None
        self._marked: dict[str, float] = {}  # table -> monotonic time its APPLIED_AT was last written

    @classmethod
    def from_url(cls, url: str, *, socket_timeout: float = 10.0, connect_timeout: float = 2.0, replicas: int = 0,
                 replica_timeout: float = 1.0) -> "RedisSink":
        """A sink with a client of its own (:func:`gearsync.redis_clients.async_client`: one
        Redis, ``redis+cluster://`` or ``redis+sentinel://``), closed by :meth:`close`."""
        client = async_client(url, socket_timeout=socket_timeout, connect_timeout=connect_timeout)
        sink = cls(client, replicas=replicas, replica_timeout=replica_timeout)
        sink._owned = True
        return sink

    async def apply(self, changes: Sequence[Change]) -> list[Any]:
        """Apply ``changes`` in order; per change True, or the error Redis answered for it.

        Consecutive SETs go as one MSET and consecutive DELs as one DEL (per slot in a
        cluster: same final state as one command per change, far fewer commands). Raises
        SinkUnavailable when Redis is unreachable or answers an error that passes.
        """
        if not changes:
            return []
        commands: list[tuple[Any, ...]] = []
        slots: list[int | None] = []
        covers: list[list[int]] = []  # the changes each command applies
        i, n = 0, len(changes)
        while i < n:
            op = changes[i].op
            if op not in (SET, DELETE):
                raise ValueError(f"unknown op {op!r}")
            j = i
            while j < n and changes[j].op == op:
                j += 1
            run = list(range(i, j))
            for slot, group in self.pipe.group(run, key=lambda k: changes[k].key):
                idx = [run[g] for g in group]
                slots.append(slot)
                if op == SET:
                    mapping: dict[str, str] = {}
                    for k in idx:
                        mapping[changes[k].key] = changes[k].value  # type: ignore[assignment]
                    commands.append(("MSET", *[x for kv in mapping.items() for x in kv]))
                else:
                    commands.append(("DEL", *dict.fromkeys(changes[k].key for k in idx)))
                covers.append(idx)
            i = j
        replies = await self.pipe.run(commands, slots)
        for reply in replies:  # SET and DEL are idempotent: the batch is replayed whole
            if isinstance(reply, Exception) and retryable(reply):
                raise SinkUnavailable(f"{type(reply).__name__}: {reply}")
        out: list[Any] = [True] * n
        for idx, reply in zip(covers, replies):
            if isinstance(reply, Exception):
                for k in idx:
                    out[k] = reply
        return out

    def _calls(self, changes: Sequence[VersionedChange]) -> list[tuple[int | None, list[int]]]:
        """The changes of each EVALSHA call (with its slot): at most CHUNK, of one slot in a cluster."""
        return [(slot, g[i:i + CHUNK]) for slot, g in self.pipe.group(changes, key=lambda c: c.key)
                for i in range(0, len(g), CHUNK)]

    def _evalsha(self, changes: Sequence[VersionedChange], ttl: int, mode: str) -> bytes:
        assert self._sha is not None
        return pack_call(self._sha.encode(), changes, ttl, mode, tagged=self.cluster)

    async def apply_versioned(self, changes: Sequence[VersionedChange],
                              tombstone_ttl: int = DEFAULT_TOMBSTONE_TTL, mode: str = "v") -> list[Any]:
        """Apply versioned changes in one pipeline; per change the script's answer
        (gearsync.versioned: APPLIED, STALE, CORRUPT — the stored version is not a number —,
        RESERVED — a key under ``gearsync:``), or the error Redis answered for good for that
        change alone (a WRONGTYPE: the caller dead-letters it).

        ``mode`` (see ``versioned.lua``): "v" versioned (safe mode), "nx" only where no version
        is stored (backfill), "cas" only where the version is still ``change.version`` (repair;
        0 = none stored), "w" unconditional (direct mode).

        Raises SinkUnavailable when Redis is unreachable (nothing or part applied: replaying is
        a no-op for what was applied). A Redis that forgot the script (a restart, a promoted
        replica) gets it again and the batch is replayed.
        """
        if not changes:
            return []
        ttl = int(tombstone_ttl)
        calls = self._calls(changes)
        for attempt in (1, 2):
            if self._sha is None:
                self._sha = await self._load()
            replies = await self.pipe.run([self._evalsha([changes[i] for i in idx], ttl, mode) for _, idx in calls],
                                          [slot for slot, _ in calls])
            errors = [r for r in replies if isinstance(r, Exception)]
            if not errors:
                break
            if attempt == 1 and any(isinstance(r, NoScriptError) for r in errors):
                log.info("redis forgot the versioned-write script (restarted, or a replica promoted): loading it "
                         "again")
                self._sha = None
                continue
            retry = next((e for e in errors if retryable(e)), None)
            if retry is not None:
                raise SinkUnavailable(f"{type(retry).__name__}: {retry}")
            break
        out: list[Any] = [None] * len(changes)
        for (_, idx), reply in zip(calls, replies):
            if isinstance(reply, Exception):  # a change of this call can never be written: find which
                results = await self._one_by_one([changes[i] for i in idx], ttl, mode)
            else:
                results = answers(reply)
            for i, r in zip(idx, results):
                out[i] = r
        return out

    def _slots(self, changes: Sequence[VersionedChange]) -> list[int | None]:
        return [key_slot(c.key) if self.cluster else None for c in changes]

    async def _load(self) -> str:
        """SCRIPT LOAD (on every primary of a cluster)."""
        try:
            return str(await self.redis.script_load(LUA))
        except Exception as e:
            if retryable(e):
                raise SinkUnavailable(f"{type(e).__name__}: {e}") from e
            raise

    async def _one_by_one(self, changes: Sequence[VersionedChange], ttl: int, mode: str) -> list[Any]:
        """Each change of a call that failed for good, in a call of its own: the others apply
        (a replay of what the failed call applied before its error is a no-op), the culprits
        come back as their errors."""
        replies = await self.pipe.run([self._evalsha([c], ttl, mode) for c in changes], self._slots(changes))
        out: list[Any] = []
        for r in replies:
            if isinstance(r, Exception) and retryable(r):
                raise SinkUnavailable(f"{type(r).__name__}: {r}")
            out.append(r if isinstance(r, Exception) else answers(r)[0])
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
        """Note in :data:`APPLIED_AT` that these tables' changes were applied now (for status),
        at most every :data:`MARK_EVERY` s per table: a round trip per batch was a tenth of a
        safe-mode batch's time at 2,000 writes/s. Best effort: a failure is logged, never raised."""
        now = time.monotonic()
        due = [t for t in tables if now - self._marked.get(t, float("-inf")) >= MARK_EVERY]
        if not due:
            return
        try:
            await self.redis.hset(APPLIED_AT, mapping={t: repr(time.time()) for t in due})
        except Exception as e:  # status shows an older time; the changes themselves are written
            log.debug("could not note the time of applying %s: %s", ", ".join(due), e)
            return
        for t in due:
            self._marked[t] = now

    async def dead_letter(self, entries: Sequence[dict[str, Any]]) -> None:
        """Record changes Redis refused for good in the stream :data:`DEAD_LETTERS` (capped at
        about :data:`DEAD_LETTERS_MAX` entries); raises SinkUnavailable if Redis is away."""
        if not entries:
            return
        commands = []
        for e in entries:
            fields = [x for k, v in e.items() for x in (k, v if isinstance(v, bytes) else str(v))]
            commands.append(("XADD", DEAD_LETTERS, "MAXLEN", "~", DEAD_LETTERS_MAX, "*", *fields))
        replies = await self.pipe.run(commands, [key_slot(DEAD_LETTERS) if self.cluster else None] * len(commands))
        bad = next((r for r in replies if isinstance(r, Exception)), None)
        if bad is not None:
            if retryable(bad):
                raise SinkUnavailable(f"{type(bad).__name__}: {bad}")
            raise bad

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except Exception as e:
            if retryable(e):
                raise SinkUnavailable(f"{type(e).__name__}: {e}") from e
            raise

    async def close(self) -> None:
        """Close the client if this sink created it. Idempotent."""
        if self._owned:
            self._owned = False
            await self.redis.aclose()

"""The worker's database half: changes of configured tables and safe-mode doorbells, applied
from committed rows.

Two kinds of job reach it: a safe-mode doorbell (function ``gearsync``) whose workload is an
outbox id, and a direct-mode job of a configured table (``gearsync_direct``) naming a changed
row. :class:`TableApplier` runs as its own asyncio task beside the direct-mode loop, with every
database call in one dedicated thread, so a locking read that waits for a writer's
transaction never stalls direct-mode jobs. Per batch of doorbells:

1. one locking read claims the committed outbox rows among the ids (rolled-back ones are
   absent; a transaction open longer than the lock-wait timeout is left to the sweeper);
2. the changed rows are read as committed now, one ``SELECT … WHERE pk IN (…)`` per table
   (:class:`gearsync.scan.TableReader`), and mapped (:func:`gearsync.mapping.changes_of`);
3. one Redis pipeline applies them with the versioned-write script;
4. one DELETE removes the applied rows and commits; then the jobs are completed.

A direct-mode job goes through 2 and 3 only. Every ``sweep_interval`` s the sweeper claims
(``SKIP LOCKED``) committed outbox rows older than ``sweep_age`` that no job delivered and
applies them the same way. A doorbell is always completed (never failed unless its workload
is not an id): whatever it rang for is in the outbox until applied, so a database or Redis
outage delays changes but never loses one.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence, TypeVar

from .changes import OutboxRow, VersionedChange
from .constants import DEAD_LETTERS
from .envelope import decode as decode_envelope
from .gearman.worker import GearmanWorker, Job
from .keys import version_key
from .mapping import Read, changes_of
from .outbox import Outbox, OutboxError
from .payload import direct_change
from .redis_sink import RedisSink, dead_letter_entry, until_written
from .settings import Settings
from .tables import ConfiguredTables, ReadFailed, RowsBusy
from .versioned import CORRUPT, RESERVED, STALE

__all__ = ["TableApplier"]

log = logging.getLogger(__name__)

T = TypeVar("T")

class TableApplier:
    """The database half of a :class:`gearsync.worker.Worker` (needs ``settings.mysql_url``)."""

    def __init__(self, settings: Settings, sink: RedisSink, gearman: GearmanWorker,
                 outbox: Outbox | None = None) -> None:
        assert settings.mysql_url is not None
        self.settings = settings
        self.sink = sink
        self.gearman = gearman
        self.outbox = outbox or Outbox(settings.mysql_url, lock_wait_timeout=settings.lock_wait_timeout)
        self.tables = ConfiguredTables(settings.tables, self.outbox.connection, settings.mysql_url,
                                       settings.redis_url)
        self._jobs: collections.deque[Job] = collections.deque()
        self._direct: collections.deque[Job] = collections.deque()
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="gearsync-db")
        self._stopping = False
        self._next_sweep = time.monotonic() + settings.sweep_interval
        #: source "schema.table" → fn(TableChange) (see Worker.table)
        self.table_handlers: dict[str, Any] = {}
        #: Seconds to wait for more doorbells when a batch is not full.
        self.linger = settings.safe_linger
        # counters
        self.rows_applied = 0      # outbox rows applied and deleted
        self.writes_stale = 0      # versioned writes skipped (an equal or newer version was there)
        self.rows_swept = 0        # of rows_applied, found by the sweeper
        self.ids_absent = 0        # ids rung for but not claimable (rolled back, applied, or long txn)
        self.jobs_done = 0
        self.jobs_bad = 0
        self.db_errors = 0
        self.redis_retries = 0
        self.direct_applied = 0    # direct-mode jobs of configured tables applied
        self.changes_skipped = 0   # changes that could not be mapped (reported, left out)
        self.versions_corrupt = 0  # writes refused: the key's stored version is not a number
        self.keys_refused = 0      # writes refused: a key under gearsync: (reserved)
        self.dead_letters = 0      # writes Redis refused for good, kept in gearsync:dead
        #: Measure the outbox lag at each sweep tick (for the metrics): seconds, None if empty.
        self.track_lag = False
        self.lag: float | None = None
        #: Called with the seconds a batch (claim, read, write, delete) took.
        self.on_batch: Callable[[float], None] | None = None
        #: Called at each sweep tick and each Redis retry (metrics).
        self.on_tick: Callable[[], None] = lambda: None
        #: source → changes applied; source → age (s) of the oldest change of its last batch
        self.applied_by_table: collections.Counter[str] = collections.Counter()
        self.lag_by_table: dict[str, float] = {}

    # -- feeding and stopping ------------------------------------------------------------
    def submit(self, jobs: Sequence[Job]) -> None:
        """Safe-mode doorbells."""
        self._jobs.extend(jobs)
        self._wake.set()

    def submit_direct(self, jobs: Sequence[Job]) -> None:
        """Direct-mode jobs of configured tables."""
        self._direct.extend(jobs)
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._jobs) + len(self._direct)

    def request_stop(self) -> None:
        """Finish the jobs in hand, skip further sweeps, then :meth:`run` returns."""
        self._stopping = True
        self._wake.set()

    async def close(self) -> None:
        """Close the connection (from its thread) and the thread. Idempotent."""
        if self._executor is None:
            return
        ex, self._executor = self._executor, None  # type: ignore[assignment]
        try:
            await asyncio.get_running_loop().run_in_executor(ex, self.outbox.close)
        finally:
            ex.shutdown(wait=False)

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- the task --------------------------------------------------------------------------
    async def run(self) -> None:
        size = self.settings.batch_size
        while True:
            if not self._jobs and not self._direct:
                if self._stopping:
                    return
                wait = self._next_sweep - time.monotonic()
                if wait > 0:
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), wait)
                    except asyncio.TimeoutError:
                        pass
            if self._jobs and len(self._jobs) < size and self.linger > 0 and not self._stopping:
                # group commit: a trickle of doorbells (one per row) would cost a claim, a
                # delete and a commit per row; waiting a moment batches them
                await asyncio.sleep(self.linger)
            for queue, process in ((self._direct, self.process_direct), (self._jobs, self.process)):
                if queue:
                    batch = [queue.popleft() for _ in range(min(size, len(queue)))]
                    try:
                        await process(batch)
                    except Exception:  # a bug: never leave the jobs unanswered
                        log.exception("batch of %d jobs failed; completing them (the sweeper applies what "
                                      "the outbox holds)", len(batch))
                        self.gearman.complete(batch)
                        await self._release()
            if not self._stopping and time.monotonic() >= self._next_sweep:
                try:
                    await self.sweep()
                except Exception:
                    log.exception("outbox sweep failed")
                    await self._release()
                if self.track_lag:
                    try:
                        self.lag = await self._db(self.outbox.oldest_age)
                    except OutboxError as e:
                        log.debug("outbox lag unknown: %s", e)
                self.on_tick()
                self._next_sweep = time.monotonic() + self.settings.sweep_interval

    async def process(self, jobs: Sequence[Job]) -> None:
        """Confirm, read, apply and delete the outbox rows the doorbells rang for; complete them."""
        t0 = time.monotonic()
        ids: list[int] = []
        good: list[Job] = []
        bad: list[Job] = []
        for job in jobs:
            try:  # a doorbell names outbox rows only: a forged one can make the worker look them up,
                # nothing more, so it needs no signature
                ids.extend(int(payload) for _v, payload in decode_envelope(job.function, job.workload, None))
                good.append(job)
            except ValueError:
                bad.append(job)
                log.warning("job %s (%s): workload %r is not an outbox id", job.handle.decode(errors="replace"),
                            self.settings.safe_function, bytes(job.workload[:40]))
        if bad:
            self.jobs_bad += self.gearman.fail(bad)
        unique = sorted(set(ids))
        try:
            rows = await self._db(self._claim_and_read, unique)
        except RowsBusy as e:  # a deadlock (with a writer, or a DDL's metadata lock): claim rolled back
            log.info("outbox claim gave way (%s); %d doorbells tried again in 0.05 s", e, len(good))
            await asyncio.sleep(0.05)
            self._jobs.extend(good)
            self._wake.set()
            return
        except OutboxError as e:
            self.db_errors += 1
            log.warning("outbox unreachable (%s): %d jobs completed, the sweeper applies their rows later",
                        e, len(good))
            rows = None
        if rows is not None:
            self.ids_absent += len(unique) - len(rows[0])
            await self._apply_and_finish(*rows, swept=False)
        self.jobs_done += self.gearman.complete(good)
        if self.on_batch is not None:
            self.on_batch(time.monotonic() - t0)

    async def process_direct(self, jobs: Sequence[Job]) -> None:
        """Read and apply the rows direct-mode jobs name; complete them (fail the malformed)."""
        changes: list[OutboxRow] = []
        ok: list[Job] = []
        bad: list[Job] = []
        for job in jobs:
            try:  # a job names a row, whose committed value the worker reads itself: no signature needed
                changes.extend(direct_change(payload, version)
                               for version, payload in decode_envelope(job.function, job.workload, None))
                ok.append(job)
            except (ValueError, TypeError) as e:
                bad.append(job)
                log.warning("job %s (%s) failed: %s", job.handle.decode(errors="replace"),
                            self.settings.direct_function, e)
        if bad:
            self.jobs_bad += self.gearman.fail(bad)
        try:
            read = await self._db(self._read_committed, changes)
        except RowsBusy as e:  # a long transaction: keep the jobs, try again in a moment
            log.info("direct-mode rows still locked by a writer (%s); %d jobs retried in 0.2 s", e, len(ok))
            await asyncio.sleep(0.2)
            self._direct.extend(ok)
            self._wake.set()
            return
        except OutboxError as e:  # the database is away: the jobs go back to gearmand
            self.db_errors += 1
            log.warning("database unreachable (%s): %d direct-mode jobs failed back to gearmand", e, len(ok))
            self.jobs_bad += self.gearman.fail(ok)
            return
        writes = changes_of(changes, read, self.settings.tables, self.table_handlers, self._skipped)
        t0 = time.monotonic()
        if await self._write(writes, f"{len(ok)} direct-mode jobs (gearmand requeues them on a stop)") is None:
            return
        self.direct_applied += self.gearman.complete(ok)
        self.applied_by_table.update(c.source for c in changes if c.source)
        await self.sink.mark_applied(sorted({c.source for c in changes if c.source}))
        if self.on_batch is not None:
            self.on_batch(time.monotonic() - t0)

    async def sweep(self) -> int:
        """Apply committed rows older than ``sweep_age`` that no job delivered; how many."""
        total = 0
        limit = self.settings.batch_size
        while not self._stopping:
            try:
                rows, read = await self._db(self._claim_stale_and_read, self.settings.sweep_age, limit)
            except OutboxError as e:
                self.db_errors += 1
                log.warning("outbox sweep: database unreachable (%s), next try in %.1f s",
                            e, self.settings.sweep_interval)
                break
            if not rows:
                await self._release()
                break
            if not await self._apply_and_finish(rows, read, swept=True):
                break
            total += len(rows)
            if len(rows) < limit:
                break
        if total:
            log.info("outbox sweep applied %d rows no job delivered", total)
        return total

    # -- in the database thread ------------------------------------------------------------
    def _claim_and_read(self, ids: Sequence[int]) -> tuple[list[OutboxRow], Read]:
        rows = self.outbox.claim(ids)
        return rows, self._read(rows)

    def _claim_stale_and_read(self, age: float, limit: int) -> tuple[list[OutboxRow], Read]:
        rows = self.outbox.claim_stale(age, limit)
        return rows, self._read(rows)

    def _read_committed(self, rows: Sequence[OutboxRow]) -> Read:
        """:meth:`_read` with a locking read (a direct-mode job can arrive before its writer
        committed: the read waits for it), then the locks are released at once."""
        try:
            return self._read(rows, lock=True)
        finally:
            self.outbox.release()

    def _read(self, rows: Sequence[OutboxRow], lock: bool = False) -> Read:
        """The rows the changes name, in the claim's transaction (see ConfiguredTables.read)."""
        try:
            return self.tables.read(rows, lock)
        except RowsBusy:
            self.outbox.release()
            raise
        except ReadFailed as e:
            self.outbox.close()  # its transaction is in an unknown state: roll it back
            raise OutboxError(str(e)) from e

    # -- applying ----------------------------------------------------------------------------
    def _skipped(self, row: OutboxRow, why: str) -> None:
        self.changes_skipped += 1
        if row.source:
            self.tables.drift[row.source] = why

    async def _write(self, changes: list[VersionedChange], held: str) -> list[Any] | None:
        """Versioned writes (unversioned ones, from triggers without versions, unconditionally),
        retrying while Redis is away; None if stopping left them unapplied, or Redis refused."""
        def on_retry() -> None:
            self.redis_retries += 1
            self.on_tick()

        async def write() -> list[Any]:
            versioned = [c for c in changes if c.version]
            plain = [c for c in changes if not c.version]
            out = await self.sink.apply_versioned(versioned, self.settings.tombstone_ttl)
            return out + (await self.sink.apply_versioned(plain, self.settings.tombstone_ttl, mode="w"))

        try:
            written, results = await until_written(write, held=held, backoff_max=self.settings.redis_backoff_max,
                                                   stopping=lambda: self._stopping, on_retry=on_retry)
        except Exception as e:  # a script error, e.g. WRONGTYPE
            log.error("versioned write of %s failed: %s: %s", held, type(e).__name__, e)
            return None
        if not written or results is None:
            return None
        self._refused(changes, results)
        dead: list[tuple[VersionedChange, Exception]] = [
            (c, r) for c, r in zip(changes, results) if isinstance(r, Exception)]
        if dead:  # Redis refused them for good (a WRONGTYPE): keep them in the dead letters
            entries = [dead_letter_entry("versioned", c.key, c.value or b"", r) for c, r in dead]
            written, _ = await until_written(lambda: self.sink.dead_letter(entries), held=held,
                                             backoff_max=self.settings.redis_backoff_max,
                                             stopping=lambda: self._stopping, on_retry=on_retry)
            if not written:
                return None
            for c, r in dead:
                log.error("%r refused by redis for good: %s: %s; kept in %s", c.key, type(r).__name__, r,
                          DEAD_LETTERS.decode())
            self.dead_letters += len(dead)
        return results

    def _refused(self, changes: Sequence[VersionedChange], results: Sequence[int]) -> None:
        """Log and count the writes the script refused (each refusal touches its own key only)."""
        for c, r in zip(changes, results):
            if r == CORRUPT:
                self.versions_corrupt += 1
                log.error("%r not written: its stored version %s is not a number (written by hand or "
                          "by a forged job?); `gearsync verify --repair` resets it", c.key,
                          version_key(c.key, self.sink.cluster))
            elif r == RESERVED:
                self.keys_refused += 1
                log.error("%r not written: keys under gearsync: are gearsync's own", c.key)

    async def _apply_and_finish(self, rows: list[OutboxRow], read: Read, swept: bool) -> bool:
        """Versioned write of ``rows`` (retrying while Redis is down), then delete + commit."""
        if not rows:
            await self._release()
            return True
        changes = changes_of(rows, read, self.settings.tables, self.table_handlers, self._skipped)
        results = await self._write(changes, f"{len(rows)} outbox rows (they stay in the outbox)")
        if results is None:
            await self._release()
            return False
        self.writes_stale += results.count(STALE)
        try:
            await self._db(self.outbox.finish, [r.id for r in rows])
        except OutboxError as e:
            self.db_errors += 1
            log.warning("outbox: %d rows applied but not deleted (%s); the sweeper re-applies them "
                        "(a no-op) and deletes them", len(rows), e)
            return False
        self.rows_applied += len(rows)
        if swept:
            self.rows_swept += len(rows)
        ages: dict[str, float] = {}
        for r in rows:
            if r.source:
                self.applied_by_table[r.source] += 1
                ages[r.source] = max(r.age, ages.get(r.source, 0.0))
        self.lag_by_table.update(ages)
        await self.sink.mark_applied(sorted(ages))
        return True

    async def _release(self) -> None:
        try:
            await self._db(self.outbox.release)
        except OutboxError as e:
            self.db_errors += 1
            log.warning("outbox: rollback failed (%s)", e)

    def counters(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("rows_applied", "rows_swept", "writes_stale", "ids_absent",
                                              "jobs_done", "jobs_bad", "db_errors", "redis_retries",
                                              "direct_applied", "changes_skipped", "versions_corrupt",
                                              "keys_refused", "dead_letters")}

"""Safe mode inside the worker: confirm outbox ids, apply versioned writes, sweep.

A job of the safe-mode function (``gearsync``) is a doorbell whose workload is an outbox id.
:class:`SafeApplier` runs as its own asyncio task beside the direct-mode loop, with every
database call in one dedicated thread, so a locking read that waits for a writer's
transaction never stalls direct-mode jobs. Per batch of jobs:

1. one locking read claims the committed outbox rows among the ids (rolled-back ones are
   absent; a transaction open longer than the lock-wait timeout is left to the sweeper);
2. one Redis pipeline applies them with the versioned-write script;
3. one DELETE removes the applied rows and commits; then the jobs are completed.

Every ``sweep_interval`` s the sweeper claims (``SKIP LOCKED``) committed rows older than
``sweep_age`` that no job delivered and applies them the same way. A job is always completed
(a doorbell, never failed unless its workload is not an id): whatever it rang for is in the
outbox until applied, so a database or Redis outage delays changes but never loses one.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence, TypeVar

from .gearman.worker import GearmanWorker, Job
from .changes import OutboxRow
from .mapping import outbox_changes
from .outbox import Outbox, OutboxError
from .redis_sink import RedisSink, until_written
from .settings import Settings

__all__ = ["SafeApplier"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class SafeApplier:
    """The safe-mode half of a :class:`gearsync.worker.Worker`."""

    def __init__(self, settings: Settings, sink: RedisSink, gearman: GearmanWorker,
                 outbox: Outbox | None = None) -> None:
        assert settings.mysql_url is not None
        self.settings = settings
        self.sink = sink
        self.gearman = gearman
        self.outbox = outbox or Outbox(settings.mysql_url, lock_wait_timeout=settings.lock_wait_timeout)
        self._jobs: collections.deque[Job] = collections.deque()
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="gearsync-outbox")
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
        #: Measure the outbox lag at each sweep tick (for the metrics): seconds, None if empty.
        self.track_lag = False
        self.lag: float | None = None
        #: Called with the seconds a batch (claim, write, delete) took.
        self.on_batch: Callable[[float], None] | None = None

    # -- feeding and stopping ------------------------------------------------------------
    def submit(self, jobs: Sequence[Job]) -> None:
        self._jobs.extend(jobs)
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._jobs)

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
            if not self._jobs:
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
            if self._jobs:
                n = min(size, len(self._jobs))
                batch = [self._jobs.popleft() for _ in range(n)]
                try:
                    await self.process(batch)
                except Exception:  # a bug: never leave the jobs unanswered
                    log.exception("safe-mode batch of %d jobs failed; completing them (the sweeper "
                                  "applies their rows)", len(batch))
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
                self._next_sweep = time.monotonic() + self.settings.sweep_interval

    async def process(self, jobs: Sequence[Job]) -> None:
        """Confirm, apply and delete the rows the jobs rang for; complete the jobs."""
        t0 = time.monotonic()
        ids: list[int] = []
        good: list[Job] = []
        bad: list[Job] = []
        for job in jobs:
            try:
                ids.append(int(job.workload))
                good.append(job)
            except ValueError:
                bad.append(job)
                log.warning("job %s (%s): workload %r is not an outbox id", job.handle.decode(errors="replace"),
                            self.settings.safe_function, bytes(job.workload[:40]))
        if bad:
            self.jobs_bad += self.gearman.fail(bad)
        unique = sorted(set(ids))
        try:
            rows = await self._db(self.outbox.claim, unique)
        except OutboxError as e:
            self.db_errors += 1
            log.warning("outbox unreachable (%s): %d jobs completed, the sweeper applies their rows later",
                        e, len(good))
            rows = None
        if rows is not None:
            self.ids_absent += len(unique) - len(rows)
            await self._apply_and_finish(rows, swept=False)
        self.jobs_done += self.gearman.complete(good)
        if self.on_batch is not None:
            self.on_batch(time.monotonic() - t0)

    async def sweep(self) -> int:
        """Apply committed rows older than ``sweep_age`` that no job delivered; how many."""
        total = 0
        limit = self.settings.batch_size
        while not self._stopping:
            try:
                rows = await self._db(self.outbox.claim_stale, self.settings.sweep_age, limit)
            except OutboxError as e:
                self.db_errors += 1
                log.warning("outbox sweep: database unreachable (%s), next try in %.1f s",
                            e, self.settings.sweep_interval)
                break
            if not rows:
                await self._release()
                break
            if not await self._apply_and_finish(rows, swept=True):
                break
            total += len(rows)
            if len(rows) < limit:
                break
        if total:
            log.info("outbox sweep applied %d rows no job delivered", total)
        return total

    async def _apply_and_finish(self, rows: list[OutboxRow], swept: bool) -> bool:
        """Versioned write of ``rows`` (retrying while Redis is down), then delete + commit."""
        if not rows:
            await self._release()
            return True
        changes = outbox_changes(rows, self.settings.tables, self.table_handlers)
        def on_retry() -> None:
            self.redis_retries += 1

        try:
            written, results = await until_written(
                lambda: self.sink.apply_versioned(changes, self.settings.tombstone_ttl),
                held=f"{len(rows)} outbox rows (they stay in the outbox on a stop)",
                backoff_max=self.settings.redis_backoff_max, stopping=lambda: self._stopping,
                on_retry=on_retry)
        except Exception as e:  # a script error, e.g. WRONGTYPE: the rows stay, visible as lag
            log.error("versioned write of %d outbox rows failed: %s: %s; they stay in the outbox",
                      len(rows), type(e).__name__, e)
            await self._release()
            return False
        if not written:
            await self._release()
            return False
        assert results is not None
        self.writes_stale += results.count(False)
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
        return True

    async def _release(self) -> None:
        try:
            await self._db(self.outbox.release)
        except OutboxError as e:
            self.db_errors += 1
            log.warning("outbox: rollback failed (%s)", e)

    def counters(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("rows_applied", "rows_swept", "writes_stale", "ids_absent",
                                              "jobs_done", "jobs_bad", "db_errors", "redis_retries")}

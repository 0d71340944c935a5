"""The gearsync worker: take jobs from gearmand, decode them, apply them to Redis in batches.

Per batch: each job goes through the handler registered for its function (default: the
seed contract, :func:`gearsync.payload.decode`); a job whose handler raises is logged with
its handle, counted and WORK_FAILed. The changes of the rest are applied in one Redis
pipeline, then each job is WORK_COMPLETEd. While Redis is unreachable the batch is held,
grabbing is paused and the write is retried with capped exponential backoff: no job is
dropped. First SIGTERM/SIGINT: finish the jobs in hand, stop grabbing, return. Second: stop now.

Given a MySQL URL (``settings.mysql_url``) the worker also serves safe mode and configured
tables: doorbells (``settings.safe_function``) and direct-mode jobs of configured tables
(``settings.direct_function``) go to a :class:`gearsync.applier.TableApplier` task (outbox
confirm, committed rows read back, versioned writes, sweeper) beside the direct-mode loop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any, Awaitable, Callable, TypeVar

from .applier import TableApplier
from .changes import Change
from .envelope import BadSignature
from .envelope import decode as decode_envelope
from .connections import redact
from .gearman.worker import GearmanWorker, Job
from .jobs import Handler, KeyRefused, Record, default_handler
from .keys import reserved
from .metrics import WorkerMetrics, render, use_multiprocess
from .constants import DEAD_LETTERS
from .redis_sink import RedisSink, dead_letter_entry, until_written
from .versioned import CORRUPT, STALE
from .settings import Settings, SettingsError
from .status import status_of
from .web import Web

__all__ = ["Worker", "Handler", "ForcedShutdown", "default_handler"]

log = logging.getLogger(__name__)

T = TypeVar("T")

class ForcedShutdown(BaseException):
    """Second stop signal: leave now (BaseException, so ``except Exception`` cannot eat it)."""


class Worker:
    """``Worker(settings).run_forever()``; pass ``redis`` (an asyncio Redis client) to reuse one."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        redis: object | None = None,
        gearman: GearmanWorker | None = None,
        handlers: dict[str, Handler] | None = None,
        reloader: Callable[[], Settings] | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        #: Reads the settings again (SIGHUP: see :meth:`reload`).
        self.reloader = reloader
        #: Jobs of handler functions (which carry values) must be signed with it (gearsync_udf.cnf's).
        self.secret = self.settings.secret
        self._redis = redis
        self._gearman = gearman
        self.handlers: dict[str, Handler] = {f: default_handler for f in self.settings.functions}
        self.table_handlers: dict[str, Callable[..., Any]] = {}
        self.handlers.update(handlers or {})
        self.sink: RedisSink | None = None
        self.applier: TableApplier | None = None
        self.jobs_applied = 0
        self.jobs_failed = 0
        self.redis_retries = 0
        self.keys_refused = 0
        self.jobs_unsigned = 0     # refused: no valid MAC while a secret is set
        self.writes_stale = 0      # versioned writes skipped (an equal or newer version was there)
        self.dead_letters = 0
        self.batches = 0
        self._stopping = False
        self._force = False
        self._task: asyncio.Task[None] | None = None
        self._last_log = time.monotonic()
        self._logged = (0, 0, 0)
        self.metrics: Any = None  # a WorkerMetrics with --metrics-port

    def handler(self, function: str) -> Callable[[Handler], Handler]:
        """Decorator: ``@worker.handler("syncToRedis")`` registers ``fn(job) -> Change(s)``."""

        def register(fn: Handler) -> Handler:
            self.handlers[function] = fn
            return fn

        return register

    def table(self, source: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: ``@worker.table("shop.users")`` registers ``fn(change: TableChange)`` for a
        safe-mode table; it gets each commit-confirmed change and returns what the key should
        hold (bytes/str, a :class:`gearsync.mapping.Value`, or None to delete), which goes
        through the versioned write. Needs a MySQL URL (safe mode)."""

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.table_handlers[source] = fn
            return fn

        return register

    @property
    def gearman(self) -> GearmanWorker:
        if self._gearman is None:
            s = self.settings
            functions = list(self.handlers) + ([s.safe_function] if s.mysql_url else [])
            if s.mysql_url and s.direct_function not in functions:  # configured tables, now or after a reload
                functions.append(s.direct_function)
            self._gearman = GearmanWorker(s.gearman, functions, window=s.window,
                                          max_in_hand=max(s.max_in_hand, s.window), ssl=s.gearman_ssl())
        return self._gearman

    # -- stopping ----------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self._stopping

    def request_stop(self) -> None:
        """Graceful: stop grabbing, finish the jobs in hand, then :meth:`run` returns."""
        if not self._stopping:
            log.info("stopping: finishing the jobs in hand (signal again to stop now)")
        self._stopping = True
        if self.applier is not None:
            self.applier.request_stop()
        if self._gearman is not None:
            self._gearman.pause()
            self._gearman.wakeup()

    def request_force_stop(self) -> None:
        """Now: :meth:`run` raises ForcedShutdown; unanswered jobs are requeued by gearmand."""
        log.warning("stopping now")
        self._stopping = self._force = True
        if self._task is not None:
            self._task.cancel()

    def reload(self) -> None:
        """SIGHUP: read the config again and apply what changed in the table mappings; a table
        whose mapping changed has its keys rewritten in the background (versioned, so live
        changes win). Connections, functions and other settings need a restart (logged)."""
        if self.reloader is None:
            return
        try:
            new = self.reloader()
        except (SettingsError, ValueError) as e:
            log.error("reload: the config is not usable, keeping the old one: %s", e)
            return
        old = self.settings
        changed = sorted(n for n in set(old.tables) | set(new.tables) if old.tables.get(n) != new.tables.get(n))
        others = [f for f in ("gearman", "redis_url", "mysql_url", "functions") if getattr(old, f) != getattr(new, f)]
        if others:
            log.warning("reload: %s changed; restart the worker for that", ", ".join(others))
        old.tables.clear()
        old.tables.update(new.tables)
        if self.applier is not None:
            self.applier.tables.update(new.tables, changed)
        log.info("reload: %d tables, mapping changed for %s", len(new.tables), ", ".join(changed) or "none")

    def handle_signal(self, signum: int) -> None:
        """First signal: graceful stop; second: forced."""
        log.info("received %s", signal.Signals(signum).name)
        if self._stopping:
            self.request_force_stop()
        else:
            self.request_stop()

    # -- running -----------------------------------------------------------------------
    def run_forever(self, install_signals: bool = True) -> int:
        """Blocking entry point; 0 after a graceful stop, 1 after a forced one."""
        try:
            asyncio.run(self.run(install_signals=install_signals))
        except ForcedShutdown:
            return 1
        return 0

    async def run(self, install_signals: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT) if install_signals else ()
        for sig in signals:
            loop.add_signal_handler(sig, self.handle_signal, sig)
        if self._redis is not None:
            self.sink = RedisSink(self._redis, replicas=self.settings.redis_replicas,
                                  replica_timeout=self.settings.redis_replica_timeout)
        else:
            self.sink = RedisSink.from_url(self.settings.redis_url, replicas=self.settings.redis_replicas,
                                           replica_timeout=self.settings.redis_replica_timeout)
        gm = self.gearman
        safe_task: asyncio.Task[None] | None = None
        web: Web | None = None
        if self.settings.mysql_url:
            self.applier = TableApplier(self.settings, self.sink, gm)
            self.applier.table_handlers = self.table_handlers
        if install_signals and self.reloader is not None:
            loop.add_signal_handler(signal.SIGHUP, self.reload)
            signals += (signal.SIGHUP,)
        s = self.settings
        if s.metrics_dir is not None:  # a child of a --concurrency group: the supervisor serves
            use_multiprocess(s.metrics_dir)
            self.metrics = WorkerMetrics(self)
        elif s.metrics_port is not None:
            self.metrics = WorkerMetrics(self)
            registry = self.metrics.registry
            web = Web(s.metrics_host, s.metrics_port, lambda: render(registry),
                      lambda: status_of(s)).start()
            log.info("metrics on http://%s:%d/metrics, status page on http://%s:%d/", s.metrics_host,
                     s.metrics_port, s.metrics_host, s.metrics_port)
        if self.applier is not None:
            if self._stopping:
                self.applier.request_stop()
            safe_task = asyncio.create_task(self.applier.run(), name="gearsync tables")
            safe_task.add_done_callback(_report_crash)
        try:
            await gm.start()
            log.info("worker started: gearmand %s, redis %s, functions %s%s",
                     ",".join(f"{h}:{p}" for h, p in self.settings.gearman),
                     redact(self.settings.redis_url), ",".join(self.handlers),
                     f"; safe mode: {self.settings.safe_function} from {redact(self.settings.mysql_url)}, "
                     f"sweep every {self.settings.sweep_interval:g} s for rows older than "
                     f"{self.settings.sweep_age:g} s" if self.applier else "")
            await self._loop(gm, self.sink)
            if safe_task is not None:
                self.applier.request_stop()  # type: ignore[union-attr]
                await safe_task
        except asyncio.CancelledError:
            if self._force:
                raise ForcedShutdown() from None
            raise
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            if safe_task is not None and not safe_task.done():
                safe_task.cancel()
                await asyncio.gather(safe_task, return_exceptions=True)
            await gm.close()
            if web is not None:
                web.close()
            if self.applier is not None:
                await self.applier.close()
            await self.sink.close()
            self._summary(force=True)
            self._task = None

    async def _loop(self, gm: GearmanWorker, sink: RedisSink) -> None:
        size = self.settings.batch_size
        while True:
            if self._stopping:
                gm.pause()
                batch = await gm.get_batch(size, timeout=0.05)  # drain what is in hand
                if not batch:
                    return
            else:
                batch = await gm.get_batch(size)
                if not batch:
                    continue
            if not await self.process(batch, gm, sink):
                return

    async def process(self, batch: list[Job], gm: GearmanWorker, sink: RedisSink) -> bool:
        """Handle one batch; False if stopping left it unapplied (gearmand will requeue it)."""
        t0 = time.monotonic()
        changes: list[Change] = []
        owners: list[int] = []
        ok: list[Job] = []
        failed: list[Job] = []
        handlers = {k.encode(): v for k, v in self.handlers.items()}
        if self.applier is not None:
            safe_fn, direct_fn = self.settings.safe_function.encode(), self.settings.direct_function.encode()
            theirs = [j for j in batch if j.function in (safe_fn, direct_fn)]
            if theirs:
                self.applier.submit([j for j in theirs if j.function == safe_fn])
                self.applier.submit_direct([j for j in theirs if j.function == direct_fn])
                batch = [j for j in batch if j.function not in (safe_fn, direct_fn)]
        versions: list[int] = []
        secret = self.secret
        for job in batch:
            fn = handlers.get(job.function)
            idx, start = len(ok), len(changes)  # a job's changes go in whole or not at all
            try:
                if fn is None:
                    raise LookupError(f"no handler for function {job.function!r}")
                for version, payload in decode_envelope(job.function, job.workload, secret):
                    result = fn(Record(job, payload, version))
                    for ch in [] if result is None else [result] if isinstance(result, Change) else result:
                        if reserved(ch.key):
                            self.keys_refused += 1
                            raise KeyRefused(f"refused: {ch.key!r} is under gearsync:, gearsync's own keys "
                                             "(versions, tombstones, checkpoints)")
                        changes.append(ch)
                        versions.append(version)
                        owners.append(idx)
            except Exception as e:
                del changes[start:], versions[start:], owners[start:]
                if isinstance(e, BadSignature):
                    self.jobs_unsigned += 1
                failed.append(job)
                log.warning("job %s (%s) failed: %s: %s", job.handle.decode(errors="replace"),
                            job.function.decode(errors="replace"), type(e).__name__, e)
                continue
            ok.append(job)
        if failed:
            self.jobs_failed += gm.fail(failed)
        if not await self._apply(changes, versions, owners, ok, gm, sink):
            return False
        self.batches += 1
        if self.metrics is not None:
            self.metrics.batch_done("direct", time.monotonic() - t0)
        self._summary()
        return True

    async def _apply(self, changes: list[Change], versions: list[int], owners: list[int], ok: list[Job],
                     gm: GearmanWorker, sink: RedisSink) -> bool:
        """Write the batch (see RedisSink.apply_changes), keep what Redis refused for good in the
        dead letters, then complete the jobs."""
        written, results = await self._until_written(
            lambda: sink.apply_changes(changes, versions, self.settings.tombstone_ttl), gm, len(ok))
        if not written:
            return False
        assert results is not None
        self.writes_stale += sum(1 for r, v in zip(results, versions) if v and r == STALE)
        for r, v, c in zip(results, versions, changes):
            if v and r == CORRUPT:
                self.keys_refused += 1
                log.error("%r not written: its stored version is not a number (written by hand?); "
                          "`gearsync verify --repair` resets it", c.key)
        bad: dict[int, Exception] = {}
        for i, r in enumerate(results):
            if isinstance(r, Exception):
                bad.setdefault(owners[i], r)
        if bad:  # Redis refused them for good (a WRONGTYPE): keep them in the dead letters, not lost
            entries = [dead_letter_entry(ok[i].function, ok[i].handle, ok[i].workload, e) for i, e in bad.items()]
            written, _ = await self._until_written(lambda: sink.dead_letter(entries), gm, len(ok))
            if not written:
                return False
            for i, e in bad.items():
                log.error("job %s (%s) refused by redis for good: %s: %s; kept in %s",
                          ok[i].handle.decode(errors="replace"), ok[i].function.decode(errors="replace"),
                          type(e).__name__, e, DEAD_LETTERS.decode())
            self.dead_letters += len(bad)
        gm.complete(ok)
        self.jobs_applied += len(ok) - len(bad)
        return True

    async def _until_written(self, write: Callable[[], Awaitable[T]], gm: GearmanWorker,
                             jobs: int) -> tuple[bool, T | None]:
        """:func:`until_written` for jobs in hand: grabbing pauses while Redis is away; on a stop
        the jobs stay unanswered and gearmand requeues them."""
        paused = False

        def on_retry() -> None:
            nonlocal paused
            self.redis_retries += 1
            if self.metrics is not None:
                self.metrics.sync()
            if not paused:
                gm.pause()
                paused = True

        result = await until_written(write, held=f"{jobs} jobs (gearmand requeues them on a stop)",
                                     backoff_max=self.settings.redis_backoff_max,
                                     stopping=lambda: self._stopping, on_retry=on_retry)
        if paused and result[0] and not self._stopping:
            gm.resume()
        return result

    def _summary(self, force: bool = False) -> None:
        now = time.monotonic()
        elapsed = now - self._last_log
        if not force and elapsed < self.settings.log_interval:
            return
        if self.applier is not None:
            c = self.applier.counters()
            if c != getattr(self, "_safe_logged", None):
                self._safe_logged = c
                log.info("safe mode totals: %s", ", ".join(f"{k} {v}" for k, v in c.items()))
        counts = (self.jobs_applied, self.jobs_failed, self.redis_retries)
        if counts == self._logged:
            self._last_log = now
            return
        d = [a - b for a, b in zip(counts, self._logged)]
        log.info("applied %d jobs (%.0f/s), %d failed, %d redis retries in %.1f s; totals %d/%d/%d",
                 d[0], d[0] / elapsed if elapsed > 0 else 0.0, d[1], d[2], elapsed, *counts)
        self._logged = counts
        self._last_log = now


def _report_crash(task: "asyncio.Task[None]") -> None:
    if not task.cancelled() and task.exception() is not None:
        log.critical("safe mode stopped: %r; outbox rows wait for another worker's sweeper",
                     task.exception(), exc_info=task.exception())

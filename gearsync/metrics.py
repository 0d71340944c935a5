"""Prometheus metrics of a worker (``gearsync worker --metrics-port N``)."""

from __future__ import annotations

from typing import Any, Protocol

from .prometheus import Metrics

__all__ = ["WorkerMetrics"]


class _Counted(Protocol):
    """What WorkerMetrics reads off a worker (gearsync.worker.Worker)."""

    jobs_applied: int
    jobs_failed: int
    redis_retries: int
    applier: Any


class WorkerMetrics:
    """The worker's Prometheus metrics (``--metrics-port``): totals copied from the worker's
    counters after each batch (no work on the per-job path), a batch-latency histogram per
    mode, and the safe-mode lag (age of the oldest outbox row, measured each sweep tick)."""

    def __init__(self, worker: _Counted) -> None:
        self.worker = worker
        m = self.registry = Metrics()
        self.applied = m.counter("gearsync_jobs_applied_total", "Jobs (direct) or outbox rows (safe) applied to "
                                 "Redis", ["mode"])
        self.failed = m.counter("gearsync_jobs_failed_total", "Jobs failed (bad payload, Redis error)", ["mode"])
        self.retried = m.counter("gearsync_redis_retries_total", "Redis writes retried while Redis was "
                                 "unreachable", ["mode"])
        self.latency = m.histogram("gearsync_batch_seconds", "Time to apply one batch of jobs", ["mode"])
        m.gauge("gearsync_outbox_lag_seconds", "Age of the oldest outbox row (0: empty; safe mode)",
                fn=lambda: (worker.applier.lag or 0.0) if worker.applier is not None else None)
        self.skipped = m.counter("gearsync_changes_skipped_total", "Changes of configured tables that could not be "
                                 "mapped (a configured column or the table gone): reported, left out", ["mode"])
        self.drift = m.gauge("gearsync_table_schema_drift", "1 while a configured table's changes cannot be mapped "
                             "(see gearsync status)", ["table"])
        self._seen: dict[tuple[str, str], float] = {}
        if worker.applier is not None:
            worker.applier.track_lag = True
            worker.applier.on_batch = lambda s: self.batch_done("safe", s)

    def _copy(self, counter: Any, mode: str, total: float) -> None:
        key = (counter.name, mode)
        delta = total - self._seen.get(key, 0.0)
        if delta > 0:
            counter.inc(delta, mode=mode)
            self._seen[key] = total

    def batch_done(self, mode: str, seconds: float) -> None:
        self.latency.observe(seconds, mode=mode)
        w = self.worker
        self._copy(self.applied, "direct", w.jobs_applied + (w.applier.direct_applied if w.applier else 0))
        self._copy(self.failed, "direct", w.jobs_failed)
        self._copy(self.retried, "direct", w.redis_retries)
        if w.applier is not None:
            self._copy(self.applied, "safe", w.applier.rows_applied)
            self._copy(self.failed, "safe", w.applier.jobs_bad)
            self._copy(self.retried, "safe", w.applier.redis_retries)
            self._copy(self.skipped, "safe", w.applier.changes_skipped)
            for table in w.applier.readers:
                self.drift.set(1.0 if table in w.applier.drift else 0.0, table=table)

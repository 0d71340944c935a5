"""Prometheus metrics of a worker, or of a ``--concurrency`` group as one, through prometheus_client.

A lone worker keeps its metrics in its own registry and serves them (gearsync.web). Under a
supervisor every child records into files of a shared directory (prometheus_client's
multiprocess mode, switched on in the child by :func:`use_multiprocess`) and the supervisor
serves their sum at one address: Prometheus scrapes one target per group, whatever N is.

Counters are the worker's own totals copied by :meth:`WorkerMetrics.sync` — after each batch,
at each Redis retry (so a scrape during an outage sees the retries rising) and at each sweep
tick — so nothing is added to the per-job path.
"""

from __future__ import annotations

import glob
import os
from typing import Any, Iterable, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["WorkerMetrics", "use_multiprocess", "group_registry", "render", "MULTIPROC_ENV"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def use_multiprocess(directory: str) -> None:
    """In a ``--concurrency`` child, before its metrics exist: record them in ``directory``."""
    os.environ[MULTIPROC_ENV] = directory
    values.ValueClass = values.get_value_class()


class _GroupCollector:
    """The sum of the children's files, leaving out a file a child is creating at this moment.

    prometheus_client creates a child's file empty and only then sizes it: read in between, it
    has not even its 8-byte header and MultiProcessCollector fails the whole scrape (seen in CI
    as a 500 from /metrics). Such a file holds no value yet, so leaving it out loses nothing;
    once it has its size it is consistent (the header's used length is written last)."""

    HEADER = 8

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def collect(self) -> Iterable[Metric]:
        files = []
        for path in glob.glob(os.path.join(self.directory, "*.db")):
            try:
                if os.path.getsize(path) >= self.HEADER:
                    files.append(path)
            except FileNotFoundError:  # a dead child's live gauges, removed since the glob
                pass
        return MultiProcessCollector.merge(files, accumulate=True)


def group_registry(directory: str) -> CollectorRegistry:
    """The supervisor's registry: the sum of its children's files in ``directory``."""
    registry = CollectorRegistry()
    registry.register(_GroupCollector(directory))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format of ``registry``."""
    return generate_latest(registry)


class _Counted(Protocol):
    """What WorkerMetrics reads off a worker (gearsync.worker.Worker)."""

    jobs_applied: int
    jobs_failed: int
    redis_retries: int
    dead_letters: int
    keys_refused: int
    applier: Any


class WorkerMetrics:
    """The worker's metrics (``--metrics-port``)."""

    def __init__(self, worker: _Counted, registry: CollectorRegistry | None = None) -> None:
        self.worker = worker
        r = self.registry = registry if registry is not None else CollectorRegistry()
        self.applied = Counter("gearsync_jobs_applied", "Jobs (direct) or outbox rows (safe) applied to Redis",
                               ["mode"], registry=r)
        self.failed = Counter("gearsync_jobs_failed", "Jobs failed (bad payload, a key under gearsync:)", ["mode"],
                              registry=r)
        self.retried = Counter("gearsync_redis_retries", "Redis writes retried while Redis was unreachable or "
                               "refused for a while (READONLY, OOM, …)", ["mode"], registry=r)
        self.dead = Counter("gearsync_dead_letters", "Changes Redis refused for good (a WRONGTYPE, a script error), "
                            "kept in the stream gearsync:dead", ["mode"], registry=r)
        self.refused = Counter("gearsync_keys_refused", "Writes refused: a key under gearsync: or a corrupt stored "
                               "version", ["mode"], registry=r)
        self.skipped = Counter("gearsync_changes_skipped", "Changes of configured tables that could not be mapped "
                               "(a configured column or the table gone): reported, left out", ["mode"], registry=r)
        self.latency = Histogram("gearsync_batch_seconds", "Time to apply one batch of jobs", ["mode"],
                                 buckets=BUCKETS, registry=r)
        self.lag = Gauge("gearsync_outbox_lag_seconds", "Age of the oldest outbox row (0: empty; safe mode), "
                         "measured each sweep tick", registry=r, multiprocess_mode="livemax")
        self.table_applied = Counter("gearsync_table_changes_applied", "Changes of a configured table applied",
                                     ["table"], registry=r)
        self.table_lag = Gauge("gearsync_table_lag_seconds", "Age of a configured table's latest change when it was "
                               "applied (from its commit to Redis)", ["table"], registry=r,
                               multiprocess_mode="livemax")
        self.drift = Gauge("gearsync_table_schema_drift", "1 while a configured table's changes cannot be mapped "
                           "(see gearsync status)", ["table"], registry=r, multiprocess_mode="livemax")
        self._seen: dict[tuple[Any, ...], float] = {}
        a = worker.applier
        if a is not None:
            a.track_lag = True
            a.on_batch = lambda s: self.batch_done("safe", s)
            a.on_tick = self.sync

    def _copy(self, counter: Any, total: float, **labels: str) -> None:
        key = (id(counter), *labels.values())
        delta = total - self._seen.get(key, 0.0)
        if delta > 0:
            counter.labels(**labels).inc(delta)
            self._seen[key] = total

    def batch_done(self, mode: str, seconds: float) -> None:
        self.latency.labels(mode=mode).observe(seconds)
        self.sync()

    def sync(self) -> None:
        """Copy the worker's totals into the metrics."""
        w, a = self.worker, self.worker.applier
        self._copy(self.applied, w.jobs_applied + (a.direct_applied if a else 0), mode="direct")
        self._copy(self.failed, w.jobs_failed, mode="direct")
        self._copy(self.retried, w.redis_retries, mode="direct")
        self._copy(self.dead, w.dead_letters, mode="direct")
        self._copy(self.refused, w.keys_refused, mode="direct")
        if a is None:
            return
        self._copy(self.applied, a.rows_applied, mode="safe")
        self._copy(self.failed, a.jobs_bad, mode="safe")
        self._copy(self.retried, a.redis_retries, mode="safe")
        self._copy(self.dead, a.dead_letters, mode="safe")
        self._copy(self.refused, a.keys_refused + a.versions_corrupt, mode="safe")
        self._copy(self.skipped, a.changes_skipped, mode="safe")
        self.lag.set(a.lag or 0.0)
        for table, n in a.applied_by_table.items():
            self._copy(self.table_applied, n, table=table)
        for table, age in a.lag_by_table.items():
            self.table_lag.labels(table=table).set(age)
        for table in a.tables.readers:
            self.drift.labels(table=table).set(1.0 if table in a.tables.drift else 0.0)

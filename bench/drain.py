"""Worker drain: N queued seed-contract jobs, time until Redis holds them all, with 1, 2 and 4
`gearsync worker` processes [ceiling: one Python process doing a raw pipelined SET of the same
keys], and with one process held to `--window 32` (the default before the grab window opened
like a slow start) against the default. Also the peak RSS of a worker and of gearmand with N
jobs queued. And the same N changes as gearsync_send sends them — envelopes of 64 records,
each with its version, applied through the versioned script — with one worker (the seed's
plain jobs are the baseline).

The same drain into a Redis Cluster (3 primaries with a replica each, on the same machine)
with 1 and 2 workers, and with 1 worker waiting for a replica per batch
(GEARSYNC_REDIS_REPLICAS=1), against the single-Redis rows of the same run; and the versioned
writes of safe mode (512 per batch, one process) into one Redis and into the cluster.

Workers are started and registered first, then SIGSTOPped while the jobs are queued, and
SIGCONTed at t0, so process start-up is not counted.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Callable

from common import QUICK, ROOT, Report, WorkerProcess, repeats, rss_kb, start_stack, wait_for

from gearsync.changes import VersionedChange
from gearsync.envelope import encode
from gearsync.gearman.client import GearmanClient
from gearsync.redis_sink import RedisSink
from gearsync.testing.redis_cluster import RedisCluster
from gearsync.testing.stack import Stack

N = 5_000 if QUICK else 50_000
WORKERS = (1, 2) if QUICK else (1, 2, 4)


def payloads() -> list[bytes]:
    return [json.dumps({"id": i, "name": f"name {i} \u00e9\t\"q\""}).encode() for i in range(N)]


def drain(stack: Stack, env: dict[str, str], jobs: list[bytes], n: int, count: Callable[[], int],
          flush: Callable[[], None]) -> tuple[float, list[WorkerProcess]]:
    """Seconds until ``n`` workers (stopped while the jobs are queued) have written them all."""
    flush()
    workers = [WorkerProcess(env, gearmand=stack.gearmand).start() for _ in range(n)]
    wait_for(lambda: stack.gearmand.status().get("syncToRedis", (0, 0, 0))[2] >= n, 10)
    for w in workers:
        w.signal(signal.SIGSTOP)
    with GearmanClient(stack.gearmand.host, stack.gearmand.port) as c:
        c.submit_many("syncToRedis", jobs)
    t0 = time.perf_counter()
    for w in workers:
        w.signal(signal.SIGCONT)
    wait_for(lambda: count() >= len(jobs), 300, 0.002, "Redis to hold every job")
    return time.perf_counter() - t0, workers


def versioned_rate(url: str, batches: int = 20 if QUICK else 100) -> float:
    """Versioned writes (safe mode's Redis half) per second, 512 per batch, one process."""
    async def go() -> float:
        sink = RedisSink.from_url(url)
        try:
            await sink.apply_versioned([VersionedChange(b"warm", 1, b"x")])
            work = [[VersionedChange(b"row:%d:%d" % (b, i), 1_000_000 + b, b"value %d" % i) for i in range(512)]
                    for b in range(batches)]
            t0 = time.perf_counter()
            for batch in work:
                await sink.apply_versioned(batch)
            return batches * 512 / (time.perf_counter() - t0)
        finally:
            await sink.close()
    return asyncio.run(go())


def cluster_rows(report: Report, stack: Stack, jobs: list[bytes]) -> None:
    base = ROOT / ".run" / "bench-drain-cluster"
    with RedisCluster(base, primaries=3, replicas=1) as cluster:
        primaries = [n.client() for n in cluster.primaries()]

        def count() -> int:
            return sum(int(p.dbsize()) for p in primaries)

        def flush() -> None:
            for p in primaries:
                p.flushall()
            cluster.wait_ok()

        for _ in range(repeats(3)):
            for n, replicas in ((1, 0), (2, 0), (1, 1)):
                env = dict(stack.env(), GEARSYNC_REDIS_URL=cluster.url, GEARSYNC_REDIS_REPLICAS=str(replicas))
                took, workers = drain(stack, env, jobs, n, count, flush)
                for w in workers:
                    w.stop()
                name = f"gearsync worker x{n} -> cluster" + (", WAIT 1 replica" if replicas else "")
                report.add(name, len(jobs) / took, "jobs/s", baseline=f"gearsync worker x{n}")
            flush()
            report.add("versioned writes -> cluster", versioned_rate(cluster.url), "writes/s",
                       baseline="versioned writes -> one Redis")
        report.note("cluster: 3 primaries + 3 replicas (6 redis-server) on the same cores as the workers, "
                    "gearmand and the single Redis; a batch becomes one command per hash slot (up to 512 "
                    "instead of one MSET or two EVALSHA)")


def main() -> None:
    report = Report("drain", f"Worker drain ({N:,} queued jobs, jobs/s)")
    stack = start_stack("drain")
    jobs = payloads()
    r = stack.redis.client()
    try:
        host, port = stack.gearmand.host, stack.gearmand.port
        for _ in range(repeats(3)):
            r.flushall()
            t0 = time.perf_counter()
            pipe = r.pipeline(transaction=False)
            for i, p in enumerate(jobs):
                pipe.set(str(i), p)
                if i % 512 == 511:
                    pipe.execute()
            pipe.execute()
            report.add("raw pipelined SET (ceiling)", N / (time.perf_counter() - t0), "jobs/s")

            for n, window in [(n, None) for n in WORKERS] + [(1, 32)]:
                r.flushall()
                env = stack.env() if window is None else dict(stack.env(), GEARSYNC_WINDOW=str(window))
                workers = [WorkerProcess(env, gearmand=stack.gearmand).start() for _ in range(n)]
                try:
                    wait_for(lambda: stack.gearmand.status().get("syncToRedis", (0, 0, 0))[2] >= n, 10)
                    for w in workers:
                        w.signal(signal.SIGSTOP)
                    with GearmanClient(host, port) as c:
                        c.submit_many("syncToRedis", jobs)
                    gm_rss = rss_kb(stack.gearmand.proc.pid)  # type: ignore[union-attr]
                    t0 = time.perf_counter()
                    for w in workers:
                        w.signal(signal.SIGCONT)
                    wait_for(lambda: r.dbsize() >= N, 120, 0.002, "Redis to hold every job")
                    took = time.perf_counter() - t0
                    if window is not None:  # the same worker with the window it had before
                        report.add(f"gearsync worker x1, --window {window} (the default before)", N / took, "jobs/s",
                                   baseline="gearsync worker x1")
                        continue
                    report.add(f"gearsync worker x{n}", N / took, "jobs/s", baseline="raw pipelined SET (ceiling)")
                    if n == 1:
                        assert workers[0].proc is not None
                        report.add("worker peak RSS", rss_kb(workers[0].proc.pid, "VmHWM") / 1024, "MiB",
                                   higher_is_better=False)
                        report.add(f"gearmand RSS, {N:,} queued", gm_rss / 1024, "MiB", higher_is_better=False)
                finally:
                    for w in workers:
                        w.signal(signal.SIGCONT)
                        w.stop()
            # versioned direct mode: the envelopes gearsync_send makes (64 records a job)
            r.flushall()
            w = WorkerProcess(stack.env(), gearmand=stack.gearmand).start()
            try:
                wait_for(lambda: stack.gearmand.status().get("syncToRedis", (0, 0, 0))[2] >= 1, 10)
                w.signal(signal.SIGSTOP)
                envelopes = [encode(b"syncToRedis", [(1_000_000 + i + j, jobs[i + j]) for j in range(min(64, N - i))])
                             for i in range(0, N, 64)]
                with GearmanClient(host, port) as c:
                    c.submit_many("syncToRedis", envelopes)
                t0 = time.perf_counter()
                w.signal(signal.SIGCONT)
                wait_for(lambda: r.dbsize() >= 2 * N, 120, 0.002, "Redis to hold every change and its version")
                report.add("versioned (envelopes of 64), worker x1", N / (time.perf_counter() - t0), "changes/s",
                           baseline="gearsync worker x1")
            finally:
                w.signal(signal.SIGCONT)
                w.stop()
            r.flushall()
            report.add("versioned writes -> one Redis", versioned_rate(stack.redis_url), "writes/s")
        cluster_rows(report, stack, jobs)
        report.note("the seed's PHP worker (libgearman) did 7,564 jobs/s with one process, 19,106 with four (DESIGN)")
    finally:
        stack.stop()
    report.finish()


if __name__ == "__main__":
    main()

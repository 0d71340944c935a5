"""Worker drain: N queued seed-contract jobs, time until Redis holds them all, with 1, 2 and 4
`gearsync worker` processes [ceiling: one Python process doing a raw pipelined SET of the same
keys]. Also the peak RSS of a worker and of gearmand with N jobs queued. And the same N
changes as gearsync_send sends them — envelopes of 64 records, each with its version, applied
through the versioned script — with one worker (the seed's plain jobs are the baseline).

Workers are started and registered first, then SIGSTOPped while the jobs are queued, and
SIGCONTed at t0, so process start-up is not counted.
"""

from __future__ import annotations

import json
import signal
import time

from common import QUICK, Report, WorkerProcess, repeats, rss_kb, start_stack, wait_for

from gearsync.envelope import encode
from gearsync.gearman.client import GearmanClient

N = 5_000 if QUICK else 50_000
WORKERS = (1, 2) if QUICK else (1, 2, 4)


def payloads() -> list[bytes]:
    return [json.dumps({"id": i, "name": f"name {i} \u00e9\t\"q\""}).encode() for i in range(N)]


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

            for n in WORKERS:
                r.flushall()
                workers = [WorkerProcess(stack.env(), gearmand=stack.gearmand).start() for _ in range(n)]
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
        report.note("the seed's PHP worker (libgearman) did 7,564 jobs/s with one process, 19,106 with four (DESIGN)")
    finally:
        stack.stop()
    report.finish()


if __name__ == "__main__":
    main()

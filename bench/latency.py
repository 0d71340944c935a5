"""End-to-end latency: from the writer's autocommit INSERT returning to the key being written in
Redis, at a paced rate, for the direct-mode table (and the safe-mode one where installed).

A separate process subscribes to Redis keyspace notifications and stamps the first write of
each key with CLOCK_MONOTONIC (shared by all processes of the machine); the writer stamps the
moment each INSERT returned. Latency = the difference. The floor row does the same with the
writer SETting the key in Redis itself, no database: the part of each number that is the
measuring (two Python processes and Redis's notification on the same cores), not gearsync.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import statistics
import time
from typing import Any

from common import QUICK, ROOT, Report, WorkerProcess, start_stack, wait_for

SECONDS = 2.0 if QUICK else 10.0
#: the server is STARTED with this innodb_flush_log_at_trx_commit (1, the default, unless FLUSH=2)
FLUSH = int(os.environ.get("FLUSH", "1"))
RATES = (200, 2000)
#: mode -> (table, key prefix); the floor writes Redis itself: what the measuring adds (the
#: writer, Redis's keyspace notification, the subscriber's stamp) on the same busy machine
TABLES: dict[str, tuple[str | None, str]] = {"floor (SET from the writer, no database)": (None, "floor:"),
                                             "direct": ("test.test", ""), "safe": ("test.test_safe", "test_safe:")}


def _subscriber(redis_url: str, ready: Any, out: Any, stop: Any) -> None:
    import redis

    r = redis.Redis.from_url(redis_url)
    ps = r.pubsub(ignore_subscribe_messages=True)
    ps.psubscribe("__keyspace@0__:*")
    ready.set()
    seen: dict[bytes, float] = {}
    while not stop.is_set():
        msg = ps.get_message(timeout=0.05)
        if msg and msg["data"] == b"set":
            key = msg["channel"][15:]
            if key not in seen:
                seen[key] = time.monotonic()
    out.put(seen)


def run(stack: Any, table: str | None, prefix: str, rate: int) -> tuple[list[float], int]:
    """Paced writes into table (None: the floor, a SET straight to Redis from the writer);
    (latencies in ms, the rate achieved)."""
    assert stack.mysql is not None
    r = stack.redis.client()
    r.flushall()
    if table is not None:
        stack.mysql.execute(f"TRUNCATE {table}")
    ready, stop = mp.Event(), mp.Event()
    out: Any = mp.Queue()
    sub = mp.Process(target=_subscriber, args=(stack.redis_url, ready, out, stop), daemon=True)
    sub.start()
    ready.wait(10)
    time.sleep(0.2)
    conn = stack.mysql.connect()
    n = int(rate * SECONDS)
    committed: dict[bytes, float] = {}
    start = time.monotonic()
    with conn.cursor() as cur:
        for i in range(n):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if table is None:
                r.set(f"{prefix}{i}", f"v{i}")
            else:
                cur.execute(f"INSERT INTO {table} VALUES ({i}, 'v{i}')")
            committed[f"{prefix}{i}".encode()] = time.monotonic()
    achieved = n / (time.monotonic() - start)
    conn.close()
    wait_for(lambda: r.dbsize() >= n, 60, 0.01, "every key in Redis")
    time.sleep(0.1)
    stop.set()
    seen = out.get(timeout=30)
    sub.join(10)
    lat = [(seen[k] - t) * 1000 for k, t in committed.items() if k in seen]
    return lat, int(achieved)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def main() -> None:
    report = Report("latency", f"End-to-end latency, COMMIT returned -> value in Redis ({SECONDS:.0f} s per rate, ms)")
    stack = start_stack("latency", durable=True, mysqld_args=[f"--innodb-flush-log-at-trx-commit={FLUSH}"])
    try:
        assert stack.mysql is not None
        got = stack.mysql.execute("SELECT @@innodb_flush_log_at_trx_commit")[0][0]
        report.note(f"server started with innodb_flush_log_at_trx_commit={got} (FLUSH=1|2)")
        stack.redis.client().config_set("notify-keyspace-events", "K$")
        present = {f"{s}.{t}" for s, t in stack.mysql.execute(
            "SELECT table_schema, table_name FROM information_schema.tables")}
        log = ROOT / ".run" / "bench-latency" / "worker.log"
        with WorkerProcess(stack.env(), gearmand=stack.gearmand, log_path=log):
            for mode, (table, prefix) in TABLES.items():
                if os.environ.get("MODES") and mode.split()[0] not in os.environ["MODES"].split(","):
                    continue
                if table is not None and table not in present:
                    report.note(f"{mode} mode not measured: {table} is not installed")
                    continue
                for rate in RATES:
                    lat, achieved = run(stack, table, prefix, rate)
                    tag = f"{mode} {rate}/s"
                    report.add(f"{tag} p50", statistics.median(lat), "ms", higher_is_better=False)
                    report.add(f"{tag} p99", pct(lat, 99), "ms", higher_is_better=False)
                    report.add(f"{tag} max", max(lat), "ms", higher_is_better=False)
                    swept = sum(int(n) for n in re.findall(r"outbox sweep applied (\d+) rows", log.read_text()))
                    report.note(f"{tag}: {len(lat):,} writes, achieved {achieved:,}/s"
                                + (f", {swept} applied by the sweeper so far" if mode == "safe" else ""))
    finally:
        stack.stop()
    report.finish()


if __name__ == "__main__":
    main()

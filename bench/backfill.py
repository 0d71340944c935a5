"""Backfill: N rows of a 4-column table into Redis with `gearsync backfill` (in process, one
connection each; and `--jobs 2`: two processes), as a JSON value, a single column and a hash [ceiling: the same keys and
values written with a raw pipelined MSET, no database read]. Target: >= 100,000 rows/s for
1,000,000 rows.
"""

from __future__ import annotations

import time

from common import QUICK, Report, repeats, start_stack

import redis

from gearsync.backfill import backfill_parallel, backfill_table
from gearsync.config import parse
from gearsync.connections import connect_mysql as connect
from gearsync.schema import resolve
from gearsync.testing.sqlserver import numbers

N = 100_000 if QUICK else 1_000_000


def main() -> None:
    report = Report("backfill", f"Backfill ({N:,} rows, rows/s)")
    stack = start_stack("backfill")
    assert stack.mysql is not None
    try:
        conn = connect(stack.mysql_url)
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE gs_bench")
            cur.execute("CREATE TABLE gs_bench.users (id INT PRIMARY KEY, name VARCHAR(64), email VARCHAR(64), "
                        "score INT) ENGINE=InnoDB")
            t0 = time.perf_counter()
            cur.execute(f"INSERT INTO gs_bench.users SELECT seq, CONCAT('user ', seq), CONCAT('u', seq, "
                        f"'@example.com'), seq % 1000 FROM {numbers(N)}")
            report.note(f"loading {N:,} rows took {time.perf_counter() - t0:.1f} s")
        r = redis.Redis.from_url(stack.redis_url)
        shapes = {"json": {"value": "json"}, "column": {"value": "column", "column": "name"},
                  "hash": {"value": "hash", "columns": ["name", "email"]}}
        for _ in range(repeats(3)):
            r.flushall()
            pipe = r.pipeline(transaction=False)
            t0 = time.perf_counter()
            for i in range(1, N + 1):
                pipe.set(f"user:{i}", f'{{"id":{i},"name":"user {i}","email":"u{i}@example.com","score":{i % 1000}}}')
                if i % 5000 == 0:
                    pipe.execute()
            pipe.execute()
            report.add("raw pipelined SET (ceiling)", N / (time.perf_counter() - t0), "rows/s")
            for shape, spec in shapes.items():
                r.flushall()
                cfg = parse({"tables": {"gs_bench.users": {"key": "user:{id}", **spec}}})
                (rt,) = resolve(cfg, conn)
                res = backfill_table(rt, conn, r, progress=False)
                assert res.rows == N and r.dbsize() == N, (res, r.dbsize())
                report.add(f"gearsync backfill, {shape}", res.rate, "rows/s", baseline="raw pipelined SET (ceiling)")
                r.flushall()
                res = backfill_parallel(rt, stack.mysql_url, stack.redis_url, 2, progress=False)
                assert res.rows == N and r.dbsize() == N, (res, r.dbsize())
                report.add(f"gearsync backfill --jobs 2, {shape}", res.rate, "rows/s",
                           baseline="raw pipelined SET (ceiling)")
        conn.close()
    finally:
        stack.stop()
    report.finish()


if __name__ == "__main__":
    main()

"""Write cost with a worker draining at the same time, on the same cores: what a production
server with gearsync installed pays, as opposed to write_cost's database side alone.

One stack whose server was started with innodb_flush_log_at_trx_commit=1 (the default, set at
start), a `gearsync worker` serving both modes into its Redis. Per round, interleaved: N
single-row autocommit INSERTs through the `mariadb` C client into the trigger-free table
[baseline], the direct-mode demo table (test.test) and the safe-mode one (test.test_safe,
outbox + doorbell); after each, the bench waits until Redis holds every key. Reported: the
writer's rows/s, the time until the last key arrived, and the CPU per row (user + system, from
/proc) of the database server, gearmand, the worker and Redis, counted from the first
statement to the last key.

LINGER_US=<µs> (the library's linger_us) and GEARMAND_THREADS=<n> (gearmand's --threads) compare
settings run against run (common.start_stack).
"""

from __future__ import annotations

import time

from common import CLIENT, QUICK, SERVER, Report, WorkerProcess, mysql_client, repeats, start_stack, wait_for
from write_cost import cpu_seconds

N = 2_000 if QUICK else 6_000
TABLES = {"no trigger": ("bench.plain", None), "direct": ("test.test", ""), "safe": ("test.test_safe", "test_safe:")}


def main() -> None:
    report = Report("write_drain", f"Single-row INSERTs with a worker draining on the same cores "
                                   f"({N:,} a round, server started with flush=1, {CLIENT} C client)")
    stack = start_stack("write-drain", durable=True, mysqld_args=["--innodb-flush-log-at-trx-commit=1"])
    try:
        m = stack.mysql
        assert m is not None
        got = m.execute("SELECT @@innodb_flush_log_at_trx_commit")[0][0]
        report.note(f"server started with innodb_flush_log_at_trx_commit={got}; gearmand --threads "
                    f"{stack.gearmand.threads}")
        m.execute("CREATE DATABASE IF NOT EXISTS bench")
        m.execute("CREATE TABLE bench.plain (id INT PRIMARY KEY, name VARCHAR(255)) "
                  "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
        r = stack.redis.client()
        log = stack.base_dir / "worker.log"
        with WorkerProcess(stack.env(), gearmand=stack.gearmand, log_path=log) as w:
            assert w.proc is not None and m.pid is not None and stack.gearmand.pid is not None
            pids = {SERVER: m.pid, "gearmand": stack.gearmand.pid, "worker": w.proc.pid,
                    "redis": stack.redis.pid}
            for _ in range(repeats(3)):
                for label, (table, prefix) in TABLES.items():
                    mysql_client(stack, f"TRUNCATE {table}")
                    r.flushall()
                    sql = "".join(f"INSERT INTO {table} VALUES ({i}, 'name {i}');\n" for i in range(N))
                    cpu0 = {k: cpu_seconds(p) for k, p in pids.items() if p}
                    t0 = time.monotonic()
                    took = mysql_client(stack, sql)
                    if prefix is not None:
                        wait_for(lambda: r.exists(f"{prefix}{N - 1}") and r.dbsize() >= N, 120, 0.005,
                                 f"{label}: every key in Redis")
                    drained = time.monotonic() - t0
                    cpu = {k: cpu_seconds(p) - cpu0[k] for k, p in pids.items() if p}
                    report.add(f"{label}: writer rows/s", N / took, "rows/s",
                               baseline=None if label == "no trigger" else "no trigger: writer rows/s")
                    if prefix is not None:
                        report.add(f"{label}: seconds until the last key is in Redis", drained, "s",
                                   higher_is_better=False)
                    report.add(f"{label}: CPU/row, all processes", sum(cpu.values()) / N * 1e6, "us",
                               higher_is_better=False)
                    for proc, secs in cpu.items():
                        report.add(f"  {label}: CPU/row {proc}", secs / N * 1e6, "us", higher_is_better=False)
    finally:
        stack.stop()
    report.finish()


if __name__ == "__main__":
    main()

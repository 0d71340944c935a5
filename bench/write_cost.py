"""Safe-mode performance guard: single-row autocommit INSERT rows/s with no trigger, the
direct-mode trigger and the safe-mode (outbox) trigger, measured in one run, interleaved.

Target: safe >= 0.70x no trigger (the seed's direct trigger: 0.50x). One connection of the
server's C client per measurement (`make bench-mysql`: MySQL's, in its container); a safe-mode worker drains the outbox meanwhile (as in
production the outbox stays small). Two server settings: the throwaway stack's
`innodb_flush_log_at_trx_commit=2` ("fast": no fsync per commit, the trigger's cost is the
whole difference) and the servers' default `=1` ("durable": an fsync per commit; the binary
log stays off on both). Where the UDF
library has `gearsync_send` (pipelined, no wait for gearmand's ack) the safe trigger is also
measured with it as the doorbell. `bench/trigger_cost.py` measures more workloads.
"""

from __future__ import annotations

import os
import subprocess

from common import CLIENT, QUICK, ROOT, Report, Stack, WorkerProcess, mysql_client, repeats

from gearsync.triggers import safe_triggers

N = 2_000 if QUICK else 6_000
BASE = "INSERT, no trigger"


def _stack(name: str, durable: bool) -> Stack:
    base = ROOT / ".run" / f"bench-{name}"
    subprocess.run(["rm", "-rf", str(base)], check=True)
    stack = Stack(base_dir=base, durable=durable).start()
    stack.install_sql()
    return stack


def _cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(report: Report, durable: bool) -> None:
    setting = "durable" if durable else "fast"
    stack = _stack(f"write-cost-{setting}", durable)
    worker = None
    try:
        assert stack.mysql is not None
        m = stack.mysql
        m.execute("CREATE DATABASE IF NOT EXISTS bench")
        m.execute("CREATE TABLE IF NOT EXISTS bench.plain (id INT PRIMARY KEY, name VARCHAR(255)) "
                  "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
        tables = {"no trigger": "bench.plain", "direct trigger": "test.test",
                  "safe trigger (gman_do_background)": "test.test_safe"}
        try:
            m.execute("CREATE FUNCTION IF NOT EXISTS gearsync_send RETURNS STRING SONAME 'gearsync_udf.so'")
            m.execute("CREATE TABLE IF NOT EXISTS bench.safe_send (id INT PRIMARY KEY, name VARCHAR(255)) "
                      "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
            for stmt in safe_triggers("bench", "safe_send", ["id"], ["name"], "test_safe:", doorbell="gearsync_send"):
                m.execute(stmt)
            tables["safe trigger (gearsync_send)"] = "bench.safe_send"
        except Exception as e:  # an older library
            report.note(f"gearsync_send not measured: {e}")
        worker = WorkerProcess(stack.env(), gearmand=stack.gearmand, function="gearsync").start()
        sql = {t: "".join(f"INSERT INTO {t} VALUES ({i}, 'name {i}');\n" for i in range(N)) for t in tables.values()}
        base = f"{BASE} ({setting})"
        pids = [p for p in (m.pid, stack.gearmand.pid, worker.proc.pid if worker.proc else None) if p is not None]
        for _ in range(repeats(5)):
            for label, table in tables.items():
                mysql_client(stack, f"TRUNCATE {table}")
                cpu0 = sum(_cpu(p) for p in pids)
                took = mysql_client(stack, sql[table])
                cpu = sum(_cpu(p) for p in pids) - cpu0
                name = f"INSERT, {label} ({setting})"
                report.add(name, N / took, "rows/s", baseline=None if name == base else base)
                # CPU of the server + gearmand + worker per row: steadier than rows/s on a busy machine
                report.add(f"CPU/row, {label} ({setting})", cpu / N * 1e6, "us", higher_is_better=False,
                           baseline=None if name == base else f"CPU/row, no trigger ({setting})")
        left = m.execute("SELECT COUNT(*) FROM gearsync.outbox")[0][0]
        report.note(f"{setting}: {left} outbox rows left when the run ended (the worker drains them)")
    finally:
        if worker is not None:
            worker.stop()
        stack.stop()


def main() -> None:
    report = Report("write_cost", f"Single-row autocommit INSERT, {N:,} rows (rows/s, {CLIENT} C client)")
    settings = os.environ.get("WRITE_COST_SETTINGS", "fast,durable").split(",")
    for setting in settings:
        measure(report, durable=setting.strip() == "durable")
    report.finish()


if __name__ == "__main__":
    main()

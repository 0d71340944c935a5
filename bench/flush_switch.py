"""Issue 14's question: direct mode ran about 2x slower on a server started with
innodb_flush_log_at_trx_commit=1 and switched to 2 with SET GLOBAL, while the seed's recipe
did not change.  Which setting does it: the flush mode a server was started with, the switch,
or innodb_doublewrite (the test stack's `durable` flag also turned doublewrite on)?

Answer (measured here, MariaDB 10.11): neither the flush mode nor doublewrite -- the redo log's
buffering.  MariaDB chooses innodb_log_file_buffering at startup: OFF ("File system buffers
for log disabled", O_DIRECT writes of ib_logfile0) when started with flush=1, ON when started
with 2.  SET GLOBAL innodb_flush_log_at_trx_commit=2 leaves it OFF, so every commit still waits
for a synchronous device write (perf: __iomap_dio_rw waits and virtio iowrite16 in mariadbd);
a trigger-free INSERT took 133-147 us of mariadbd CPU and ran at 1,900-2,300 rows/s against
40 us and 5,350-6,900 rows/s on a server started with 2, and SET GLOBAL
innodb_log_file_buffering=ON as well brought it back (47 us, 5,600-6,300 rows/s).  Case E
below.  A bench must start the server with the setting it measures (bench/write_cost.py does).

Four servers, one after the other, each measured the same way (N single-row autocommit INSERTs
through the `mariadb` client, no worker, interleaved rounds, medians; rows/s as a ratio to the
same server's trigger-free table, and CPU per row of mariadbd and gearmand):
  A  started flush=2, doublewrite=0      (the old test stack's fast server)
  B  started flush=2, doublewrite=1
  C  started flush=1, doublewrite=1, then SET GLOBAL flush=2   (the issue's server)
  D  started flush=1, doublewrite=0, then SET GLOBAL flush=2
  E  started flush=1, doublewrite=1, then SET GLOBAL flush=2 and innodb_log_file_buffering=ON
with the direct trigger on the old sender (per-thread pipe) and the new one, and the seed's
gman_do_background trigger.
"""

from __future__ import annotations

import os

from common import QUICK, ROOT, SERVER, Report, mysql_client, repeats
from write_cost import cpu_seconds, old_library, two_sender_stack, use_sender

N = 500 if QUICK else 2_000
CASES = {  # name: (flush at start, doublewrite, SET GLOBAL statements)
    "A start 2, dw 0": (2, 0, []),
    "B start 2, dw 1": (2, 1, []),
    "C start 1, dw 1, SET GLOBAL 2": (1, 1, ["SET GLOBAL innodb_flush_log_at_trx_commit = 2"]),
    "D start 1, dw 0, SET GLOBAL 2": (1, 0, ["SET GLOBAL innodb_flush_log_at_trx_commit = 2"]),
    "E start 1, dw 1, SET GLOBAL 2 + log buffering": (1, 1, ["SET GLOBAL innodb_flush_log_at_trx_commit = 2",
                                                             "SET GLOBAL innodb_log_file_buffering = ON"]),
}


def measure(report: Report, case: str, old_so: str) -> None:
    start_flush, doublewrite, switch = CASES[case]
    stack = two_sender_stack("flush-switch", [f"--innodb-flush-log-at-trx-commit={start_flush}",
                                              f"--innodb-doublewrite={doublewrite}"], old_so)
    assert stack.mysql is not None
    try:
        stack.install_sql()
        m = stack.mysql
        for stmt in switch:
            m.execute(stmt)
        report.note(f"{case}: innodb_log_file_buffering=" +
                    str(m.execute("SELECT @@innodb_log_file_buffering")[0][0]))
        m.execute("CREATE DATABASE IF NOT EXISTS bench")
        for t in ("plain", "direct", "seed"):
            m.execute(f"CREATE TABLE bench.{t} (id INT PRIMARY KEY, name VARCHAR(255))")
        m.execute("CREATE TRIGGER bench.direct_ai AFTER INSERT ON bench.direct FOR EACH ROW "
                  "DO gearsync_send('syncToRedis', udf_json_object(NEW.id AS id, NEW.name AS name))")
        m.execute("CREATE TRIGGER bench.seed_ai AFTER INSERT ON bench.seed FOR EACH ROW "
                  "DO gman_do_background('syncToRedis', udf_json_object(NEW.id AS id, NEW.name AS name))")
        variants = [("no trigger", "bench.plain", "gearsync_udf.so"),
                    ("direct, new sender", "bench.direct", "gearsync_udf.so"),
                    ("seed recipe", "bench.seed", "gearsync_udf.so"),
                    ("direct, old sender", "bench.direct", "gearsync_udf_old.so")]
        assert m.pid is not None and stack.gearmand.pid is not None
        pids = {"mariadbd": m.pid, "gearmand": stack.gearmand.pid}
        current = "gearsync_udf.so"
        for _ in range(repeats(3)):
            for label, table, so in variants:
                if so != current:
                    use_sender(m, so)
                    current = so
                mysql_client(stack, f"TRUNCATE {table}")
                sql = "".join(f"INSERT INTO {table} VALUES ({i}, 'name {i}');\n" for i in range(N))
                cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
                took = mysql_client(stack, sql)
                base_name = f"{case}: no trigger"
                name = f"{case}: {label}"
                report.add(name, N / took, "rows/s", baseline=None if name == base_name else base_name)
                for proc, p in pids.items():
                    report.add(f"  CPU/row {proc}, {label} ({case[0]})", (cpu_seconds(p) - cpu0[proc]) / N * 1e6,
                               "us", higher_is_better=False)
            use_sender(m, "gearsync_udf.so")
            current = "gearsync_udf.so"
    finally:
        stack.stop()


def main() -> None:
    if SERVER != "mariadb":  # innodb_log_file_buffering and the question are MariaDB's
        raise SystemExit(f"flush_switch measures MariaDB only (GEARSYNC_TEST_SERVER={SERVER})")
    report = Report("flush_switch", f"Started flush mode vs SET GLOBAL vs doublewrite ({N:,} single-row INSERTs)")
    old_so = str(ROOT / ".run" / "gearsync_udf_old.so")
    rev = old_library(old_so)
    report.note(f"old sender: the library at {rev} (before udf/gs_sender.c)")
    for case in os.environ.get("FLUSH_SWITCH_CASES", ",".join(c[0] for c in CASES)).split(","):
        measure(report, next(c for c in CASES if c[0] == case.strip()), old_so)
    report.finish()


if __name__ == "__main__":
    main()

"""What a writer pays for the triggers, at both durability settings, old sender vs new, in one run.

For each setting the database is STARTED with it -- `innodb_flush_log_at_trx_commit=1` (the
servers' default: an fsync per commit) and `=2` -- never switched with SET GLOBAL (see
bench/flush_switch.py for why that matters); doublewrite stays at its default (on) in both.
One server per setting (MariaDB, or MySQL with `make bench-mysql`), one connection of its C
client per measurement, no worker (jobs queue in gearmand: the database side alone).

Tables: no trigger [the baseline of every ratio], the floor (a row trigger whose body only
sets a user variable: what the server charges for running any trigger), the direct trigger (`gearsync_send(
'syncToRedis', udf_json_object(...))`, like sql/install.sql's test.test), the direct trigger as
`gearsync install` makes it (gearsync.triggers.direct_triggers: the row named by its primary key,
the key as hex, built by gearsync_send_change, behind a handler) and as it made it before (the
same JSON built by the server's JSON_OBJECT + HEX), the safe trigger
(outbox row naming the row by its primary key + `gearsync_send` doorbell, as `gearsync install`
makes it with gearsync.triggers.safe_triggers), and the seed's
recipe (`gman_do_background`, waits for gearmand's answer) for reference. The direct and safe
triggers run with the NEW sender (this tree: one sender thread, batched envelopes) and with the
OLD one (the per-thread pipe: one job per row; the library built from the commit before
udf/gs_sender.c was added; built in the MySQL image for MySQL), switched by DROP/CREATE
FUNCTION gearsync_send ... SONAME between measurements in the same server.

Workloads: single-row autocommit INSERTs and UPDATEs, measured in chunks of N statements with
every variant interleaved chunk by chunk, many rounds (medians: on a shared 2-core machine the
fsync time and the neighbours' load drift within seconds), and one 20,000-row
INSERT ... SELECT per variant and round. For each: rows/s (ratio to no trigger) and the CPU per
row of the server (its background threads included: at flush=1 InnoDB spins while it waits for
the fsync, so CPU per row there grows with the wall time) and of gearmand (from /proc, user +
system).

Targets (issue 14, at flush=1): direct >= 0.90x and safe >= 0.80x for single-row INSERT and
UPDATE; 20,000-row INSERT direct >= 0.50x, safe >= 0.30x.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from common import CLIENT, QUICK, ROOT, SERVER, Report, Stack, mysql_client, repeats

from gearsync.testing.sqlserver import numbers
from gearsync.triggers import direct_triggers, safe_triggers

N = 300 if QUICK else 500
BULK = 20_000
SETTINGS = os.environ.get("WRITE_COST_FLUSH", "1,2")


def old_library(dest: str) -> str:
    """Build the library as it was before the new sender (udf/gs_sender.c) into dest."""
    added = subprocess.run(["git", "log", "--diff-filter=A", "--format=%H", "-1", "--", "udf/gs_sender.c"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    rev = os.environ.get("BENCH_OLD_REV") or f"{added}^"
    src = ROOT / ".run" / "bench-old-src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev, "udf", "gearsync/__init__.py"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    if SERVER == "mysql":
        from gearsync.testing.mysql import build_udf

        build_udf(src, src / "build")
    else:
        subprocess.run(["make", "-s", "-f", "udf/udf.mk", "udf"], cwd=src, check=True,
                       stdout=subprocess.DEVNULL)
    shutil.copy(src / "build" / "gearsync_udf.so", dest)
    return rev


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def single_row(table: str) -> dict[str, tuple[str | None, str, int]]:
    """phase -> (setup SQL or None, timed SQL, rows)."""
    single = "".join(f"INSERT INTO {table} VALUES ({i}, 'name {i}');\n" for i in range(N))
    update = "".join(f"UPDATE {table} SET name = 'updated {i}' WHERE id = {i};\n" for i in range(N))
    return {"single-row INSERT": (f"TRUNCATE {table}", single, N),
            "single-row UPDATE": (None, update, N)}


def bulk(table: str) -> dict[str, tuple[str | None, str, int]]:
    sql = f"INSERT INTO {table} SELECT seq, CONCAT('name ', seq) FROM {numbers(BULK)};\n"
    return {f"{BULK:,}-row INSERT…SELECT": (f"TRUNCATE {table}", sql, BULK)}


_OLD_JOB = re.compile(r"DO gman_do_background\((?P<fn>'[^']*'), (?P<job>JSON_OBJECT\(.*'k', HEX\((?P<key>.*?)\), "
                      r"'ok', .*\))\);")


def _before_send_change(stmt: str) -> str:
    """A generated direct trigger as it was before gearsync_send_change: the server's
    JSON_OBJECT + HEX, the key evaluated again as gearsync_send's route."""
    out = _OLD_JOB.sub(lambda m: f"DO gearsync_send({m['fn']}, {m['job']}, {m['key']});", stmt)
    assert "gman_do_background" not in out, out
    return out


def use_sender(m, so: str) -> None:
    m.execute("DROP FUNCTION IF EXISTS gearsync_send")
    m.execute(f"CREATE FUNCTION gearsync_send RETURNS STRING SONAME '{so}'")


def two_sender_stack(name: str, mysqld_args: list[str], old_so: str) -> Stack:
    """A started stack under .run/bench-<name> whose plugin dir holds this tree's library
    (gearsync_udf.so) and the old one (gearsync_udf_old.so); the server started with
    mysqld_args (doublewrite on unless they say otherwise)."""
    base = ROOT / ".run" / f"bench-{name}"
    shutil.rmtree(base, ignore_errors=True)
    plugin = base / "plugin"
    plugin.mkdir(parents=True)
    built = ROOT / "build" / ("mysql" if SERVER == "mysql" else "") / "gearsync_udf.so"
    shutil.copy(built, plugin / "gearsync_udf.so")
    if os.path.exists(old_so):
        shutil.copy(old_so, plugin / "gearsync_udf_old.so")
    stack = Stack(base_dir=base, plugin_dir=plugin, durable=True)
    assert stack.mysql is not None
    stack.mysql.extra_args = list(mysqld_args)
    return stack.start()


def measure(report: Report, flush: int, old_so: str) -> None:
    # the flush mode is set at start, never with SET GLOBAL
    stack = two_sender_stack(f"write-cost-{flush}", [f"--innodb-flush-log-at-trx-commit={flush}"], old_so)
    assert stack.mysql is not None
    try:
        stack.install_sql()
        m = stack.mysql
        got = m.execute("SELECT @@innodb_flush_log_at_trx_commit, @@innodb_doublewrite")[0]
        setting = f"flush={got[0]}"
        report.note(f"{setting}: server started with innodb_flush_log_at_trx_commit={got[0]}, "
                    f"innodb_doublewrite={got[1]}")
        m.execute("CREATE DATABASE IF NOT EXISTS bench")
        for t in ("plain", "floor", "direct", "generated", "generated_before", "safe", "seed"):
            m.execute(f"CREATE TABLE bench.{t} (id INT PRIMARY KEY, name VARCHAR(255)) "
                      "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
        for ev, row in (("INSERT", "NEW"), ("UPDATE", "NEW")):
            # the floor: what the server charges for running any row trigger at all
            m.execute(f"CREATE TRIGGER bench.floor_{ev[0]} AFTER {ev} ON bench.floor FOR EACH ROW "
                      f"SET @gs_bench_x = {row}.id")
            m.execute(f"CREATE TRIGGER bench.direct_{ev[0]} AFTER {ev} ON bench.direct FOR EACH ROW "
                      f"DO gearsync_send('syncToRedis', udf_json_object({row}.id AS id, {row}.name AS name))")
            m.execute(f"CREATE TRIGGER bench.seed_{ev[0]} AFTER {ev} ON bench.seed FOR EACH ROW "
                      f"DO gman_do_background('syncToRedis', udf_json_object({row}.id AS id, {row}.name AS name))")
        # as `gearsync install` makes them: the row named by its primary key (gearsync.triggers)
        for stmt in safe_triggers("bench", "safe", ["id"], key_template="safe:{id}", pk=[("id", "int")]):
            m.execute(stmt)
        for stmt in direct_triggers("bench", "generated", "generated:{id}", [("id", "int")],
                                    function="syncToRedis"):
            m.execute(stmt)
        for stmt in direct_triggers("bench", "generated_before", "generated:{id}", [("id", "int")],
                                    function="syncToRedis", doorbell="gman_do_background"):
            m.execute(_before_send_change(stmt))
        variants = [  # (label, table, library of gearsync_send)
            ("no trigger", "bench.plain", "gearsync_udf.so"),
            ("floor: a trigger that only sets a variable", "bench.floor", "gearsync_udf.so"),
            ("direct, new sender", "bench.direct", "gearsync_udf.so"),
            ("direct as `gearsync install` makes it", "bench.generated", "gearsync_udf.so"),
            ("direct as `gearsync install` made it before (JSON_OBJECT)", "bench.generated_before",
             "gearsync_udf.so"),
            ("safe, new sender", "bench.safe", "gearsync_udf.so"),
            ("seed recipe (gman_do_background)", "bench.seed", "gearsync_udf.so"),
            ("direct, old sender", "bench.direct", "gearsync_udf_old.so"),
            ("safe, old sender", "bench.safe", "gearsync_udf_old.so"),
        ]
        if not os.path.exists(old_so):
            variants = [v for v in variants if v[2] != "gearsync_udf_old.so"]
        assert m.pid is not None and stack.gearmand.pid is not None
        pids = {SERVER: m.pid, "gearmand": stack.gearmand.pid}
        current = "gearsync_udf.so"
        rounds = [single_row] * repeats(8) + [bulk] * repeats(3)
        for workloads in rounds:
            for label, table, so in variants:
                if so != current:
                    use_sender(m, so)
                    current = so
                for phase, (setup, sql, rows) in workloads(table).items():
                    if setup:
                        mysql_client(stack, setup)
                    cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
                    took = mysql_client(stack, sql)
                    cpu = {k: cpu_seconds(p) - cpu0[k] for k, p in pids.items()}
                    base_name = f"{phase}, no trigger ({setting})"
                    name = f"{phase}, {label} ({setting})"
                    report.add(name, rows / took, "rows/s", baseline=None if name == base_name else base_name)
                    for proc, secs in cpu.items():
                        report.add(f"  CPU/row {proc}, {phase}, {label} ({setting})", secs / rows * 1e6, "us",
                                   higher_is_better=False)
            use_sender(m, "gearsync_udf.so")
            current = "gearsync_udf.so"
        recs = m.execute("SELECT gearsync_send_flush()")[0][0]
        jobs = stack.gearmand.status().get("syncToRedis", (0, 0, 0))[0]
        report.note(f"{setting}: {jobs:,} syncToRedis jobs queued in gearmand at the end, "
                    f"{recs} records of the new sender unacknowledged")
    finally:
        stack.stop()


def main() -> None:
    report = Report("write_cost", f"Write cost of the triggers, old sender vs new (chunks of {N:,} "
                                  f"single-row statements, {BULK:,}-row INSERT…SELECT; rows/s, {CLIENT} C client)")
    old_so = str(ROOT / ".run" / "gearsync_udf_old.so")
    if os.path.exists(old_so):
        os.unlink(old_so)
    try:
        rev = old_library(old_so)
        report.note(f"old sender: the library at {rev} (before udf/gs_sender.c)")
    except Exception as e:  # MySQL: that tree predates udf.mk's MySQL build
        if SERVER == "mariadb":
            raise
        report.note(f"old sender not measured: its library did not build against {SERVER} ({str(e)[:200]})")
    for flush in SETTINGS.split(","):
        measure(report, int(flush), old_so)
    report.finish()


if __name__ == "__main__":
    main()

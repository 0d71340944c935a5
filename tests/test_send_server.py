"""gearsync_send through the real server (MariaDB, or MySQL: GEARSYNC_TEST_SERVER): a trigger that pipelines its jobs.

Each test uses a gearmand of its own (gman_servers_set is global to mysqld; it is set back to
the session stack's gearmand afterwards). Speeds are printed (`pytest -s`), not asserted."""
from __future__ import annotations

import json
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator, Tuple

import pytest

from gearman_peers import grab_all
from gearsync.testing.processes import wait_for
from gearsync.testing.stack import Gearmand, Stack, free_port

N_BULK = 20_000
N_SINGLE = 5_000
ROUNDS = 3
DB = "sendtest"
TRIGGERS = {
    "plain": None,
    "direct": "DO gman_do_background('fn_direct', udf_json_object(NEW.id AS id, NEW.name AS name))",
    "piped": "DO gearsync_send('fn_x', udf_json_object(NEW.id AS id, NEW.name AS name))",
}


# gearsync.testing.stack.Gearmand sizes its job hash table for deep queues: no worker runs
# here, so 100,000+ jobs pile up, and with gearmand's default 991 buckets its per-submit unique
# lookup walks a chain of ~queue/991 jobs, so gearmand, not the trigger, would be measured.


def client(stack: Stack, sql: str) -> float:
    """Feed SQL to the server's command-line client (`mariadb` / `mysql`); seconds it took."""
    assert stack.mysql is not None
    t0 = time.perf_counter()
    res = subprocess.run(stack.mysql.client_argv(DB), input=sql.encode(), capture_output=True)
    took = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    return took


@pytest.fixture
def own(stack: Stack, tmp_path: Path) -> Iterator[Tuple[Any, Gearmand]]:
    """(cursor, gearmand): gearsync_send registered, the UDFs pointed at our gearmand,
    tables sendtest.plain / direct / piped with their AFTER INSERT triggers."""
    assert stack.mysql is not None
    g = Gearmand(tmp_path / "gearmand-send")
    g.start()
    conn = stack.mysql.connect()
    cur = conn.cursor()
    try:
        cur.execute("CREATE FUNCTION IF NOT EXISTS gearsync_send RETURNS STRING SONAME 'gearsync_udf.so'")
        cur.execute("CREATE FUNCTION IF NOT EXISTS gearsync_send_flush RETURNS INTEGER "
                    "SONAME 'gearsync_udf.so'")
        cur.execute("SELECT gman_servers_set(%s)", (g.address,))
        time.sleep(0.02)  # every thread's pipe re-reads the list within a few ms
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {DB}")
        for table, body in TRIGGERS.items():
            cur.execute(f"DROP TABLE IF EXISTS {DB}.{table}")
            cur.execute(f"CREATE TABLE {DB}.{table} (id INT PRIMARY KEY, name VARCHAR(255)) "
                        "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
            if body:
                cur.execute(f"CREATE TRIGGER {DB}.{table}_ai AFTER INSERT ON {DB}.{table} "
                            f"FOR EACH ROW {body}")
        yield cur, g
    finally:
        cur.execute("SELECT gman_servers_set(%s)", (stack.gearman_servers,))
        cur.execute(f"DROP DATABASE IF EXISTS {DB}")
        conn.close()
        g.stop()


def bulk_sql(table: str, n: int) -> str:
    return f"INSERT INTO {table} VALUES " + ", ".join(f"({i}, 'name {i}')" for i in range(n))


def test_trigger_20000_rows_reach_gearmand(own) -> None:
    cur, g = own
    t0 = time.perf_counter()
    cur.execute(bulk_sql("sendtest.plain", N_BULK))
    plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    cur.execute(bulk_sql("sendtest.piped", N_BULK))
    piped = time.perf_counter() - t0
    cur.execute("SELECT gearsync_send_flush()")
    assert cur.fetchone()[0] == 0
    assert g.queued("fn_x") == N_BULK
    jobs = grab_all(g, b"fn_x")
    assert [json.loads(w) for _, w in jobs] == [{"id": i, "name": f"name {i}"} for i in range(N_BULK)]
    assert len({u for u, _ in jobs}) == N_BULK
    print(f"\n{N_BULK:,}-row INSERT (PyMySQL): no trigger {N_BULK / plain:,.0f} rows/s, "
          f"gearsync_send trigger {N_BULK / piped:,.0f} rows/s ({plain / piped:.2f}x)")


def test_trigger_payload_byte_exact(own) -> None:
    cur, g = own
    names = ["plain", 'quote " backslash \\ tab \t nl \n', "nul \x00 inside", "emoji 😀 é", "", None]
    for i, name in enumerate(names):
        cur.execute("INSERT INTO sendtest.piped VALUES (%s, %s)", (i, name))
    cur.execute("SELECT gearsync_send('fn_raw', CONCAT('a', CHAR(0), 'b'), 'my-unique')")
    assert cur.fetchone()[0] == b"my-unique"  # a UDF STRING result is binary
    cur.execute("SELECT gearsync_send_flush()")
    assert cur.fetchone()[0] == 0
    jobs = grab_all(g, b"fn_x")
    assert [json.loads(w) for _, w in jobs] == [{"id": i, "name": n} for i, n in enumerate(names)]
    assert grab_all(g, b"fn_raw") == [(b"my-unique", b"a\x00b")]


def test_gearmand_down_insert_commits_fast(own, stack: Stack) -> None:
    cur, g = own
    cur.execute("SELECT gman_servers_set(%s)", (f"127.0.0.1:{free_port()}",))
    time.sleep(0.02)
    cur.execute("SELECT gearsync_send('fn_x', 'w')")
    assert cur.fetchone()[0] is None
    t0 = time.perf_counter()
    cur.execute(bulk_sql("sendtest.piped", 2000))
    took = time.perf_counter() - t0
    cur.execute("SELECT COUNT(*) FROM sendtest.piped")
    assert cur.fetchone()[0] == 2000
    print(f"\n2,000-row INSERT with gearmand down: {took * 1e3:.0f} ms")
    assert took < 2.0
    assert g.queued("fn_x") == 0


def test_write_cost_mariadb_client(own, stack: Stack) -> None:
    """rows/s of one 20,000-row INSERT and of 5,000 single-row autocommit INSERTs through the
    `mariadb` client: no trigger, gman_do_background trigger, gearsync_send trigger."""
    cur, g = own
    samples: dict = {t: ([], []) for t in TRIGGERS}
    for _ in range(ROUNDS):  # interleaved rounds, median: the machine is noisy
        for table in TRIGGERS:
            client(stack, f"TRUNCATE {table};")
            samples[table][0].append(N_BULK / client(stack, bulk_sql(table, N_BULK) + ";\n"))
            client(stack, f"TRUNCATE {table};")
            single_sql = "".join(f"INSERT INTO {table} VALUES ({i}, 'name {i}');\n"
                                 for i in range(N_SINGLE))
            samples[table][1].append(N_SINGLE / client(stack, single_sql))
    results = {t: (statistics.median(b), statistics.median(s)) for t, (b, s) in samples.items()}
    cur.execute("SELECT gearsync_send_flush()")
    base_bulk, base_single = results["plain"]
    print(f"\nwrite cost, mariadb client, median of {ROUNDS}: {N_BULK:,}-row INSERT rows/s | "
          f"{N_SINGLE:,} single-row INSERTs rows/s")
    for table, (b, s) in results.items():
        print(f"  {table:7s} {b:10,.0f} ({b / base_bulk:.2f}x) | {s:8,.0f} ({s / base_single:.2f}x)")
    # every piped row was queued (the other connection's thread flushed as it exited)
    total = ROUNDS * (N_BULK + N_SINGLE)
    assert wait_for(lambda: g.queued("fn_x") == total)
    assert g.queued("fn_direct") == total



"""Safe mode end to end on the session stack: trigger → outbox + doorbell → worker confirms
(locking read) → versioned write → outbox row deleted. The sweeper is held off (rows must be
60 s old), so what arrives here arrived through its job."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import gearsync
from gearsync.testing.processes import WorkerProcess, wait_for
from gearsync.testing.stack import Stack

from helpers import converge, execute as _exec, redis_state

NAMES = {
    "quotes": "it's \"quoted\" `and` back`ticked",
    "backslash": "C:\\path\\to \\n not a newline",
    "newline": "line one\nline two\r\nline three",
    "control": "".join(chr(c) for c in range(1, 32)) + "\x7f",
    "nul": "before\x00after",
    "emoji": "rocket \U0001f680 caf\u00e9 \u4e2d\u6587",
    "long255": ("\u00e9" * 100) + ("x" * 155),
    "empty": "",
    "json_lookalike": '{"id": 99, "name": "evil"}',
    "number_text": "007",
}


def test_insert_update_pk_change_delete_and_null(safe_worker: WorkerProcess, safe_mysql: Any,
                                                 redis_client: Any) -> None:
    m, r = safe_mysql, redis_client
    _exec(m, "INSERT INTO test.test_safe VALUES (1, 'alice'), (2, 'bob'), (3, NULL)")
    converge(m, r)
    assert redis_state(r) == {b"test_safe:1": b"alice", b"test_safe:2": b"bob"}
    _exec(m, "UPDATE test.test_safe SET name = 'carol' WHERE id = 2")
    _exec(m, "UPDATE test.test_safe SET id = 20 WHERE id = 2")  # primary key change moves the key
    _exec(m, "UPDATE test.test_safe SET name = 'set' WHERE id = 3")
    _exec(m, "UPDATE test.test_safe SET name = NULL WHERE id = 1")  # NULL removes the key
    converge(m, r)
    assert redis_state(r) == {b"test_safe:20": b"carol", b"test_safe:3": b"set"}
    _exec(m, "DELETE FROM test.test_safe WHERE id = 20")
    _exec(m, "REPLACE INTO test.test_safe VALUES (3, 'replaced')")
    converge(m, r)
    assert redis_state(r) == {b"test_safe:3": b"replaced"}
    # versions sit beside the keys; a delete leaves a tombstone with a TTL
    assert r.get(b"gearsync:v:test_safe:3") is not None and r.ttl(b"gearsync:v:test_safe:3") == -1
    assert 0 < r.ttl(b"gearsync:v:test_safe:20") <= 86400
    assert r.get(b"test_safe:20") is None


def test_values_arrive_byte_exact(safe_worker: WorkerProcess, safe_mysql: Any, redis_client: Any) -> None:
    rows = list(enumerate(NAMES.values(), start=100))
    with safe_mysql.cursor() as cur:
        cur.executemany("INSERT INTO test.test_safe VALUES (%s, %s)", rows)
    converge(safe_mysql, redis_client)
    assert redis_state(redis_client) == {f"test_safe:{i}".encode(): n.encode() for i, n in rows}


def test_last_insert_id_is_the_outbox_id_inside_and_untouched_outside(stack: Stack, safe_mysql: Any) -> None:
    """In the trigger LAST_INSERT_ID() is the outbox id (the doorbell's workload); after the
    statement the application still sees its own auto-increment id."""
    m = safe_mysql
    _exec(m, "CREATE TABLE IF NOT EXISTS test.safe_auto (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(20))")
    try:
        for stmt in gearsync.safe_triggers("test", "safe_auto", ["id"], ["name"]):
            _exec(m, stmt)
        _exec(m, "ALTER TABLE test.safe_auto AUTO_INCREMENT = 1000")
        _exec(m, "INSERT INTO gearsync.outbox (source, k, op) VALUES ('x', 'x', 'delete')")  # ids diverge
        with m.cursor() as cur:
            cur.execute("INSERT INTO test.safe_auto (name) VALUES ('a')")
            assert cur.lastrowid == 1000
        assert _exec(m, "SELECT LAST_INSERT_ID()") == [(1000,)]
        (ob_id, k, op, row), = _exec(m, "SELECT id, k, op, `row` FROM gearsync.outbox WHERE source = 'test.safe_auto'")
        assert ob_id != 1000 and k == b"safe_auto:1000" and op == "insert" and row == '{"name": "a"}'
        with m.cursor() as cur:  # multi-row insert: LAST_INSERT_ID is the first row's id
            cur.execute("INSERT INTO test.safe_auto (name) VALUES ('b'), ('c')")
        assert _exec(m, "SELECT LAST_INSERT_ID()") == [(1001,)]
    finally:
        _exec(m, "DROP TABLE IF EXISTS test.safe_auto")
        _exec(m, "DELETE FROM gearsync.outbox")


def test_random_transactions_with_rollbacks(safe_worker: WorkerProcess, safe_mysql: Any,
                                            redis_client: Any, stack: Stack) -> None:
    """500 transactions over 50 keys, a third rolled back, many multi-statement: Redis ends
    equal to the committed table, with no phantom key and nothing stale."""
    assert stack.mysql is not None
    rng = random.Random(4)
    conn = stack.mysql.connect(autocommit=False)
    rolled_back = committed = 0
    try:
        with conn.cursor() as cur:
            for _ in range(500):
                for _ in range(rng.choice((1, 1, 2, 3, 5))):
                    k, name = rng.randrange(50), f"v{rng.randrange(10**6)}"
                    op = rng.random()
                    if op < 0.45:
                        cur.execute("INSERT INTO test.test_safe VALUES (%s, %s) "
                                    "ON DUPLICATE KEY UPDATE name = VALUES(name)", (k, name))
                    elif op < 0.65:
                        cur.execute("UPDATE test.test_safe SET name = %s WHERE id = %s", (name, k))
                    elif op < 0.8:
                        cur.execute("DELETE FROM test.test_safe WHERE id = %s", (k,))
                    elif op < 0.9:  # primary key change, when the target is free
                        cur.execute("UPDATE IGNORE test.test_safe SET id = %s WHERE id = %s", (rng.randrange(50), k))
                    else:
                        cur.execute("UPDATE test.test_safe SET name = NULL WHERE id = %s", (k,))
                if rng.random() < 1 / 3:
                    conn.rollback()
                    rolled_back += 1
                else:
                    conn.commit()
                    committed += 1
    finally:
        conn.close()
    assert 130 < rolled_back < 200
    took = converge(safe_mysql, redis_client, timeout=60)
    print(f"rollbacks: {committed} committed, {rolled_back} rolled back; converged {took:.2f} s after the last commit")


def test_four_workers_four_writers_hot_keys_stay_in_order(stack: Stack, tmp_path: Path, safe_mysql: Any,
                                                          redis_client: Any, safe_env: dict[str, str]) -> None:
    """5,000 updates over 10 hot keys from 4 writer connections, applied by 4 worker processes."""
    assert stack.mysql is not None
    _exec(safe_mysql, "INSERT INTO test.test_safe VALUES " + ", ".join(f"({i}, 'init')" for i in range(10)))
    workers = [WorkerProcess(safe_env, ["--batch-size", "16", "--window", "8"], log_path=tmp_path / f"w{i}.log")
               for i in range(4)]
    for w in workers:
        w.start()
    try:
        wait_for(lambda: stack.gearmand.status().get("gearsync", (0, 0, 0))[2] >= 4, 20, 0.05, "4 safe workers")
        errors: list[BaseException] = []

        def writer(n: int) -> None:
            try:
                assert stack.mysql is not None
                c = stack.mysql.connect()
                rng = random.Random(n)
                with c.cursor() as cur:
                    for i in range(1250):
                        cur.execute("UPDATE test.test_safe SET name = %s WHERE id = %s", (f"w{n}-{i}", rng.randrange(10)))
                c.close()
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wrote = time.monotonic() - t0
        assert not errors, errors
        took = converge(safe_mysql, redis_client, timeout=60)
        print(f"order: 5000 updates in {wrote:.2f} s; converged {took:.2f} s after the last write")
        for w in workers:
            assert w.returncode is None, w.output()
    finally:
        codes = [w.stop() for w in workers]
    assert codes == [0, 0, 0, 0], "SIGTERM: a graceful stop exits 0"
    logs = "".join(w.output() for w in workers)
    assert "Traceback" not in logs, logs[-3000:]


def test_long_transaction_does_not_stall_the_worker(stack: Stack, tmp_path: Path, safe_mysql: Any,
                                                    redis_client: Any) -> None:
    """A transaction open longer than the lock-wait timeout: the worker applies the other
    changes meanwhile and the sweeper applies the long one after it commits."""
    assert stack.mysql is not None
    env = stack.env()
    env.update(GEARSYNC_SWEEP_INTERVAL="0.2", GEARSYNC_SWEEP_AGE="0.5")
    with WorkerProcess(env, log_path=tmp_path / "w.log", gearmand=stack.gearmand, function="gearsync"):
        long = stack.mysql.connect(autocommit=False)
        try:
            _exec(long, "INSERT INTO test.test_safe VALUES (1, 'long')")  # its job's claim now waits 1 s
            time.sleep(0.1)
            t0 = time.monotonic()
            _exec(safe_mysql, "INSERT INTO test.test (id, name) VALUES (5, 'direct')")
            wait_for(lambda: redis_client.get(b"5") == b"direct", 10, 0.005, "direct-mode job applied")
            direct_took = time.monotonic() - t0
            assert direct_took < 0.5, f"a waiting outbox claim stalled direct mode for {direct_took:.2f} s"
            _exec(safe_mysql, "INSERT INTO test.test_safe VALUES (2, 'short')")
            wait_for(lambda: redis_state(redis_client) == {b"test_safe:2": b"short"}, 10, 0.02, "short txn applied")
            time.sleep(1.5)  # past the 1 s lock-wait timeout: the job for row 1 has given up
            assert redis_client.get(b"test_safe:1") is None
            long.commit()
        finally:
            long.close()
        took = converge(safe_mysql, redis_client, timeout=20)
    assert redis_state(redis_client) == {b"test_safe:1": b"long", b"test_safe:2": b"short"}
    print(f"long transaction: applied by the sweeper {took:.2f} s after its commit")


def test_status_reports_lag_and_reachability(stack: Stack, safe_mysql: Any, redis_client: Any, gearmand: Any) -> None:
    host, port = gearmand.host, gearmand.port  # an idle gearmand of its own: no queue left by other tests
    st = gearsync.status(stack.mysql_url, stack.redis_url, [(host, port)])
    assert st.ok and st.outbox_size == 0 and st.oldest_age is None
    _exec(safe_mysql, "INSERT INTO gearsync.outbox (source, k, op, created) "
                      "VALUES ('x', 'x', 'delete', NOW(6) - INTERVAL 3 SECOND)")
    try:
        st = gearsync.status(stack.mysql_url)
        assert st.outbox_size == 1 and st.oldest_age is not None and 2.5 < st.oldest_age < 60
        res = subprocess.run([sys.executable, "-m", "gearsync", "status", "--mysql", stack.mysql_url,
                              "--redis-url", stack.redis_url, "--gearman", f"{host}:{port}"],
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        assert "outbox: 1 rows, oldest" in res.stdout and "UNREACHABLE" not in res.stdout
        res = subprocess.run([sys.executable, "-m", "gearsync", "status", "--json", "--mysql", stack.mysql_url,
                              "--redis-url", "redis://127.0.0.1:1/0", "--gearman", "127.0.0.1:1"],
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 1
        assert '"outbox_size": 1' in res.stdout and '"ok": false' in res.stdout
    finally:
        _exec(safe_mysql, "DELETE FROM gearsync.outbox")


def test_direct_worker_without_mysql_does_not_serve_safe_mode(stack: Stack, tmp_path: Path) -> None:
    env = stack.env()
    env.pop("GEARSYNC_MYSQL_URL")
    before = stack.gearmand.status().get("gearsync", (0, 0, 0))[2]
    with WorkerProcess(env, log_path=tmp_path / "w.log", gearmand=stack.gearmand) as w:
        assert stack.gearmand.status().get("gearsync", (0, 0, 0))[2] == before
    assert "safe mode" not in w.output()


@pytest.mark.parametrize("driver", ["pymysql", "mysqlclient"])
def test_outbox_claim_with_each_driver(stack: Stack, safe_mysql: Any, driver: str) -> None:
    """Claim waits for an open transaction, skips a rolled-back row, and on a lock-wait
    timeout takes the committed rows and leaves the open ones."""
    if driver == "mysqlclient":
        pytest.importorskip("MySQLdb")
    from gearsync.outbox import Outbox

    assert stack.mysql is not None
    ob = Outbox(stack.mysql_url, lock_wait_timeout=1, driver=driver)
    ins = "INSERT INTO gearsync.outbox (source, k, op) VALUES ('t', %s, 'delete')"
    try:
        with safe_mysql.cursor() as cur:
            cur.execute(ins, ("committed",))
            committed = cur.lastrowid
        rb = stack.mysql.connect(autocommit=False)
        with rb.cursor() as cur:
            cur.execute(ins, ("rolled back",))
            rolled = cur.lastrowid
        rb.rollback()
        rb.close()
        slow = stack.mysql.connect(autocommit=False)
        with slow.cursor() as cur:
            cur.execute(ins, ("late",))
            late = cur.lastrowid
        timer = threading.Timer(0.3, slow.commit)
        timer.start()
        rows = ob.claim([committed, rolled, late])  # waits for the commit at 0.3 s
        assert [r.id for r in rows] == [committed, late]
        timer.join()  # the commit's OK may still be on its way to the timer thread
        ob.release()
        with slow.cursor() as cur:
            cur.execute(ins, ("open",))
            still_open = cur.lastrowid
        t0 = time.monotonic()
        rows = ob.claim([committed, still_open])  # lock-wait timeout, then SKIP LOCKED
        assert [r.id for r in rows] == [committed] and time.monotonic() - t0 < 5
        assert ob.lock_timeouts == 1
        assert ob.finish([committed]) == 1
        slow.rollback()
        slow.close()
    finally:
        ob.close()
        _exec(safe_mysql, "DELETE FROM gearsync.outbox")


def test_status_shows_queue_depth_and_workers_per_function(stack: Stack, gearmand: Any) -> None:
    """Queue depth and worker count per Gearman function, from gearmand's admin protocol."""
    from gearsync.gearman.client import GearmanClient

    with GearmanClient(gearmand.host, gearmand.port) as c:
        c.submit_many("syncToRedis", [b'{"id": 1, "name": "x"}'] * 3)
    st = gearsync.status(gearman=[(gearmand.host, gearmand.port)])
    assert st.gearman[gearmand.address]["syncToRedis"] == {"queued": 3, "running": 0, "workers": 0}
    assert st.problems == [f"gearman {gearmand.address}: 3 jobs queued for syncToRedis and no worker"]
    res = subprocess.run([sys.executable, "-m", "gearsync", "status", "--gearman", gearmand.address,
                          "--redis-url", stack.redis_url], capture_output=True, text=True, timeout=30)
    assert res.returncode == 1, res.stderr  # jobs waiting and nobody to take them
    assert "syncToRedis: 3 queued (0 running), 0 workers" in res.stdout
    res = subprocess.run([sys.executable, "-m", "gearsync", "status", "--json", "--gearman", gearmand.address,
                          "--redis-url", stack.redis_url], capture_output=True, text=True, timeout=30)
    assert json.loads(res.stdout)["gearman"][gearmand.address]["syncToRedis"]["queued"] == 3

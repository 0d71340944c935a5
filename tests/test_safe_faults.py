"""Safe mode under faults, on a stack of this module's own (the session stack is not disturbed).

Sweep interval 0.5 s, sweep age 1 s: a committed change no job delivered is applied about
1–1.5 s after its commit once the database and Redis answer."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from gearsync.testing.processes import WorkerProcess, wait_for
from gearsync.testing.stack import Stack

from helpers import converge, outbox_size

SWEEP = {"GEARSYNC_SWEEP_INTERVAL": "0.5", "GEARSYNC_SWEEP_AGE": "1"}


@pytest.fixture(scope="module")
def fstack(udf_so: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    st = Stack(base_dir=tmp_path_factory.mktemp("faultstack"), plugin_dir=udf_so.parent)
    with st:
        st.install_sql()
        yield st


@pytest.fixture
def fdb(fstack: Stack) -> Iterator[Any]:
    assert fstack.mysql is not None
    for d in fstack.daemons:
        d.start()  # a previous test may have left one stopped
    conn = fstack.mysql.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT gman_servers_set(%s)", (fstack.gearman_servers,))
        cur.execute("TRUNCATE TABLE test.test_safe")
        cur.execute("DELETE FROM gearsync.outbox")
    fstack.redis.client().flushall()
    yield conn
    conn.close()


class Writer(threading.Thread):
    """Random autocommit writes over ``keys`` keys until stopped (or ``limit`` writes);
    survives a database restart by reconnecting. The table is the truth afterwards."""

    def __init__(self, stack: Stack, keys: int, seed: int, limit: int | None = None) -> None:
        super().__init__(daemon=True)
        self.stack, self.keys, self.rng, self.limit = stack, keys, random.Random(seed), limit
        self.stop = threading.Event()
        self.writes = self.errors = 0

    def run(self) -> None:
        conn = None
        while not self.stop.is_set() and (self.limit is None or self.writes < self.limit):
            try:
                if conn is None:
                    assert self.stack.mysql is not None
                    conn = self.stack.mysql.connect(connect_timeout=2)
                k, name, op = self.rng.randrange(self.keys), f"n{self.rng.randrange(10**9)}", self.rng.random()
                with conn.cursor() as cur:
                    if op < 0.6:
                        cur.execute("INSERT INTO test.test_safe VALUES (%s, %s) "
                                    "ON DUPLICATE KEY UPDATE name = VALUES(name)", (k, name))
                    elif op < 0.85:
                        cur.execute("UPDATE test.test_safe SET name = %s WHERE id = %s", (name, k))
                    else:
                        cur.execute("DELETE FROM test.test_safe WHERE id = %s", (k,))
                self.writes += 1
            except Exception:
                self.errors += 1
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass
                conn = None
                time.sleep(0.1)
        if conn is not None:
            conn.close()


def _worker(stack: Stack, tmp_path: Path, name: str) -> WorkerProcess:
    env = stack.env()
    env.update(SWEEP)
    return WorkerProcess(env, log_path=tmp_path / f"{name}.log", gearmand=stack.gearmand, function="gearsync")


def test_gearmand_down_during_a_burst_loses_nothing(fstack: Stack, fdb: Any, tmp_path: Path) -> None:
    r = fstack.redis.client()
    with _worker(fstack, tmp_path, "w") as w:
        writer = Writer(fstack, 200, seed=3, limit=3000)
        writer.start()
        wait_for(lambda: writer.writes >= 1000, 60, 0.01, "1000 writes")
        fstack.gearmand.stop()  # the doorbell is gone; writes go on and commit
        stopped_at = writer.writes
        writer.join(120)
        assert writer.writes == 3000 and writer.errors == 0
        took_down = converge(fdb, r, timeout=30)  # with gearmand still down: the sweeper alone
        fstack.gearmand.start()
        more = Writer(fstack, 200, seed=4, limit=300)
        more.start()
        more.join(60)
        took_up = converge(fdb, r, timeout=30)
        assert w.returncode is None, w.output()
    print(f"gearmand down after {stopped_at} of 3000 writes: converged {took_down:.2f} s after the burst "
          f"(gearmand still down); after its restart, 300 more converged in {took_up:.2f} s")


def test_worker_killed_redis_down_mariadb_restarted_loses_nothing(fstack: Stack, fdb: Any, tmp_path: Path) -> None:
    assert fstack.mysql is not None
    r = fstack.redis.client()
    a = _worker(fstack, tmp_path, "a").start()
    b = None
    writer = Writer(fstack, 100, seed=5)
    writer.start()
    try:
        wait_for(lambda: writer.writes >= 800, 60, 0.01, "800 writes")
        a.kill()  # SIGKILL mid-stream: jobs in hand go back to gearmand, claimed rows stay in the outbox
        b = _worker(fstack, tmp_path, "b").start()
        wait_for(lambda: writer.writes >= 1600, 60, 0.01, "1600 writes")
        try:
            r.shutdown(save=True)  # Redis goes away for 10 s, keeping what it had
        except Exception:
            pass
        fstack.redis.stop()
        time.sleep(10)
        fstack.redis.start()
        at = writer.writes
        wait_for(lambda: writer.writes >= at + 300, 60, 0.01, "300 more writes")
        fstack.mysql.restart()  # gman_servers_set is forgotten: only the sweeper delivers now
        at = writer.writes
        wait_for(lambda: writer.writes >= at + 300, 60, 0.01, "300 writes after the restart")
    finally:
        writer.stop.set()
        writer.join(30)
    try:
        took = converge(fdb if _alive(fdb) else fstack.mysql.connect(), fstack.redis.client(), timeout=60)
        assert b.returncode is None, b.output()
    finally:
        if b is not None:
            b.stop()
        a.stop()
    print(f"kill -9 + redis down 10 s + mariadb restart: {writer.writes} writes ({writer.errors} failed); "
          f"converged {took:.2f} s after the last write")
    assert outbox_size(fstack.mysql.connect()) == 0


def _alive(conn: Any) -> bool:
    try:
        conn.ping(reconnect=False)
        return True
    except Exception:
        return False

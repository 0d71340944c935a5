"""``linger_us`` (gearsync_udf.cnf) on the real stack: a database server of its own whose
gearsync_send lingers 5 ms, single-row autocommit writes through the direct- and safe-mode
demo triggers at a trickle. Rows a little apart share jobs (fewer jobs queued than rows), and
a worker started afterwards makes Redis equal to the tables: the wait loses nothing."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from gearsync.resources import sql_path
from gearsync.testing.daemons import Gearmand, RedisServer
from gearsync.testing.processes import WorkerProcess, wait_for
from gearsync.testing.stack import sql_server

ROWS = 150


def test_rows_a_little_apart_share_jobs_and_all_arrive(udf_so: Path, tmp_path: Path,
                                                       gearmand_factory: Callable[..., Gearmand]) -> None:
    g = gearmand_factory()
    db = sql_server(tmp_path / "db", plugin_dir=udf_so.parent,
                    udf_config={"servers": g.address, "lock": "on", "linger_us": "5000"})
    with db, RedisServer(tmp_path / "redis") as redis:
        db.source(sql_path("install.sql"))
        conn = db.connect()
        try:
            with conn.cursor() as cur:
                t0 = time.monotonic()
                for i in range(ROWS):
                    cur.execute("INSERT INTO test.test VALUES (%s, %s)", (i, f"direct {i}"))
                    cur.execute("INSERT INTO test.test_safe VALUES (%s, %s)", (i, f"safe {i}"))
                    time.sleep(0.0005)
                cur.execute("UPDATE test.test SET name = CONCAT(name, '!') WHERE id < 10")
                cur.execute("DELETE FROM test.test_safe WHERE id >= %s", (ROWS - 10,))
                elapsed = time.monotonic() - t0
                cur.execute("SELECT gearsync_send_flush()")
                assert cur.fetchone()[0] == 0
        finally:
            conn.close()
        status = g.status()
        direct_jobs, doorbells = status["syncToRedis"][0], status["gearsync"][0]
        # a job per 5 ms at most (+ the first of each function, and the last after the loop)
        assert direct_jobs + doorbells <= elapsed / 0.005 + 4, (direct_jobs, doorbells, elapsed)
        assert direct_jobs < ROWS and doorbells < ROWS

        env = {"GEARSYNC_GEARMAN": g.address, "GEARSYNC_REDIS_URL": redis.url, "GEARSYNC_MYSQL_URL": db.url}
        with WorkerProcess({**os.environ, **env}, log_path=tmp_path / "worker.log", gearmand=g):
            r = redis.client()
            want = {str(i).encode(): f"direct {i}{'!' if i < 10 else ''}".encode() for i in range(ROWS)}
            want.update({f"test_safe:{i}".encode(): f"safe {i}".encode() for i in range(ROWS - 10)})

            def redis_equal() -> bool:
                keys = [k for k in r.keys("*") if not k.startswith(b"gearsync:")]
                return dict(zip(keys, r.mget(keys))) == want if keys else False

            wait_for(redis_equal, 30, 0.05, "Redis to equal test.test and test.test_safe")

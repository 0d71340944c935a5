"""Two gearmand with ``spread = on`` (gearsync_udf.cnf) on the real stack: a database server of
its own whose gearsync_send spreads records over both, one worker listening on both, a stream
of writes to the direct-mode and safe-mode demo tables, one gearmand SIGKILLed mid-stream.

Safe mode loses nothing (a doorbell lost with the dead gearmand leaves its outbox row to the
sweeper); direct mode loses what the killed gearmand had acknowledged and no worker had taken
(gearmand's in-memory queue), which the test bounds and prints."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from gearman_peers import grab_all
from gearsync.envelope import decode
from gearsync.resources import sql_path
from gearsync.testing.daemons import Gearmand, RedisServer
from gearsync.testing.processes import WaitTimeout, WorkerProcess, wait_for
from gearsync.testing.stack import SqlServer, sql_server

from helpers import outbox_size
from streams import NEVER, Stream, direct_drift, safe_drift, settle


def fnv1a(route: bytes) -> int:
    """The route hash of udf/send.c (0 is "no route", so it becomes 1)."""
    h = 2166136261
    for c in route:
        h = ((h ^ c) * 16777619) & 0xFFFFFFFF
    return h or 1


@pytest.fixture
def spread_db(udf_so: Path, tmp_path: Path,
              gearmand_factory: Callable[..., Gearmand]) -> Iterator[tuple[SqlServer, Gearmand, Gearmand]]:
    """A database server whose gearsync_udf.cnf names two gearmand, spread = on, lock = on;
    sql/install.sql applied (it sets nothing at run time)."""
    a, b = gearmand_factory(), gearmand_factory()
    db = sql_server(tmp_path / "db", plugin_dir=udf_so.parent,
                    udf_config={"servers": f"{a.address},{b.address}", "spread": "on", "lock": "on"})
    with db:
        db.source(sql_path("install.sql"))
        yield db, a, b


def test_spread_over_two_gearmand_one_killed_mid_stream(spread_db: tuple[SqlServer, Gearmand, Gearmand],
                                                        tmp_path: Path) -> None:
    db, a, b = spread_db
    conn = db.connect()
    try:
        with conn.cursor() as cur:
            # one route, one server: (FNV-1a of the route) % 2, every time
            for i in range(10):
                for k in range(20):
                    cur.execute("DO gearsync_send('spreadcheck', %s, %s)", (f"r{k}:{i}", f"r{k}"))
            cur.execute("SELECT gearsync_send_flush()")
            assert cur.fetchone()[0] == 0
        for server, g in enumerate((a, b)):
            recs = [p.decode() for _, w in grab_all(g, b"spreadcheck") for _, p in decode(b"spreadcheck", w, None)]
            routes = {p.split(":")[0] for p in recs}
            assert routes and all(fnv1a(r.encode()) % 2 == server for r in routes), (server, routes)
            assert len(recs) == 10 * len(routes)
            for r in routes:  # in the order they were sent
                assert [p for p in recs if p.startswith(r + ":")] == [f"{r}:{i}" for i in range(10)]
    finally:
        conn.close()

    with RedisServer(tmp_path / "redis") as redis:
        env = {"GEARSYNC_GEARMAN": f"{a.address},{b.address}", "GEARSYNC_REDIS_URL": redis.url,
               "GEARSYNC_MYSQL_URL": db.url, "GEARSYNC_SWEEP_AGE": "2", "GEARSYNC_SWEEP_INTERVAL": "0.5",
               "GEARSYNC_LOG_LEVEL": "INFO"}
        w = WorkerProcess({**os.environ, **env}, log_path=tmp_path / "worker.log", gearmand=b,
                          function="gearsync").start()
        stream = Stream(db.connect, keys=400, seed=15)
        stream.start()
        try:
            stream.until(400)
            # the worker stopped for a moment: both gearmand hold jobs of both functions
            w.signal(signal.SIGSTOP)
            paused_from = stream.writes
            stream.until(300)
            held = {g.address: (g.queued("syncToRedis"), g.queued("gearsync")) for g in (a, b)}
            assert all(d and s for d, s in held.values()), held  # spreading really happens
            b.kill()  # its in-memory queue is gone
            lost_bound = stream.writes - paused_from + 10  # direct records written since the pause
            w.signal(signal.SIGCONT)
            stream.until(600)
        except BaseException:
            w.stop()  # the failure below the pause must not leave a worker behind
            raise
        finally:
            stream.finish()
            w.signal(signal.SIGCONT)
        check = db.connect()
        try:
            r = redis.client()
            try:
                wait_for(lambda: outbox_size(check) == 0 and not a.queued("syncToRedis"), 90, 0.1,
                         "the worker to drain the outbox and gearmand")
            except WaitTimeout as e:  # say which did not drain (seen once in CI on MySQL)
                raise AssertionError(f"{e}: outbox {outbox_size(check)} rows; the live gearmand (function: "
                                     f"queued, running, workers): {a.status()}; the worker's log:\n"
                                     f"{w.output()[-3000:]}") from None
            safe = settle(lambda: safe_drift(check, r), 20)
            direct = settle(lambda: direct_drift(check, r), 5)
            lost = sum(len(v) for v in direct.values())
            print(f"\nspread over two gearmand, one SIGKILLed: {stream.writes} writes to each table "
                  f"(held before the kill: {held}); safe mode: "
                  f"{', '.join(f'{len(v)} {k}' for k, v in safe.items())}; direct mode: "
                  f"{', '.join(f'{len(v)} {k}' for k, v in direct.items())} (bound {lost_bound})")
            assert not any(safe.values()), safe
            assert lost <= lost_bound, direct
            assert w.returncode is None
        finally:
            w.stop()
            check.close()
        log = w.output()
        assert not any(bad in log for bad in NEVER), log[-3000:]

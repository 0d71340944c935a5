"""gearsync backfill through the real stack: chunks, resume after an interruption, live changes
win over the snapshot, and a backfill while writes continue ends with zero drift."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from gearsync import backfill as bf
from gearsync import install as inst
from gearsync import verify as vf
from gearsync.config import load, parse
from gearsync.keys import checkpoint_key
from gearsync.scan import plan_bounds
from gearsync.schema import resolve
from gearsync.progress import Progress
from gearsync.testing.processes import WorkerProcess, wait_for
from gearsync.testing.sqlserver import numbers

from helpers import REPO_ROOT

CONFIG = """
[tables."gs_b.items"]
key = "item:{id}"
value = "json"

[tables."gs_b.tags"]
key = "tag:{shop}:{id}"
value = "hash"
columns = ["name"]
"""


@pytest.fixture
def gs_b(mysql: Any, redis_client: Any, tmp_path: Path, stack: Any) -> Iterator[Path]:
    with mysql.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS gs_b")
        cur.execute("CREATE DATABASE gs_b")
        cur.execute("CREATE TABLE gs_b.items (id INT PRIMARY KEY, name VARCHAR(50), n INT)")
        cur.execute("CREATE TABLE gs_b.tags (shop VARCHAR(10) NOT NULL, id INT NOT NULL, name VARCHAR(50), "
                    "PRIMARY KEY (shop, id))")
        cur.execute("INSERT INTO gs_b.items SELECT seq, CONCAT('item ', seq), seq * 2 FROM " + numbers(2000))
        cur.execute("INSERT INTO gs_b.tags SELECT IF(seq % 2, 'a', 'b'), seq, CONCAT('t\"', seq) "
                    "FROM " + numbers(700))
        cur.execute("DELETE FROM gearsync.outbox")
    cfg_file = tmp_path / "gearsync.toml"
    cfg_file.write_text(f"[mysql]\nurl = \"{stack.mysql_url}\"\n[redis]\nurl = \"{stack.redis_url}\"\n" + CONFIG)
    yield cfg_file
    with mysql.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS gs_b")


def test_backfill_resume_and_composite_keys(gs_b: Path, mysql: Any, redis_client: Any) -> None:
    cfg = load(gs_b)
    items, tags = resolve(cfg, mysql)
    first = bf.backfill_table(items, mysql, redis_client, chunk=300, max_chunks=2, progress=False)
    assert first.rows == 600
    assert json.loads(redis_client.get(checkpoint_key("gs_b.items"))) == [600]
    assert redis_client.exists(b"item:600") and not redis_client.exists(b"item:601")
    res = bf.backfill(cfg, chunk=300, progress=False)
    assert [(r.table, r.rows, r.resumed_from) for r in res] == [("gs_b.items", 1400, [600]), ("gs_b.tags", 700, None)]
    assert not redis_client.exists(checkpoint_key("gs_b.items"))
    assert redis_client.get(b"item:2000") == b'{"id":2000,"name":"item 2000","n":4000}'
    assert redis_client.hgetall(b"tag:b:2") == {b"name": b't"2'}
    assert not redis_client.keys(b"gearsync:v:*")  # a snapshot stores no version
    reports = vf.verify(cfg, progress=False)
    assert [(r.rows, r.drift) for r in reports] == [(2000, 0), (700, 0)]


def test_a_stored_version_wins_over_the_snapshot(gs_b: Path, mysql: Any, redis_client: Any) -> None:
    redis_client.set(b"item:5", b"live")
    redis_client.set(b"gearsync:v:item:5", 99)
    redis_client.set(b"gearsync:v:item:6", 100, ex=60)  # a tombstone: the row was deleted live
    res = bf.backfill(load(gs_b), ["gs_b.items"], progress=False)
    assert res[0].rows == 2000 and res[0].written == 1998
    assert redis_client.get(b"item:5") == b"live" and not redis_client.exists(b"item:6")


def test_cli_backfill_prints_progress(gs_b: Path, redis_client: Any) -> None:
    out = subprocess.run([sys.executable, "-m", "gearsync", "backfill", "--config", str(gs_b), "--table",
                          "gs_b.tags", "--chunk", "100"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "gs_b.tags: 700 rows, 700 keys written" in out.stdout
    assert "backfill gs_b.tags: 700/700 rows (100%)" in out.stderr and "rows/s" in out.stderr
    assert redis_client.exists(b"tag:a:699")


def test_progress_line() -> None:
    import io

    buf = io.StringIO()
    p = Progress("x", 1000, stream=buf, interval=0)
    p.add(250)
    assert "x: 250/1,000 rows (25%)" in buf.getvalue() and "ETA" in buf.getvalue()
    p.close()
    assert buf.getvalue().rstrip().endswith("done")


def test_backfill_while_writes_continue_ends_without_drift(stack: Any, gs_b: Path, mysql: Any, redis_client: Any,
                                                           safe_env: dict[str, str], tmp_path: Path) -> None:
    cfg = load(gs_b)
    inst.install(cfg, mysql)
    env = dict(safe_env, GEARSYNC_SWEEP_AGE="1")  # a lost doorbell must not outlast the drain wait
    w = WorkerProcess(env, ["--config", str(gs_b)], log_path=tmp_path / "worker.log",
                      gearmand=stack.gearmand, function="gearsync").start()
    stop = threading.Event()
    writes = [0]

    def writer() -> None:
        conn = stack.mysql.connect()
        rnd = random.Random(7)
        with conn.cursor() as cur:
            while not stop.is_set():
                i = rnd.randint(1, 2100)
                op = rnd.random()
                if op < 0.6:
                    cur.execute("INSERT INTO gs_b.items VALUES (%s, %s, %s) ON DUPLICATE KEY UPDATE "
                                "name = VALUES(name), n = VALUES(n)", (i, f"live {writes[0]}", writes[0]))
                elif op < 0.8:
                    cur.execute("DELETE FROM gs_b.items WHERE id = %s", (i,))
                else:
                    cur.execute("UPDATE gs_b.tags SET name = %s WHERE id = %s", (f"live {writes[0]}", i % 700))
                writes[0] += 1
        conn.close()

    t = threading.Thread(target=writer)
    t.start()
    try:
        time.sleep(0.2)
        bf.backfill(cfg, chunk=200, progress=False)
        time.sleep(0.2)
    finally:
        stop.set()
        t.join()
        try:
            wait_for(lambda: stack.mysql.execute("SELECT COUNT(*) FROM gearsync.outbox")[0][0] == 0, 30, 0.1,
                     "the worker to drain the outbox")
        finally:
            w.stop()
    assert writes[0] > 50
    reports = vf.verify(cfg, progress=False)
    assert [r.drift for r in reports] == [0, 0], [str(r) for r in reports]
    assert [r.rows for r in reports][1] == 700


def test_example_config_loads() -> None:
    cfg = load(REPO_ROOT / "examples" / "gearsync.toml")
    assert {"shop.users", "shop.orders", "shop.profiles"} <= set(cfg.tables)
    assert cfg.table("shop.orders").key_columns == ("shop_id", "id")
    posts = cfg.table("shop.posts")
    assert posts.where == "status = 'published'" and posts.field_names == ("title", "byline", "score")
    assert [(t.type, t.key) for t in posts.targets] == [("set", "posts:tag:{tag}"), ("zset", "posts:top"),
                                                          ("stream", "posts:changes")]
    assert parse({"tables": {"a.b": {"key": "k:{id}"}}}).table("a.b").mode == "safe"


def test_parallel_backfill_partitions_and_resume(gs_b: Path, mysql: Any, redis_client: Any) -> None:
    """--jobs 3: the primary-key range split over 3 processes (composite keys too); a partition
    already done (its checkpoint gone, the plan still there) is not redone."""
    cfg = load(gs_b)
    items, tags = resolve(cfg, mysql)
    assert plan_bounds(mysql, items, 2000, 3) == [[666], [1333]]
    assert plan_bounds(mysql, tags, 700, 2) == [["a", 699]]
    res = bf.backfill(cfg, chunk=150, progress=False, jobs=3)
    assert [(r.rows, r.written) for r in res] == [(2000, 2000), (700, 700)]
    assert redis_client.keys(b"gearsync:backfill:*") == []
    assert [r.drift for r in vf.verify(cfg, progress=False)] == [0, 0]
    # an interrupted run: partition 1 done, 0 and 2 still to do
    redis_client.flushall()
    redis_client.set(b"gearsync:backfill:gs_b.items#plan", "[[666], [1333]]")
    redis_client.set(b"gearsync:backfill:gs_b.items#0", "[]")
    redis_client.set(b"gearsync:backfill:gs_b.items#2", "[1900]")
    r = bf.backfill_parallel(items, cfg.mysql_url, cfg.redis_url, 3, chunk=150, progress=False)  # type: ignore[arg-type]
    assert r.rows == 666 + 100 and r.resumed_from == ["partitions"]
    assert redis_client.exists(b"item:666") and not redis_client.exists(b"item:667")
    assert redis_client.exists(b"item:1901") and not redis_client.exists(b"item:1900")
    assert redis_client.keys(b"gearsync:backfill:*") == []

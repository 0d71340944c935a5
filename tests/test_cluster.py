"""gearsync on a Redis Cluster (3 primaries, a replica each, real ``redis-server
--cluster-enabled`` nodes): the worker in both modes, configured tables, backfill (one process
and ``--jobs``), verify with orphans on every primary, repair, status and the dead letters —
all through ``redis+cluster://`` URLs, and never a cross-slot error."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from gearsync import install as inst
from gearsync.changes import Change
from gearsync.config import load
from gearsync.keys import key_slot, version_key
from gearsync.redis_clients import sync_client
from gearsync.redis_errors import SinkUnavailable
from gearsync.redis_sink import RedisSink
from gearsync.testing.processes import WorkerProcess, wait_for
from gearsync.testing.redis_cluster import RedisCluster
from gearsync.testing.sqlserver import numbers

from helpers import converge, execute, redis_state
from streams import NEVER


CONFIG = """
[tables."gs_c.users"]
key = "user:{id}"
value = "json"

[tables."gs_c.carts"]
key = "cart:{{{id}}}:items"      # a Redis hash tag of its own: cart:{7}:items
value = "column"
column = "items"
"""


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gearsync", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def _per_primary(cluster: RedisCluster) -> list[int]:
    return [int(n.client().dbsize()) for n in cluster.primaries()]


def test_both_modes_write_a_cluster(stack: Any, cluster: RedisCluster, safe_mysql: Any, redis_client: Any,
                                    seed_drained: None, tmp_path: Path, safe_env: dict[str, str]) -> None:
    """The seed's direct mode (test.test: MSET/DEL per slot) and safe mode (test.test_safe:
    versioned writes per slot) on one worker: every change arrives, spread over the three
    primaries, each version key beside its key."""
    env = dict(safe_env, GEARSYNC_REDIS_URL=cluster.url)
    c = sync_client(cluster.url)
    w = WorkerProcess(env, log_path=tmp_path / "worker.log", gearmand=stack.gearmand, function="gearsync")
    w.start()
    try:
        rows = [(i, f"name {i} \u00e9") for i in range(300)]
        with safe_mysql.cursor() as cur:
            cur.executemany("INSERT INTO test.test VALUES (%s, %s)", rows)
            cur.executemany("INSERT INTO test.test_safe VALUES (%s, %s)", rows)
            cur.execute("UPDATE test.test SET name = CONCAT(name, '!') WHERE id < 50")
            cur.execute("UPDATE test.test_safe SET name = CONCAT(name, '!') WHERE id < 50")
            cur.execute("DELETE FROM test.test WHERE id >= 280")
            cur.execute("DELETE FROM test.test_safe WHERE id >= 280")
        converge(safe_mysql, c, timeout=30)
        want = {str(i).encode(): f"name {i} \u00e9{'!' if i < 50 else ''}".encode() for i in range(280)}
        wait_for(lambda: redis_state(c, b"[0-9]*") == want, 30, 0.1, "the direct-mode keys")
        assert all(n > 100 for n in _per_primary(cluster)), _per_primary(cluster)
        for k in (b"test_safe:1", b"test_safe:290"):  # a value's version, a delete's tombstone
            assert key_slot(version_key(k, True)) == key_slot(k) and c.get(version_key(k, True)) is not None
        assert c.get(b"gearsync:v:test_safe:1") is None  # not the single-Redis form
    finally:
        w.stop()
        c.close()
    log = w.output()
    assert not any(bad in log for bad in NEVER), log[-3000:]


@pytest.fixture
def gs_c(mysql: Any, cluster: RedisCluster, stack: Any, tmp_path: Path) -> Iterator[Path]:
    """Two configured tables (keys without and with a hash tag) with rows, and a config for
    the cluster."""
    with mysql.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS gs_c")
        cur.execute("CREATE DATABASE gs_c")
        cur.execute("CREATE TABLE gs_c.users (id INT PRIMARY KEY, name VARCHAR(50))")
        cur.execute("CREATE TABLE gs_c.carts (id INT PRIMARY KEY, items VARCHAR(50))")
        cur.execute(f"INSERT INTO gs_c.users SELECT seq, CONCAT('u', seq) FROM {numbers(2000)}")
        cur.execute(f"INSERT INTO gs_c.carts SELECT seq, CONCAT('i', seq) FROM {numbers(500)}")
        cur.execute("DELETE FROM gearsync.outbox")
    cfg = tmp_path / "gearsync.toml"
    cfg.write_text(f'[mysql]\nurl = "{stack.mysql_url}"\n[redis]\nurl = "{cluster.url}"\n'
                   f'[gearman]\nservers = ["{stack.gearman_servers}"]\n' + CONFIG)
    yield cfg
    with mysql.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS gs_c")


def test_backfill_verify_repair_and_status_on_a_cluster(stack: Any, cluster: RedisCluster, gs_c: Path,
                                                        mysql: Any, tmp_path: Path,
                                                        safe_env: dict[str, str]) -> None:
    c = sync_client(cluster.url)
    res = _cli("backfill", "--config", str(gs_c), "--quiet")
    assert res.returncode == 0, res.stderr
    assert "gs_c.users: 2000 rows, 2000 keys written" in res.stdout
    assert c.get(b"user:7") == b'{"id":7,"name":"u7"}' and c.get(b"cart:{7}:items") == b"i7"
    assert all(n > 500 for n in _per_primary(cluster))
    # --jobs 2 again from scratch: the plan and the partition checkpoints without MULTI
    res = _cli("backfill", "--config", str(gs_c), "--quiet", "--jobs", "2", "--restart")
    assert res.returncode == 0 and "2000 rows" in res.stdout, res.stderr
    assert list(c.scan_iter(match=b"gearsync:backfill:*")) == []

    # a live change (safe mode) through the worker: versions in the tagged form
    inst.install(load(gs_c), mysql)
    env = dict(safe_env, GEARSYNC_REDIS_URL=cluster.url)  # the environment wins over the config
    w = WorkerProcess(env, ["--config", str(gs_c)], log_path=tmp_path / "worker.log",
                      gearmand=stack.gearmand, function="gearsync").start()
    try:
        execute(mysql, "UPDATE gs_c.users SET name = 'live' WHERE id = 7")
        execute(mysql, "UPDATE gs_c.carts SET items = 'live' WHERE id = 7")
        wait_for(lambda: c.get(b"cart:{7}:items") == b"live" and c.get(b"user:7") == b'{"id":7,"name":"live"}',
                 15, 0.05, "the live changes")
        assert c.get(b"gearsync:v:{7}:cart:{7}:items") is not None and c.get(b"gearsync:v:{user:7}") is not None
        assert _cli("verify", "--config", str(gs_c), "--quiet").returncode == 0

        # drift: a stale value (with a version), a missing key, one orphan on every primary
        c.set(b"user:8", b"stale")
        c.delete(b"user:9")
        orphans = []
        for node in cluster.primaries():
            owned = set(cluster.slots_of(node))
            orphans.append(next(k for k in (f"user:{90000 + i}".encode() for i in range(10000))
                                if key_slot(k) in owned))
        for k in orphans:
            c.set(k, b"orphan")
        res = _cli("verify", "--config", str(gs_c), "--json", "--table", "gs_c.users")
        assert res.returncode == 1, res.stderr
        (users,) = json.loads(res.stdout)["tables"]
        assert (users["missing"], users["stale"], users["orphaned"]) == (1, 1, 3), users
        assert sorted(users["samples"]["orphaned"]) == sorted(k.decode() for k in orphans)
        res = _cli("verify", "--config", str(gs_c), "--repair", "--quiet")
        assert res.returncode == 0 and "5 repaired" in res.stdout, res.stdout + res.stderr
        assert _cli("verify", "--config", str(gs_c), "--quiet").returncode == 0
        assert c.get(b"user:8") == b'{"id":8,"name":"u8"}' and not any(c.exists(k) for k in orphans)

        st = _cli("status", "--config", str(gs_c))
        assert st.returncode == 0 and "cluster of 3 primaries, 3 replicas, state ok" in st.stdout, st.stdout

        # a change Redis refuses for good (its version key holds a hash): a dead letter, the rest applies
        c.delete(version_key(b"user:1", True))
        c.hset(version_key(b"user:1", True), "not", "a version")
        execute(mysql, "UPDATE gs_c.users SET name = 'again' WHERE id IN (1, 2)")
        wait_for(lambda: c.get(b"user:2") == b'{"id":2,"name":"again"}', 15, 0.05, "the other change")
        wait_for(lambda: c.xlen(b"gearsync:dead") == 1, 15, 0.05, "the dead letter")
        ((_id, entry),) = c.xrange(b"gearsync:dead")
        assert entry[b"from"] == b"user:1" and b"WRONGTYPE" in entry[b"error"] and b":" in entry[b"worker"]
        st = _cli("status", "--config", str(gs_c))
        assert st.returncode == 1 and "dead letters: 1" in st.stdout, st.stdout
    finally:
        w.stop()
        c.close()
    log = w.output()
    assert not any(bad in log.replace("Traceback", "") for bad in NEVER[:3]), log[-3000:]


def test_one_backfill_of_a_table_at_a_time(cluster: RedisCluster, gs_c: Path) -> None:
    """Workers and operators on many hosts: a backfill of a table refuses to start while another
    holds its lock, and runs once the lock is gone."""
    c = sync_client(cluster.url)
    try:
        c.set(b"gearsync:lock:backfill:gs_c.users", b"another host", ex=60)
        res = _cli("backfill", "--config", str(gs_c), "--quiet", "--table", "gs_c.users")
        assert res.returncode == 2 and "running elsewhere" in res.stderr, res.stderr
        assert c.get(b"user:1") is None
        c.delete(b"gearsync:lock:backfill:gs_c.users")
        res = _cli("backfill", "--config", str(gs_c), "--quiet", "--table", "gs_c.users")
        assert res.returncode == 0 and c.get(b"user:1") is not None, res.stderr
        assert c.get(b"gearsync:lock:backfill:gs_c.users") is None  # released
    finally:
        c.close()


def test_a_plain_url_to_a_cluster_node_says_what_to_use(cluster: RedisCluster) -> None:
    """redis:// to one node of a cluster: its writes get MOVED or CROSSSLOT; the worker holds
    them (SinkUnavailable, retried: never a dead letter) and says which URL to use."""
    async def go() -> str:
        sink = RedisSink.from_url(cluster.primaries()[0].url)
        try:
            await sink.apply([Change("set", f"k{i}", "v") for i in range(50)])
        except SinkUnavailable as e:
            return str(e)
        finally:
            await sink.close()
        return ""

    assert "use a redis+cluster:// URL" in asyncio.run(go())

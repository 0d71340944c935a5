"""`gearsync worker --config`: configured tables mapped to json / hash / column values with
TTL, composite keys, key changes and deletes, in safe and direct mode; an unconfigured safe
table (test.test_safe) keeps its built-in shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from gearsync import install as inst
from gearsync.config import load
from gearsync.testing.processes import WorkerProcess, wait_for

CONFIG = """
[tables."gs_w.users"]
key = "user:{id}"
value = "json"
exclude = ["password_hash"]

[tables."gs_w.profiles"]
key = "profile:{id}"
value = "hash"
columns = ["name", "city"]
ttl = 300

[tables."gs_w.orders"]
key = "order:{shop_id}:{id}"
value = "column"
column = "status"
"""


@pytest.fixture
def tables(mysql: Any) -> Iterator[Any]:
    with mysql.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS gs_w")
        cur.execute("CREATE DATABASE gs_w")
        cur.execute("CREATE TABLE gs_w.users (id INT PRIMARY KEY, name VARCHAR(50), email VARCHAR(50), "
                    "password_hash VARCHAR(50))")
        cur.execute("CREATE TABLE gs_w.profiles (id INT PRIMARY KEY, name VARCHAR(50), city VARCHAR(50))")
        cur.execute("CREATE TABLE gs_w.orders (shop_id INT NOT NULL, id INT NOT NULL, status VARCHAR(20), "
                    "PRIMARY KEY (shop_id, id))")
        cur.execute("TRUNCATE TABLE test.test_safe")
        cur.execute("DELETE FROM gearsync.outbox")
    yield mysql
    with mysql.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS gs_w")


def _exercise(mysql: Any, redis_client: Any, safe: bool) -> None:
    with mysql.cursor() as cur:
        cur.execute("INSERT INTO gs_w.users VALUES (1, 'alice', 'a@x', 'secret'), (2, 'bob', NULL, 's')")
        cur.execute("INSERT INTO gs_w.profiles VALUES (1, 'alice', 'Oslo'), (2, 'bob', NULL)")
        cur.execute("INSERT INTO gs_w.orders VALUES (7, 1, 'new'), (7, 2, 'new'), (8, 1, NULL)")
        cur.execute("UPDATE gs_w.orders SET status = 'paid' WHERE shop_id = 7 AND id = 1")
        cur.execute("UPDATE gs_w.orders SET id = 3 WHERE shop_id = 7 AND id = 2")  # key change
        # a key change that collides: MariaDB fires AFTER UPDATE although nothing moved
        cur.execute("UPDATE IGNORE gs_w.orders SET id = 1 WHERE shop_id = 7 AND id = 3")
        cur.execute("DELETE FROM gs_w.users WHERE id = 2")
        if safe:
            cur.execute("INSERT INTO test.test_safe VALUES (1, 'plain')")
    wait_for(lambda: redis_client.get(b"order:7:3") == b"new" and redis_client.exists(b"profile:2")
             and not redis_client.exists(b"user:2"), 15, 0.05, "configured changes applied")
    assert json.loads(redis_client.get(b"user:1")) == {"id": 1, "name": "alice", "email": "a@x"}
    assert redis_client.get(b"user:1") == b'{"id":1,"name":"alice","email":"a@x"}'
    assert redis_client.hgetall(b"profile:1") == {b"name": b"alice", b"city": b"Oslo"}
    assert redis_client.hgetall(b"profile:2") == {b"name": b"bob"}
    assert 0 < redis_client.ttl(b"profile:1") <= 300
    assert redis_client.ttl(b"user:1") == -1
    assert redis_client.get(b"order:7:1") == b"paid"
    assert not redis_client.exists(b"order:7:2") and not redis_client.exists(b"order:8:1")
    if safe:
        wait_for(lambda: redis_client.get(b"test_safe:1") == b"plain", 10, 0.05)
        assert int(redis_client.get(b"gearsync:v:order:7:1")) > int(redis_client.get(b"gearsync:v:user:1"))
        assert redis_client.ttl(b"gearsync:v:user:2") > 0  # tombstone


@pytest.mark.parametrize("mode", ["safe", "direct"])
def test_worker_applies_configured_tables(stack: Any, tables: Any, redis_client: Any, tmp_path: Path,
                                          safe_env: dict[str, str], mode: str) -> None:
    cfg_file = tmp_path / "gearsync.toml"
    cfg_file.write_text(CONFIG, encoding="utf-8")
    inst.install(load(cfg_file), tables, mode)
    w = WorkerProcess(safe_env, ["--config", str(cfg_file)], log_path=tmp_path / "worker.log",
                      gearmand=stack.gearmand, function="gearsync" if mode == "safe" else "gearsync_direct")
    w.start()
    try:
        _exercise(tables, redis_client, mode == "safe")
    finally:
        w.stop()
    assert "Traceback" not in w.output()


def _scrape(port: int) -> dict[str, float]:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_concurrency_metrics_and_json_logs(stack: Any, tables: Any, redis_client: Any, tmp_path: Path,
                                           safe_env: dict[str, str]) -> None:
    """--concurrency 2: two worker processes (both registered with gearmand) and ONE metrics
    endpoint, the supervisor's, with the group's sums; --log-format json: every log line is a
    JSON object with pid and worker index; SIGTERM stops both, exit 0."""
    from gearsync.testing.stack import free_port

    cfg_file = tmp_path / "gearsync.toml"
    cfg_file.write_text(CONFIG, encoding="utf-8")
    inst.install(load(cfg_file), tables)
    port = free_port()
    w = WorkerProcess(safe_env, ["--config", str(cfg_file), "--concurrency", "2", "--metrics-port", str(port),
                                 "--log-format", "json"], log_path=tmp_path / "worker.log",
                      gearmand=stack.gearmand, function="gearsync")
    w.start()
    try:
        wait_for(lambda: stack.gearmand.status().get("gearsync", (0, 0, 0))[2] >= 2, 15, 0.05, "2 workers")
        with tables.cursor() as cur:
            for i in range(40):
                cur.execute("INSERT INTO gs_w.users VALUES (%s, 'n', NULL, NULL)", (i,))
        wait_for(lambda: all(redis_client.exists(f"user:{i}") for i in range(40)), 15, 0.05)
        wait_for(lambda: _scrape(port).get('gearsync_jobs_applied_total{mode="safe"}', 0.0) == 40, 10, 0.1,
                 "the group's endpoint to count 40 rows")
        m = _scrape(port)
        assert m.get('gearsync_table_changes_applied_total{table="gs_w.users"}') == 40
        assert 'gearsync_outbox_lag_seconds' in m
        assert any(k.startswith('gearsync_batch_seconds_count{mode="safe"}') for k in m)
    finally:
        assert w.stop() == 0
    lines = [json.loads(ln) for ln in w.output().splitlines() if ln.strip()]
    assert lines and all(ln["level"] and ln["pid"] for ln in lines), lines[:3]
    assert {ln.get("worker") for ln in lines} >= {0, 1}

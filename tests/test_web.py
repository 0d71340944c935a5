"""The operator's view: the status page in a real headless browser, the one metrics endpoint of
a --concurrency group during a Redis outage, `gearsync status` exit codes from the config
alone, and SIGHUP reloading a changed mapping under a stream of writes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from gearsync import install as inst
from gearsync import verify as vf
from gearsync.config import load
from gearsync.gearman import GearmanClient
from gearsync.metrics import group_registry, render
from gearsync.testing.processes import WorkerProcess, wait_for
from gearsync.testing.stack import Gearmand, free_port

from helpers import execute

DB = "gs_web"


@pytest.fixture
def web_db(mysql: Any) -> Iterator[Any]:
    execute(mysql, f"DROP DATABASE IF EXISTS {DB}")
    execute(mysql, f"CREATE DATABASE {DB}")
    execute(mysql, f"CREATE TABLE {DB}.users (id INT PRIMARY KEY, name VARCHAR(20), city VARCHAR(20))")
    execute(mysql, f"CREATE TABLE {DB}.orders (id INT PRIMARY KEY, status VARCHAR(20))")
    execute(mysql, "DELETE FROM gearsync.outbox")
    yield mysql
    execute(mysql, f"DROP DATABASE IF EXISTS {DB}")


def _config(stack: Any, path: Path, users_value: str = "hash") -> Path:
    path.write_text(f'[mysql]\nurl = "{stack.mysql_url}"\n[redis]\nurl = "{stack.redis_url}"\n'
                    f'[gearman]\nservers = ["{stack.gearman_servers}"]\n'
                    f'[tables."{DB}.users"]\nkey = "u:{{id}}"\nvalue = "{users_value}"\n'
                    f'[tables."{DB}.orders"]\nkey = "o:{{id}}"\nvalue = "column"\ncolumn = "status"\n')
    return path


def _get(port: int, path: str) -> bytes:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10).read()


def _chromium(url: str, out: Path) -> str:
    """Load ``url`` in headless Chromium: a screenshot to ``out`` and the rendered DOM's text."""
    chromium = shutil.which("chromium")
    assert chromium, "chromium is not installed: run `make setup`"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={out.parent / 'chromium-profile'}", "--window-size=1200,900"]
    subprocess.run([chromium, *flags, f"--screenshot={out}", url], check=True, capture_output=True, timeout=120)
    dom = subprocess.run([chromium, *flags, "--dump-dom", url], check=True, capture_output=True, text=True,
                         timeout=120).stdout
    return dom


def test_status_page_in_a_real_browser(stack: Any, web_db: Any, redis_client: Any, tmp_path: Path,
                                       safe_env: dict[str, str]) -> None:
    cfg = _config(stack, tmp_path / "g.toml")
    inst.install(load(cfg), web_db)
    port = free_port()
    w = WorkerProcess(safe_env, ["--config", str(cfg), "--metrics-port", str(port)], log_path=tmp_path / "w.log",
                      gearmand=stack.gearmand, function="gearsync").start()
    try:
        for i in range(30):
            execute(web_db, f"INSERT INTO {DB}.users VALUES (%s, 'n', 'c')", (i,))
        execute(web_db, f"INSERT INTO {DB}.orders VALUES (1, 'paid')")
        wait_for(lambda: redis_client.get("o:1") == b"paid" and redis_client.exists("u:29"), 10, 0.05)
        wait_for(lambda: json.loads(_get(port, "/status.json"))["tables"][f"{DB}.users"]["last_applied_age"]
                 is not None, 10, 0.2, "the page's data")
        dom = _chromium(f"http://127.0.0.1:{port}/", tmp_path / "status.png")
    finally:
        w.stop()
    png = (tmp_path / "status.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert f"{DB}.users" in dom and f"{DB}.orders" in dom and ">healthy<" in dom
    assert '<td>30</td>' in dom  # users applied
    assert "gearsync_direct" in dom and "Job servers" in dom
    assert 'http-equiv="refresh"' in dom


def test_one_endpoint_for_a_group_shows_retries_rising_during_an_outage(
        stack: Any, web_db: Any, redis_server: Any, tmp_path: Path, safe_env: dict[str, str]) -> None:
    """--concurrency 3 against a Redis that goes away: the supervisor's single /metrics shows
    gearsync_redis_retries_total growing while the outage lasts, and everything arrives after."""
    env = dict(safe_env, GEARSYNC_REDIS_URL=redis_server.url)
    port = free_port()
    w = WorkerProcess(env, ["--concurrency", "3", "--metrics-port", str(port)], log_path=tmp_path / "w.log",
                      gearmand=stack.gearmand).start()
    try:
        wait_for(lambda: stack.gearmand.status().get("syncToRedis", (0, 0, 0))[2] >= 3, 15, 0.05, "3 workers")

        def retries() -> float:
            text = _get(port, "/metrics").decode()
            return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("gearsync_redis_retries_total{"))
        redis_server.stop()
        with GearmanClient(stack.gearmand.host, stack.gearmand.port) as c:
            c.submit_many("syncToRedis", [json.dumps({"id": f"g{i}", "name": "x"}).encode() for i in range(30)])
        wait_for(lambda: retries() >= 1, 15, 0.2, "retries during the outage")
        first = retries()
        wait_for(lambda: retries() > first, 15, 0.2, "retries still rising")
        redis_server.start()
        r = redis_server.client()
        wait_for(lambda: all(r.exists(f"g{i}") for i in range(30)), 30, 0.1, "every job after the outage")
    finally:
        assert w.stop() == 0


def test_group_metrics_leave_out_a_file_a_child_is_creating(tmp_path: Path) -> None:
    """A scrape that lands while a child creates its file (empty, not yet sized) still answers,
    with the other children's values: CI once got a 500 from /metrics at that moment."""
    child = ("import sys; from gearsync.metrics import use_multiprocess; use_multiprocess(sys.argv[1]);"
             "from prometheus_client import Counter, CollectorRegistry;"
             "Counter('gs_test_jobs', 'test', registry=CollectorRegistry()).inc(7)")
    subprocess.run([sys.executable, "-c", child, str(tmp_path)], check=True)
    (tmp_path / "counter_4194999.db").touch()  # what the next child's file is for a moment
    text = render(group_registry(str(tmp_path))).decode()
    assert "gs_test_jobs_total 7.0" in text


def test_status_exit_codes_from_the_config_alone(stack: Any, tmp_path: Path, gearmand: Gearmand) -> None:
    """Each unhealthy condition makes `gearsync status --config F` exit 1 and say why."""
    def status(cfg: str, *extra: str) -> subprocess.CompletedProcess[str]:
        p = tmp_path / "s.toml"
        p.write_text(cfg)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GEARSYNC_")}
        return subprocess.run([sys.executable, "-m", "gearsync", "status", "--config", str(p), *extra],
                              capture_output=True, text=True, env=env, cwd=tmp_path)

    base = f'[mysql]\nurl = "{stack.mysql_url}"\n[redis]\nurl = "{stack.redis_url}"\n'
    own = f'[gearman]\nservers = ["{gearmand.host}:{gearmand.port}"]\n'
    res = status(base + own)
    assert res.returncode == 0 and "healthy" in res.stdout, res.stdout + res.stderr
    res = status(base.replace(str(stack.redis.port), str(free_port())) + own)
    assert res.returncode == 1 and "redis: unreachable" in res.stdout
    with GearmanClient(gearmand.host, gearmand.port) as c:  # a doorbell and no worker to take it
        c.submit_many("gearsync", [b"1"])
    res = status(base + own)
    assert res.returncode == 1 and "1 jobs queued for gearsync and no worker" in res.stdout
    res = status(base + own, "--json")
    assert res.returncode == 1 and json.loads(res.stdout)["problems"]
    execute(stack.mysql.connect(), "INSERT INTO gearsync.outbox (source, k, op, created) VALUES "
                                   "('x.y', 'k', 'delete', NOW(6) - INTERVAL 90 SECOND)")
    try:
        res = status(base + f'[gearman]\nservers = ["{stack.gearman_servers}"]\n', "--max-lag", "30")
        assert res.returncode == 1 and "the oldest change waits for" in res.stdout
    finally:
        execute(stack.mysql.connect(), "DELETE FROM gearsync.outbox WHERE source = 'x.y'")


def test_sighup_reloads_a_changed_mapping_under_writes(stack: Any, web_db: Any, redis_client: Any,
                                                       tmp_path: Path, safe_env: dict[str, str]) -> None:
    """users: hash → json with SIGHUP while a writer runs: no change lost, the new mapping in
    effect for new writes and (refreshed in the background) for the old keys; verify clean."""
    cfg = _config(stack, tmp_path / "g.toml", "hash")
    inst.install(load(cfg), web_db)
    w = WorkerProcess(safe_env, ["--config", str(cfg), "--concurrency", "2"], log_path=tmp_path / "w.log",
                      gearmand=stack.gearmand, function="gearsync").start()
    stop = threading.Event()
    errors: list[str] = []

    def writer() -> None:
        conn = stack.mysql.connect()
        i = 0
        while not stop.is_set():
            try:
                execute(conn, f"INSERT INTO {DB}.users VALUES (%s, %s, 'c') ON DUPLICATE KEY UPDATE "
                              "name = VALUES(name)", (i % 100, f"n{i}"))
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
            i += 1
        conn.close()
    t = threading.Thread(target=writer, daemon=True)
    try:
        t.start()
        time.sleep(1.0)
        _config(stack, cfg, "json")
        os.kill(w.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]
        time.sleep(1.5)
        stop.set()
        t.join(10)
        assert errors == []

        def all_json() -> bool:
            keys = [f"u:{i}" for i in range(100)]
            types = {redis_client.type(k) for k in keys if redis_client.exists(k)}
            return types == {b"string"}
        wait_for(all_json, 30, 0.2, "every key in the new (json) shape")
        reports = vf.verify(load(cfg), progress=False)
        assert [r.drift for r in reports] == [0, 0], [str(r) for r in reports]
    finally:
        stop.set()
        w.stop()
    assert w.output().count("reload:") >= 2  # both workers of the group reloaded

"""Workers on many hosts: three `gearsync worker` processes, each with a config file of its own
(its own startup nodes of the cluster, its own metrics port), serve one configured table into
one Redis Cluster while a stream writes; one is SIGKILLed mid-stream and another host takes its
place. Nothing assumes it is alone: the outbox rows the killed worker held are swept by the
others, each worker's metrics count its own share, and a change of the table's columns makes
one worker of the three rewrite its keys while the others see the lock and leave it."""

from __future__ import annotations

import os
import random
import threading
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from gearsync import install as inst
from gearsync.config import load
from gearsync.redis_clients import sync_client
from gearsync.testing.processes import WorkerProcess, wait_for
from gearsync.testing.redis_cluster import RedisCluster
from gearsync.testing.stack import free_port

from helpers import execute, outbox_size, redis_state
from streams import NEVER, drift, settle

ROWS = 30000  # a refresh of this many rows takes a few seconds: long enough for the others to see its lock


@pytest.fixture
def items(mysql: Any) -> Iterator[Any]:
    with mysql.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS gs_m")
        cur.execute("CREATE DATABASE gs_m")
        cur.execute("CREATE TABLE gs_m.items (id INT PRIMARY KEY, name VARCHAR(50))")
        cur.execute(f"INSERT INTO gs_m.items SELECT seq, CONCAT('i', seq) FROM gs_m.seq_1_to_{ROWS}")
        cur.execute("DELETE FROM gearsync.outbox")
    yield mysql
    with mysql.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS gs_m")


def _host(stack: Any, cluster: RedisCluster, tmp_path: Path, i: int) -> tuple[WorkerProcess, int]:
    """A worker as another host would run it: a config file of its own naming some of the
    cluster's nodes, its own metrics port, nothing from the test's environment."""
    home = tmp_path / f"host-{i}"
    home.mkdir()
    nodes = cluster.nodes[i % 3::3] or cluster.nodes
    cfg = home / "gearsync.toml"
    cfg.write_text(f'[mysql]\nurl = "{stack.mysql_url}"\n'
                   f'[redis]\nurl = "redis+cluster://{",".join(n.address for n in nodes)}"\n'
                   f'[gearman]\nservers = ["{stack.gearman_servers}"]\n'
                   '[tables."gs_m.items"]\nkey = "item:{id}"\nvalue = "column"\ncolumn = "name"\n')
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEARSYNC_")}
    env.update(GEARSYNC_METRICS_PORT=str(port), GEARSYNC_SWEEP_AGE="2", GEARSYNC_SWEEP_INTERVAL="0.5")
    return WorkerProcess(env, ["--config", str(cfg)], log_path=home / "worker.log", gearmand=stack.gearmand,
                         function="gearsync"), port


def _workers(stack: Any) -> int:
    """Workers gearmand lists for the safe-mode function."""
    return int(stack.gearmand.status().get("gearsync", (0, 0, 0))[2])


def _start(stack: Any, w: WorkerProcess) -> None:
    """Start w and wait until gearmand lists it. WorkerProcess.start returns once gearmand lists
    a worker for the function, which the hosts already running are: without this wait the
    writes of the test could end before a host took a job (seen: the late host's share was 0)."""
    n = _workers(stack)
    w.start()
    wait_for(lambda: _workers(stack) > n, 30, 0.05, "the worker to register with gearmand")


def _applied(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith('gearsync_jobs_applied_total{mode="safe"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class Writes(threading.Thread):
    def __init__(self, stack: Any) -> None:
        super().__init__(daemon=True)
        self.stack, self.rng = stack, random.Random(7)
        self.stop = threading.Event()
        self.writes = 0

    def run(self) -> None:
        conn = self.stack.mysql.connect()
        try:
            while not self.stop.is_set():
                k = self.rng.randrange(1, 3000)
                op = self.rng.random()
                with conn.cursor() as cur:
                    if op < 0.8:
                        cur.execute("INSERT INTO gs_m.items (id, name) VALUES (%s, %s) ON DUPLICATE KEY UPDATE "
                                    "name = VALUES(name)", (k, f"n{self.rng.randrange(10**6)}"))
                    else:
                        cur.execute("DELETE FROM gs_m.items WHERE id = %s", (k,))
                self.writes += 1
        finally:
            conn.close()

    def until(self, n: int) -> None:
        target = self.writes + n
        wait_for(lambda: self.writes >= target or not self.is_alive(), 120, 0.01, f"{n} writes")


def test_three_hosts_one_cluster(stack: Any, cluster: RedisCluster, items: Any, tmp_path: Path) -> None:
    c = sync_client(cluster.url)
    cfg = None
    hosts = [_host(stack, cluster, tmp_path, i) for i in range(4)]
    (a, pa), (b, pb), (killed, _), (late, pl) = hosts
    for w, _port in hosts[:3]:
        cfg = cfg or load(w.args[1])
        _start(stack, w)
    assert cfg is not None
    three = _workers(stack)
    inst.install(cfg, items)
    writes = Writes(stack)
    writes.start()
    try:
        writes.until(1500)
        killed.kill()  # SIGKILL: the rows it claimed stay locked until its connection dies, then are swept
        writes.until(1000)
        wait_for(lambda: _workers(stack) == three - 1, 10, 0.05, "gearmand to drop the killed worker")
        _start(stack, late)
        execute(items, "ALTER TABLE gs_m.items ADD COLUMN note VARCHAR(10) NULL")  # every worker notices
        writes.until(1500)
    finally:
        writes.stop.set()
        writes.join(30)
    try:
        wait_for(lambda: outbox_size(items) == 0, 60, 0.1, "the outbox to drain")
        want = {f"item:{i}".encode(): n.encode() for i, n in execute(items, "SELECT id, name FROM gs_m.items")}
        d = settle(lambda: drift(want, redis_state(c, b"item:*")), 60)
        assert not any(d.values()), {k: (len(v), v[:5]) for k, v in d.items()}
        shares = [_applied(p) for p in (pa, pb, pl)]
        assert all(s > 0 for s in shares), shares  # each live host took its share, counted on its own port
        logs = [w.output() for w, _ in hosts]
        wait_for(lambda: sum("refreshed its keys" in w.output() for w, _ in hosts) >= 1, 60, 0.2, "a refresh")
        logs = [w.output() for w, _ in hosts]
        refreshed = sum(log.count("refreshed its keys") for log in logs)
        declined = sum(log.count("another worker is refreshing its keys") for log in logs)
        print(f"{writes.writes} writes, 3 of 4 hosts live at the end, safe rows applied per live host {shares}; "
              f"after the ALTER: {refreshed} refresh(es), {declined} host(s) saw the lock and left it")
        assert refreshed >= 1 and declined >= 1 and refreshed + declined >= 2
    finally:
        for w, _ in hosts:
            w.stop()
        c.close()
    for log in logs:
        assert not any(bad in log for bad in NEVER), log[-3000:]

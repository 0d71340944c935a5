"""A Redis Cluster under faults while both modes write (a cluster of the test's own: 3 primaries,
a replica each, cluster-node-timeout 1 s):

* a primary SIGKILLed mid-stream, its replica promoted, the old primary back as a replica: what
  each mode loses with the default (no waiting for replicas) is counted and printed;
* the same with the replica stopped for 300 writes first (it is promoted without them): with
  ``GEARSYNC_REDIS_REPLICAS=1`` (a batch is done once the replica has it) safe mode and direct
  mode lose nothing; with 0 they do lose writes, and a second pass over every row brings the
  cluster back in line;
* slots moved by ``redis-cli --cluster reshard`` while the stream writes: nothing is lost and
  the moved keys live on their new primary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from gearsync.keys import key_slot
from gearsync.redis_clients import sync_client
from gearsync.testing.processes import WorkerProcess, wait_for
from gearsync.testing.redis_cluster import RedisCluster

from helpers import execute, outbox_size
from streams import NEVER, Stream, direct_drift, safe_drift, settle


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    with RedisCluster(tmp_path / "cluster", primaries=3, replicas=1) as c:
        yield c


def _worker(stack: Any, env: dict[str, str], tmp_path: Path, url: str, replicas: int) -> WorkerProcess:
    env = dict(env, GEARSYNC_REDIS_URL=url, GEARSYNC_REDIS_REPLICAS=str(replicas), GEARSYNC_SWEEP_AGE="2",
               GEARSYNC_SWEEP_INTERVAL="0.5")
    return WorkerProcess(env, log_path=tmp_path / "worker.log", gearmand=stack.gearmand, function="gearsync")


def _counts(d: dict[str, list[bytes]]) -> str:
    return ", ".join(f"{len(v)} {k}" for k, v in d.items())


def _drifts(stack: Any, conn: Any, url: str) -> tuple[dict[str, list[bytes]], dict[str, list[bytes]]]:
    """Once the worker is idle (outbox empty, no direct-mode job queued): what each mode lost."""
    c = sync_client(url)
    wait_for(lambda: outbox_size(conn) == 0 and not stack.gearmand.queued("syncToRedis"), 60, 0.05,
             "the worker to finish")
    return settle(lambda: safe_drift(conn, c), 2), settle(lambda: direct_drift(conn, c), 2)


def _second_pass(conn: Any, c: Any) -> None:
    """What was lost stays lost until its row changes again: one more write of every row, then
    nothing is missing or stale (a lost delete stays a phantom: its row is gone)."""
    execute(conn, "UPDATE test.test SET name = CONCAT(name, '+')")
    execute(conn, "UPDATE test.test_safe SET name = CONCAT(name, '+')")
    for check in (safe_drift, direct_drift):
        d = settle(lambda: check(conn, c), ok=lambda d: not d["missing"] and not d["stale"])
        assert not d["missing"] and not d["stale"], d


def test_a_primary_killed_mid_stream(stack: Any, own_cluster: RedisCluster, safe_mysql: Any, redis_client: Any,
                                     seed_drained: None, tmp_path: Path, safe_env: dict[str, str]) -> None:
    """The common case, without waiting for replicas (the default): a primary dies while both
    modes write, its replica (as current as loopback replication makes it) takes over. What was
    lost is counted; the worker goes on, and a second pass repairs every row."""
    c = sync_client(own_cluster.url)
    w = _worker(stack, safe_env, tmp_path, own_cluster.url, 0).start()
    assert stack.mysql is not None
    stream = Stream(stack.mysql.connect, keys=400, seed=11)
    stream.start()
    try:
        stream.until(600)
        victim = own_cluster.primaries()[0]
        own_cluster.kill(victim)
        own_cluster.wait_failover(victim)
        stream.until(300)
        victim.start()
        own_cluster.wait_ok()
        stream.until(300)
    finally:
        stream.finish()
    try:
        safe, direct = _drifts(stack, safe_mysql, own_cluster.url)
        print(f"primary {victim.address} killed, replicas=0: {stream.writes} writes to each table; "
              f"safe mode: {_counts(safe)}; direct mode: {_counts(direct)}")
        _second_pass(safe_mysql, sync_client(own_cluster.url))
        assert w.returncode is None
    finally:
        w.stop()
        c.close()
    log = w.output()
    assert not any(bad in log for bad in NEVER), log[-3000:]
    assert "retry" in log  # the worker saw the primary go and held its batch


@pytest.mark.parametrize("replicas", [1, 0])
def test_a_lagging_replica_promoted(stack: Any, own_cluster: RedisCluster, safe_mysql: Any, redis_client: Any,
                                    seed_drained: None, tmp_path: Path, safe_env: dict[str, str], replicas: int) -> None:
    """The worst case: the replica is stopped (SIGSTOP) and its link cut while 300 more writes
    are made, then its primary dies and it is promoted without them. With
    GEARSYNC_REDIS_REPLICAS=1 the worker holds those batches (WAIT answers 0) and writes them to
    the promoted replica: 0 missing, 0 stale in both modes. With 0 the primary's acknowledgement
    was enough and the writes it took are gone: the test shows that they are."""
    c = sync_client(own_cluster.url)
    w = _worker(stack, safe_env, tmp_path, own_cluster.url, replicas).start()
    assert stack.mysql is not None
    stream = Stream(stack.mysql.connect, keys=400, seed=21 + replicas)
    stream.start()
    try:
        stream.until(500)
        victim = own_cluster.primaries()[0]
        (lagging,) = own_cluster.replicas_of(victim)
        lagging.pause()  # stopped, and cut off: what the primary takes from now on reaches no replica
        victim.client().client_kill_filter(_type="replica")
        stream.until(300)
        stream.going.clear()
        if replicas:  # WAIT answers short (the replica is stopped): batches are held, not done
            wait_for(lambda: "acknowledged the writes within" in w.output(), 15, 0.05, "a short WAIT")
        else:  # the worker took every change to the primary, which acknowledged them
            wait_for(lambda: outbox_size(safe_mysql) == 0 and not stack.gearmand.queued("syncToRedis"), 30, 0.05,
                     "the worker to catch up")
            assert not any(safe_drift(safe_mysql, c).values())  # all of it on the primary, none on the replica
        own_cluster.kill(victim)
        lagging.resume()
        promoted = own_cluster.wait_failover(victim)
        stream.going.set()
        assert promoted is lagging
        stream.until(100)
        victim.start()
        own_cluster.wait_ok()
        stream.until(100)
    finally:
        stream.finish()
    try:
        safe, direct = _drifts(stack, safe_mysql, own_cluster.url)
        print(f"replica of {victim.address} paused for 300 writes, then promoted; replicas={replicas}: "
              f"{stream.writes} writes to each table; safe mode: {_counts(safe)}; direct mode: {_counts(direct)}")
        if replicas:
            assert not any(safe.values()) and not any(direct.values()), (safe, direct)
        else:
            assert safe["missing"] or safe["stale"] or safe["phantom"], safe
            assert direct["missing"] or direct["stale"] or direct["phantom"], direct
            _second_pass(safe_mysql, sync_client(own_cluster.url))
        assert w.returncode is None
    finally:
        w.stop()
        c.close()
    log = w.output()
    assert not any(bad in log for bad in NEVER), log[-3000:]


def test_slots_resharded_while_writing(stack: Any, own_cluster: RedisCluster, safe_mysql: Any, redis_client: Any,
                                       seed_drained: None, tmp_path: Path, safe_env: dict[str, str]) -> None:
    """4,000 slots move from one primary to another and 1,000 move back (MIGRATE key by key,
    clients redirected with ASK then MOVED) while the stream writes: nothing lost, nothing stale."""
    c = sync_client(own_cluster.url)
    w = _worker(stack, safe_env, tmp_path, own_cluster.url, 1).start()
    assert stack.mysql is not None
    stream = Stream(stack.mysql.connect, keys=2000, seed=5)
    stream.start()
    try:
        stream.until(1500)
        a, b, _ = own_cluster.primaries()
        before = set(own_cluster.slots_of(a))
        at = stream.writes
        own_cluster.reshard(a, b, 4000)
        own_cluster.reshard(b, a, 1000)
        during = stream.writes - at
        own_cluster.wait_ok()
        moved = before - set(own_cluster.slots_of(a))
        assert len(moved) >= 3000 and moved <= set(own_cluster.slots_of(b))
        stream.until(300)
    finally:
        stream.finish()
    try:
        safe = settle(lambda: safe_drift(safe_mysql, c))
        direct = settle(lambda: direct_drift(safe_mysql, c))
        print(f"reshard: {during} writes to each table during it; safe mode: {_counts(safe)}; "
              f"direct mode: {_counts(direct)}")
        assert not any(safe.values()) and not any(direct.values()), (safe, direct)
        on_b = {k for k in b.client().scan_iter(match=b"test_safe:*")}
        assert any(key_slot(k) in moved for k in on_b)  # the moved keys live on b now
        assert during > 0
        assert "commands redirected (MOVED, ASK, TRYAGAIN" in w.output()  # followed, not failed
    finally:
        w.stop()
        c.close()
    log = w.output()
    assert not any(bad in log for bad in NEVER), log[-3000:]

"""Moving from one Redis to a Redis Cluster: `gearsync versions copy --from` writes the versions a
single Redis keeps (``gearsync:v:<key>``) into the cluster's form (``gearsync:v:{<key>}``), with
their time to live, never over a newer one — so the cluster's versioned writes keep refusing
what is older, and a tombstone keeps a deleted key deleted."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

from gearsync.changes import VersionedChange
from gearsync.keys import version_key
from gearsync.redis_clients import sync_client
from gearsync.redis_sink import RedisSink
from gearsync.testing.daemons import RedisServer
from gearsync.testing.redis_cluster import RedisCluster
from gearsync.versioned import APPLIED, STALE


def _write(url: str, changes: list[VersionedChange]) -> list[Any]:
    async def go() -> list[Any]:
        sink = RedisSink.from_url(url)
        try:
            return await sink.apply_versioned(changes, 3600)
        finally:
            await sink.close()
    return asyncio.run(go())


def test_versions_move_to_the_cluster(redis_server: RedisServer, cluster: RedisCluster) -> None:
    one = redis_server.client()
    changes = [VersionedChange(f"user:{i}".encode(), 1000 + i, b"v%d" % i) for i in range(2500)]
    changes += [VersionedChange(b"user:{7}:cart", 50, b"cart"), VersionedChange(b"gone", 60, None)]
    assert set(_write(redis_server.url, changes)) == {APPLIED}
    one.set(b"gearsync:v:corrupt", b"not a number")
    c = sync_client(cluster.url)
    c.set(version_key(b"user:3", True), 999999)  # the cluster has a newer one already
    res = subprocess.run([sys.executable, "-m", "gearsync", "versions", "copy", "--from", redis_server.url,
                          "--redis-url", cluster.url], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "2503 versions found, 2501 copied, 1 kept (the target had a newer one), 1 skipped" in res.stdout
    assert c.get(version_key(b"user:10", True)) == b"1010"
    assert c.get(version_key(b"user:3", True)) == b"999999"
    assert c.get(version_key(b"user:{7}:cart", True)) == b"50"
    assert c.get(b"gearsync:v:{7}:user:{7}:cart") == b"50"
    assert 3000 < c.ttl(version_key(b"gone", True)) <= 3600  # the tombstone keeps its time to live
    assert c.ttl(version_key(b"user:10", True)) == -1
    # the cluster's writes now know what the single Redis knew
    c.set(b"user:10", b"v10")
    assert _write(cluster.url, [VersionedChange(b"user:10", 1005, b"older"), VersionedChange(b"gone", 59, b"back"),
                                VersionedChange(b"user:11", 1012, b"newer")]) == [STALE, STALE, APPLIED]
    assert c.get(b"user:10") == b"v10" and c.get(b"gone") is None and c.get(b"user:11") == b"newer"
    c.close()


def test_a_cluster_is_not_a_source(cluster: RedisCluster) -> None:
    res = subprocess.run([sys.executable, "-m", "gearsync", "versions", "copy", "--from", cluster.url,
                          "--redis-url", cluster.url], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "the source must be one Redis" in res.stderr

"""gearsync on a Sentinel-managed Redis (1 primary, 1 replica, 3 sentinels, quorum 2, down after
1 s) through a ``redis+sentinel://`` URL: the primary SIGKILLed while both modes write, the
sentinels promote the replica, the old primary comes back as its replica; with
``GEARSYNC_REDIS_REPLICAS=1`` neither mode loses anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from gearsync.redis_clients import sync_client
from gearsync.testing.processes import WorkerProcess, wait_for
from gearsync.testing.redis_sentinel import SentinelSet

from helpers import outbox_size
from streams import NEVER, Stream, direct_drift, safe_drift, settle


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    with SentinelSet(tmp_path / "sentinel", replicas=1, sentinels=3) as s:
        yield s


def test_primary_killed_mid_stream_loses_nothing(stack: Any, sentinels: SentinelSet, safe_mysql: Any,
                                                 redis_client: Any, seed_drained: None, tmp_path: Path,
                                                 safe_env: dict[str, str]) -> None:
    env = dict(safe_env, GEARSYNC_REDIS_URL=sentinels.url, GEARSYNC_REDIS_REPLICAS="1", GEARSYNC_SWEEP_AGE="2",
               GEARSYNC_SWEEP_INTERVAL="0.5")
    st = subprocess.run([sys.executable, "-m", "gearsync", "status"], capture_output=True, text=True, env=env)
    assert st.returncode == 0 and "(via Sentinel)" in st.stdout, st.stdout + st.stderr
    w = WorkerProcess(env, log_path=tmp_path / "worker.log", gearmand=stack.gearmand, function="gearsync").start()
    assert stack.mysql is not None
    stream = Stream(stack.mysql.connect, keys=400, seed=31)
    stream.start()
    try:
        stream.until(600)
        old = sentinels.primary()
        sentinels.kill(old)
        new = sentinels.wait_failover(old)
        stream.until(300)
        old.start()  # the sentinels make it a replica of the new primary
        sentinels.wait_ready()
        assert sentinels.primary() is new
        stream.until(300)
    finally:
        stream.finish()
    try:
        wait_for(lambda: outbox_size(safe_mysql) == 0 and not stack.gearmand.queued("syncToRedis"), 60, 0.05,
                 "the worker to finish")
        c = sync_client(sentinels.url)
        safe, direct = settle(lambda: safe_drift(safe_mysql, c), 10), settle(lambda: direct_drift(safe_mysql, c), 10)
        print(f"sentinel failover {old.address} -> {new.address}: {stream.writes} writes to each table; "
              f"safe mode: {', '.join(f'{len(v)} {k}' for k, v in safe.items())}; "
              f"direct mode: {', '.join(f'{len(v)} {k}' for k, v in direct.items())}")
        assert not any(safe.values()) and not any(direct.values()), (safe, direct)
        assert w.returncode is None
    finally:
        w.stop()
    log = w.output()
    assert "retry" in log and not any(bad in log for bad in NEVER), log[-3000:]

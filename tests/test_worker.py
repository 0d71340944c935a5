"""The Worker end to end against real gearmand and Redis."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from gearsync import Change, ForcedShutdown, Settings, Worker, decode_payload
from gearsync.gearman import GearmanClient, admin
from gearsync.testing.stack import Gearmand, RedisServer

from helpers import run, until

REPO = Path(__file__).resolve().parents[1]


class DurableRedis(RedisServer):
    """Redis with an fsync-always AOF, so a restart keeps what was written."""

    def argv(self) -> list[str]:
        argv = super().argv()
        i = argv.index("--appendonly")
        argv[i + 1] = "yes"
        return argv + ["--appendfsync", "always"]


@pytest.fixture()
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with DurableRedis(tmp_path / "redis") as r:
        yield r


def settings(g: Gearmand, r: RedisServer, **kw: Any) -> Settings:
    return Settings(gearman=[(g.host, g.port)], redis_url=r.url, **kw)


def submit(g: Gearmand, payloads: list[bytes], fn: str = "syncToRedis") -> None:
    with GearmanClient(g.host, g.port) as c:
        c.submit_many(fn, payloads)


def queued(g: Gearmand, fn: str = "syncToRedis") -> int:
    return sum(s.total for s in admin.status(g.host, g.port) if s.function == fn)


def js(obj: Any) -> bytes:
    return json.dumps(obj).encode()


async def run_until(w: Worker, cond: Any, timeout: float = 15.0) -> None:
    task = asyncio.create_task(w.run())
    try:
        await until(cond, timeout)
    finally:
        w.request_stop()
        await task


def test_jobs_become_sets_and_dels(gearmand: Gearmand, redis_server: RedisServer) -> None:
    rc = redis_server.client()
    rc.set("3", "old")
    rc.set("4", "old")
    payloads = [js({"id": i, "name": f"n{i}"}) for i in range(1000)]
    payloads += [js({"id": 3, "op": "delete"}), js({"id": 4, "name": None}), js({"id": "s", "name": "\t\x01é"})]
    submit(gearmand, payloads)
    w = Worker(settings(gearmand, redis_server))
    run(run_until(w, lambda: w.jobs_applied == 1003))
    assert rc.get("999") == b"n999" and rc.get("0") == b"n0"
    assert rc.get("3") is None and rc.get("4") is None
    assert rc.get("s") == "\t\x01é".encode()
    assert w.jobs_failed == 0 and queued(gearmand) == 0


def test_bad_jobs_are_failed_and_the_worker_survives(gearmand: Gearmand, redis_server: RedisServer,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    payloads = [b"not json", js({"id": 1, "name": "a"}), js([1]), js({"name": "x"}), b"\xff",
                js({"id": 2, "name": "b"})]
    submit(gearmand, payloads)
    w = Worker(settings(gearmand, redis_server))
    run(run_until(w, lambda: w.jobs_applied + w.jobs_failed == 6))
    assert (w.jobs_applied, w.jobs_failed) == (2, 4)
    assert redis_server.client().mget("1", "2") == [b"a", b"b"]
    assert queued(gearmand) == 0  # WORK_FAIL removed them
    assert "not JSON" in caplog.text and "H:" in caplog.text  # logged with the job handle


def test_custom_handlers(gearmand: Gearmand, redis_server: RedisServer) -> None:
    submit(gearmand, [b"a", b"b"], fn="raw")
    submit(gearmand, [js({"id": 1, "name": "x"})])
    w = Worker(settings(gearmand, redis_server), handlers={"raw": lambda job: [
        Change("set", "raw:" + job.workload.decode(), "1"), Change("set", "last", job.workload.decode())]})

    @w.handler("syncToRedis")
    def upper(job: Any) -> Change:
        c = decode_payload(job.workload)
        return c._replace(value=c.value.upper())

    run(run_until(w, lambda: w.jobs_applied == 3))
    assert redis_server.client().mget("raw:a", "raw:b", "last", "1") == [b"1", b"1", b"b", b"X"]


def test_a_job_with_a_refused_key_writes_none_of_its_changes(gearmand: Gearmand, redis_server: RedisServer) -> None:
    """A job's changes go in whole or not at all: one under gearsync: fails the job, its other
    changes stay unwritten, and the jobs around it in the same batch are applied."""
    submit(gearmand, [b"a", b"gearsync:v:x", b"c"], fn="raw")
    w = Worker(settings(gearmand, redis_server), handlers={"raw": lambda job: [
        Change("set", "before:" + job.workload.decode(), "1"), Change("set", job.workload.decode(), "2")]})
    run(run_until(w, lambda: w.jobs_applied + w.jobs_failed == 3))
    assert (w.jobs_applied, w.jobs_failed, w.keys_refused) == (2, 1, 1)
    r = redis_server.client()
    assert r.mget("before:a", "a", "before:c", "c") == [b"1", b"2", b"1", b"2"]
    assert r.exists("before:gearsync:v:x", "gearsync:v:x") == 0


def test_redis_restart_loses_no_job(gearmand: Gearmand, redis_server: RedisServer,
                                    caplog: pytest.LogCaptureFixture) -> None:
    n = 20000
    submit(gearmand, [js({"id": i, "name": f"v{i}"}) for i in range(n)])
    w = Worker(settings(gearmand, redis_server, batch_size=100))

    async def main() -> None:
        task = asyncio.create_task(w.run())
        await until(lambda: w.jobs_applied >= 2000)
        await asyncio.to_thread(redis_server.stop)
        await until(lambda: w.redis_retries >= 2, what="retries")
        assert w.gearman.paused
        await asyncio.to_thread(redis_server.start)
        await until(lambda: w.jobs_applied == n, timeout=20)
        w.request_stop()
        await task

    run(main(), timeout=40)
    assert w.jobs_failed == 0
    assert redis_server.client().dbsize() == n
    assert queued(gearmand) == 0
    assert "redis unreachable (" in caplog.text and ", retry 2 in 0.2 s" in caplog.text


def test_second_signal_forces_stop(gearmand: Gearmand, redis_server: RedisServer) -> None:
    w = Worker(settings(gearmand, redis_server))

    async def main() -> None:
        task = asyncio.create_task(w.run())
        await until(lambda: w.gearman.connected == 1)
        w.handle_signal(signal.SIGTERM)
        assert w.stopping
        w.handle_signal(signal.SIGINT)
        with pytest.raises(ForcedShutdown):
            await task

    run(main())
    assert issubclass(ForcedShutdown, BaseException) and not issubclass(ForcedShutdown, Exception)


def _child_env(g: Gearmand, r: RedisServer) -> dict[str, str]:
    return dict(os.environ, GEARSYNC_GEARMAN=g.address, GEARSYNC_REDIS_URL=r.url, PYTHONUNBUFFERED="1")


def test_sigterm_on_child_exits_0_after_in_hand_jobs(gearmand: Gearmand, redis_server: RedisServer) -> None:
    n = 100000
    submit(gearmand, [js({"id": i, "name": "x"}) for i in range(n)])
    rc = redis_server.client()
    proc = subprocess.Popen([sys.executable, "-m", "gearsync.cli", "worker", "--batch-size", "50"],
                            env=_child_env(gearmand, redis_server), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while rc.dbsize() < 2000 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopping" in err
    left = queued(gearmand)
    assert left > 0, "the worker drained everything before the signal; test is too slow to tell"
    assert rc.dbsize() + left == n  # each job applied exactly once or still queued: none lost


def test_example_custom_worker(gearmand: Gearmand, redis_server: RedisServer) -> None:
    submit(gearmand, [js({"id": 7, "name": "alice"}), js({"id": 8, "name": None})])
    proc = subprocess.Popen([sys.executable, str(REPO / "examples" / "custom_worker.py")],
                            env=_child_env(gearmand, redis_server), stderr=subprocess.PIPE, text=True)
    rc = redis_server.client()
    try:
        deadline = time.monotonic() + 10
        while rc.get("user:7") is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rc.get("user:7") == b"ALICE"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err

"""The worker's side of gearsync_send's envelopes (gearsync.envelope): a job is a batch of
records, each with the version its trigger took; the seed's payloads carried in them go
through the versioned write, so a job re-sent or requeued behind newer ones cannot leave an
older value behind; with a secret, jobs that carry values must be signed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gearsync.envelope import encode
from gearsync.gearman import GearmanClient
from gearsync.testing.processes import WorkerProcess, wait_for

from helpers import execute, redis_state


def _seed(key: str, name: str | None) -> bytes:
    return json.dumps({"id": key, "name": name}).encode()


def _submit(stack: Any, function: str, workloads: list[bytes]) -> None:
    with GearmanClient(stack.gearmand.host, stack.gearmand.port) as c:
        c.submit_many(function, workloads)


def test_versions_decide_whatever_the_order(stack: Any, worker: WorkerProcess, redis_client: Any) -> None:
    r = redis_client
    _submit(stack, "syncToRedis", [
        encode(b"syncToRedis", [(105, _seed("k", "newest")), (103, _seed("k", "older")), (104, _seed("j", "j4"))]),
        encode(b"syncToRedis", [(102, _seed("k", "oldest")), (106, _seed("j", None))]),  # j deleted at 106
    ])
    wait_for(lambda: r.get("k") == b"newest" and r.get("gearsync:v:j") == b"106", 10, 0.05)
    assert not r.exists("j")
    # a job requeued behind newer ones (a worker killed) comes back: a no-op
    _submit(stack, "syncToRedis", [encode(b"syncToRedis", [(101, _seed("k", "requeued")), (104, _seed("j", "j4"))])])
    _submit(stack, "syncToRedis", [_seed("plain", "no envelope")])  # gman_do_background: as before
    wait_for(lambda: r.get("plain") == b"no envelope", 10, 0.05)
    assert r.get("k") == b"newest" and not r.exists("j")


def test_a_secret_refuses_what_is_not_signed(stack: Any, redis_client: Any, tmp_path: Path, mysql: Any) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret-shared-with-gearsync_udf.cnf\n")
    env = dict(stack.env(), GEARSYNC_SECRET_FILE=str(secret))
    r = redis_client
    w = WorkerProcess(env, log_path=tmp_path / "w.log", gearmand=stack.gearmand).start()
    try:
        _submit(stack, "syncToRedis", [
            _seed("unsigned", "x"),                                                             # gearman -f …
            encode(b"syncToRedis", [(7, _seed("nomac", "x"))]),                                 # no MAC
            encode(b"syncToRedis", [(7, _seed("wrongkey", "x"))], b"another secret"),           # wrong key
            encode(b"otherFunction", [(7, _seed("replayed", "x"))], b"s3cret-shared-with-gearsync_udf.cnf"),
            encode(b"syncToRedis", [(7, _seed("signed", "ok"))], b"s3cret-shared-with-gearsync_udf.cnf"),
        ])
        wait_for(lambda: r.get("signed") == b"ok", 10, 0.05)
        wait_for(lambda: w.output().count("failed: ") >= 4, 10, 0.05, "the four refusals logged")
    finally:
        w.stop()
    assert not any(r.exists(k) for k in ("unsigned", "nomac", "wrongkey", "replayed"))
    assert w.output().count("BadSignature") == 4


def test_a_doorbell_envelope_rings_for_several_rows(stack: Any, safe_worker: WorkerProcess, safe_mysql: Any,
                                                    redis_client: Any) -> None:
    """Outbox rows written without a doorbell (by hand, no trigger), then one envelope naming
    them all: applied at once (the sweeper only takes rows older than 60 s here)."""
    ids = []
    for i in range(5):
        execute(safe_mysql, "INSERT INTO gearsync.outbox (source, k, op, `row`) VALUES "
                            "('test.test_safe', %s, 'insert', %s)", (f"test_safe:{i}", json.dumps({"name": f"n{i}"})))
        ids.append(execute(safe_mysql, "SELECT LAST_INSERT_ID()")[0][0])
    _submit(stack, "gearsync", [encode(b"gearsync", [(0, str(i).encode()) for i in ids])])
    wait_for(lambda: redis_state(redis_client) == {f"test_safe:{i}".encode(): f"n{i}".encode() for i in range(5)}
             and execute(safe_mysql, "SELECT COUNT(*) FROM gearsync.outbox")[0][0] == 0, 10, 0.05,
             "the five rows applied through one doorbell")

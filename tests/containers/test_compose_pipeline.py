"""The composed pipeline end to end: rows written inside the db container arrive in the redis
container through gearmand and the worker container, in direct mode (test.test) and safe mode
(test.test_safe), and survive restarts of the worker, gearmand and the database."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from compose_stack import REPO_ROOT, ComposeStack, run, wait_until


def _version() -> str:
    for line in (REPO_ROOT / "gearsync" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip('"')
    raise AssertionError("no __version__ in gearsync/__init__.py")


def _value(st: ComposeStack, key: str) -> bytes | None:
    return st.redis.get(key)


def _arrives(st: ComposeStack, key: str, value: bytes | None, what: str, timeout: float = 20) -> None:
    wait_until(lambda: _value(st, key) == value, timeout, f"{what}: GET {key} == {value!r} (is {_value(st, key)!r})")


def _outbox_rows(st: ComposeStack) -> int:
    return int(st.sql("SELECT COUNT(*) FROM gearsync.outbox")[0][0])


def test_every_service_is_healthy_on_the_ports_this_run_chose(stack: ComposeStack) -> None:
    for service in ("gearmand", "redis", "db", "worker"):
        assert stack.healthy(service), stack.logs(service)[-2000:]
        assert stack.inspect(service)["HostConfig"]["NetworkMode"] == "host"
    assert stack.sql("SELECT @@port, @@bind_address") == [[str(stack.db_port), "127.0.0.1"]]
    # The library in the db image was built from these sources.
    assert stack.sql("SELECT gearsync_udf_info()") == [[_version()]]
    assert stack.redis.ping()
    # The worker container is registered with gearmand for both modes' functions.
    status = run(["podman", "exec", stack.container("gearmand"), "gearadmin", "-h", "127.0.0.1",
                  "-p", str(stack.gearmand_port), "--status"])
    workers = {line.split("\t")[0]: int(line.split("\t")[3]) for line in status.splitlines() if "\t" in line}
    assert workers.get("syncToRedis", 0) >= 1 and workers.get("gearsync", 0) >= 1, status
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=5) as resp:
        assert b"gearsync_jobs_applied_total" in resp.read()


def test_direct_mode_insert_update_and_delete_in_the_db_container_arrive_in_redis(stack: ComposeStack) -> None:
    stack.sql("INSERT INTO test.test VALUES (1001, 'alice'), (1002, 'tab\\there')")
    _arrives(stack, "1001", b"alice", "INSERT")
    _arrives(stack, "1002", b"tab\there", "INSERT with a control character")
    stack.sql("UPDATE test.test SET name = 'bob' WHERE id = 1001")
    _arrives(stack, "1001", b"bob", "UPDATE")
    stack.sql("UPDATE test.test SET id = 1003 WHERE id = 1001")
    _arrives(stack, "1003", b"bob", "UPDATE of the key (new key)")
    _arrives(stack, "1001", None, "UPDATE of the key (old key deleted)")
    stack.sql("DELETE FROM test.test WHERE id IN (1002, 1003)")
    _arrives(stack, "1002", None, "DELETE")
    _arrives(stack, "1003", None, "DELETE")


def test_safe_mode_changes_arrive_committed_only_and_leave_the_outbox_empty(stack: ComposeStack) -> None:
    stack.sql("BEGIN; INSERT INTO test.test_safe VALUES (2000, 'rolled back'); ROLLBACK;"
              "INSERT INTO test.test_safe VALUES (2001, 'ada'), (2002, 'bob');")
    _arrives(stack, "test_safe:2001", b"ada", "safe INSERT")
    _arrives(stack, "test_safe:2002", b"bob", "safe INSERT")
    stack.sql("UPDATE test.test_safe SET name = 'ada lovelace' WHERE id = 2001;"
              "DELETE FROM test.test_safe WHERE id = 2002;")
    _arrives(stack, "test_safe:2001", b"ada lovelace", "safe UPDATE")
    _arrives(stack, "test_safe:2002", None, "safe DELETE")
    wait_until(lambda: _outbox_rows(stack) == 0, 20, "the outbox to drain")
    assert stack.redis.get("test_safe:2000") is None
    # Versions live beside the keys; the delete left a tombstone.
    assert stack.redis.get("gearsync:v:test_safe:2001") is not None
    assert stack.redis.get("gearsync:v:test_safe:2002") is not None


def _write_stream(base: int, n: int) -> tuple[str, dict[str, bytes | None]]:
    """A slow stream of safe-mode INSERTs, UPDATEs and DELETEs (one autocommit statement each,
    5 ms apart) and the Redis state it must leave."""
    sql, expected = [], {}
    for i in range(1, n + 1):
        key = base + i
        sql.append(f"INSERT INTO test.test_safe VALUES ({key}, 'v{i}');")
        expected[f"test_safe:{key}"] = f"v{i}".encode()
        if i % 3 == 0:
            sql.append(f"UPDATE test.test_safe SET name = 'u{i}' WHERE id = {key - 1};")
            expected[f"test_safe:{key - 1}"] = f"u{i}".encode()
        if i % 5 == 0:
            sql.append(f"DELETE FROM test.test_safe WHERE id = {key - 2};")
            expected[f"test_safe:{key - 2}"] = None
        sql.append("DO SLEEP(0.005);")
    return "\n".join(sql) + "\n", expected


@pytest.mark.parametrize("how", ["restart", "kill"])
def test_worker_container_restarted_mid_stream_loses_no_safe_mode_change(
        stack: ComposeStack, how: str, tmp_path: Path) -> None:
    """`podman restart` (SIGTERM: the worker finishes what it holds) or SIGKILL then start,
    while the db container keeps writing: every committed change arrives, once the worker is
    back (doorbells sent while it was away are in gearmand's queue; lost ones are swept)."""
    base, n = (300_000 if how == "restart" else 400_000), 1200
    script, expected = _write_stream(base, n)
    (tmp_path / "stream.sql").write_text(script)
    worker = stack.container("worker")
    started_before = stack.inspect("worker")["State"]["StartedAt"]
    with open(tmp_path / "stream.sql") as stdin, open(tmp_path / "writer.log", "wb") as out:
        writer = subprocess.Popen(["podman", "exec", "-i", stack.container("db"), "mariadb"],
                                  stdin=stdin, stdout=out, stderr=subprocess.STDOUT)
    try:
        # The stream is flowing through the worker...
        wait_until(lambda: stack.redis.exists(*[f"test_safe:{base + i}" for i in range(1, 51)]) >= 30,
                   30, "the first rows of the stream in Redis")
        # ...when the worker goes away.
        if how == "restart":
            run(["podman", "restart", "-t", "30", worker])
        else:
            run(["podman", "kill", "--signal", "KILL", worker])
            time.sleep(1)
            run(["podman", "start", worker])
        assert writer.poll() is None, "the stream ended before the worker was back: the test proves nothing"
        assert writer.wait(120) == 0, (tmp_path / "writer.log").read_text()
    finally:
        if writer.poll() is None:
            writer.kill()
    assert stack.inspect("worker")["State"]["StartedAt"] != started_before

    def converged() -> bool:
        pipe = stack.redis.pipeline()
        for key in expected:
            pipe.get(key)
        return list(pipe.execute()) == list(expected.values())

    wait_until(converged, 60, f"all {len(expected)} keys of the stream to match the table")
    wait_until(lambda: _outbox_rows(stack) == 0, 30, "the outbox to drain")
    rows = {f"test_safe:{k}": v.encode() for k, v in stack.sql(
        f"SELECT id, name FROM test.test_safe WHERE id > {base} AND id <= {base + n}")}
    assert rows == {k: v for k, v in expected.items() if v is not None}
    assert stack.healthy("worker")


def test_gearmand_container_restarted_keeps_queued_direct_mode_jobs(stack: ComposeStack) -> None:
    """Direct mode has no outbox: a job queued while no worker runs lives only in gearmand,
    whose SQLite queue (on its volume) is written at SIGTERM and read back at start."""
    worker, gearmand = stack.container("worker"), stack.container("gearmand")
    run(["podman", "stop", "-t", "30", worker])
    try:
        stack.sql("INSERT INTO test.test VALUES (5001, 'queued while nobody listened')")
        run(["podman", "restart", "-t", "30", gearmand])
        wait_until(lambda: stack.healthy("gearmand"), 30, "gearmand healthy again")
        status = run(["podman", "exec", gearmand, "gearadmin", "-h", "127.0.0.1", "-p",
                      str(stack.gearmand_port), "--status"])
        assert any(line.startswith("syncToRedis\t1\t") for line in status.splitlines()), status
        assert stack.redis.get("5001") is None
    finally:
        run(["podman", "start", worker])
    _arrives(stack, "5001", b"queued while nobody listened", "a job queued before gearmand restarted")


def test_db_container_restarted_keeps_its_data_and_sends_to_gearmand_from_its_config(stack: ComposeStack) -> None:
    """After a restart the UDFs take the job server from gearsync_udf.cnf (written from
    GEARSYNC_GEARMAN), install.sql is not applied again, and rows written before are there."""
    stack.sql("INSERT INTO test.test VALUES (6001, 'before restart')")
    _arrives(stack, "6001", b"before restart", "INSERT before the restart")
    db = stack.container("db")
    run(["podman", "restart", "-t", "60", db])
    wait_until(lambda: stack.healthy("db"), 90, "the db healthy again")
    assert stack.sql("SELECT name FROM test.test WHERE id = 6001") == [["before restart"]]
    assert stack.logs("db").count("gearsync-db: installing gearsync") == 1
    stack.sql("INSERT INTO test.test VALUES (6002, 'after restart');"
              "INSERT INTO test.test_safe VALUES (6003, 'safe after restart');")
    _arrives(stack, "6002", b"after restart", "direct INSERT after the db restart")
    _arrives(stack, "test_safe:6003", b"safe after restart", "safe INSERT after the db restart")

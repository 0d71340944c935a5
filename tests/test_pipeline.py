"""End to end through the real stack: MariaDB trigger -> UDF -> gearmand -> gearsync worker -> Redis."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


import gearsync
from gearsync.constants import KEY_PREFIX, VERSION_PREFIX
from gearsync.envelope import decode
from gearsync.testing.processes import WorkerProcess, wait_for
from gearsync.testing.stack import Gearmand, Stack

from gearman_peers import grab_all
from helpers import REPO_ROOT


def _exec(conn: Any, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def _snapshot(r: Any) -> dict[bytes, bytes]:
    """The user's keys and values; gearsync's own keys (``gearsync:``: the versions that
    test.test's envelopes leave, see :func:`_versions`) are left out."""
    keys = sorted(k for k in r.keys("*") if not k.startswith(KEY_PREFIX))
    return dict(zip(keys, r.mget(keys))) if keys else {}


def _versions(r: Any) -> dict[bytes, tuple[int, int]]:
    """key -> (its stored version, its TTL in seconds: -1 for none) of every ``gearsync:v:<key>``."""
    out = {}
    for vk in r.keys(VERSION_PREFIX + b"*"):
        out[vk[len(VERSION_PREFIX):]] = (int(r.get(vk)), r.ttl(vk))
    return out


def _wait_redis(r: Any, expected: dict[bytes, bytes], timeout: float = 10.0) -> None:
    try:
        wait_for(lambda: _snapshot(r) == expected, timeout, 0.01, "Redis to equal the expected keys")
    except AssertionError:
        raise AssertionError(f"Redis holds {_snapshot(r)!r}, expected {expected!r}") from None


def test_insert_update_delete_reach_redis(worker: WorkerProcess, mysql: Any, redis_client: Any) -> None:
    _exec(mysql, "INSERT INTO test.test VALUES (1, 'alice'), (2, 'bob')")
    _wait_redis(redis_client, {b"1": b"alice", b"2": b"bob"})
    # test.test's triggers send through gearsync_send: versioned writes, a version per key
    v0 = _versions(redis_client)
    assert set(v0) == {b"1", b"2"} and all(ttl == -1 for _v, ttl in v0.values()), v0
    _exec(mysql, "UPDATE test.test SET name = 'carol' WHERE id = 2")
    _wait_redis(redis_client, {b"1": b"alice", b"2": b"carol"})
    assert _versions(redis_client)[b"2"][0] > v0[b"2"][0]  # the update's version is newer
    _exec(mysql, "DELETE FROM test.test WHERE id = 1")
    _wait_redis(redis_client, {b"2": b"carol"})
    v1, ttl = _versions(redis_client)[b"1"]  # a tombstone: the delete's version, expiring
    assert v1 > v0[b"1"][0] and ttl > 0
    _exec(mysql, "REPLACE INTO test.test VALUES (2, 'dave')")  # delete + insert triggers
    _wait_redis(redis_client, {b"2": b"dave"})


def test_primary_key_change_moves_the_key(worker: WorkerProcess, mysql: Any, redis_client: Any) -> None:
    _exec(mysql, "INSERT INTO test.test VALUES (7, 'seven')")
    _wait_redis(redis_client, {b"7": b"seven"})
    _exec(mysql, "UPDATE test.test SET id = 70 WHERE id = 7")
    _wait_redis(redis_client, {b"70": b"seven"})


def test_update_ignore_that_collides_changes_nothing(worker: WorkerProcess, mysql: Any, redis_client: Any) -> None:
    """MariaDB fires AFTER UPDATE for an UPDATE IGNORE whose key change hit an existing row,
    although nothing moved; the trigger must not delete the old key nor overwrite the other."""
    _exec(mysql, "INSERT INTO test.test VALUES (1, 'one'), (2, 'two')")
    _wait_redis(redis_client, {b"1": b"one", b"2": b"two"})
    _exec(mysql, "UPDATE IGNORE test.test SET id = 2 WHERE id = 1")
    assert sorted(_exec(mysql, "SELECT id, name FROM test.test")) == [(1, "one"), (2, "two")]
    _exec(mysql, "INSERT INTO test.test VALUES (3, 'marker')")
    _wait_redis(redis_client, {b"1": b"one", b"2": b"two", b"3": b"marker"})


NAMES = {
    "quotes": "it's \"quoted\" `and` back`ticked",
    "backslash": "C:\\path\\to\\file \\n not a newline",
    "newline": "line one\nline two\r\nline three",
    "tab": "col1\tcol2\t",
    "control": "".join(chr(c) for c in range(1, 32)) + "\x7f",
    "nul": "before\x00after",
    "emoji": "rocket \U0001f680 caf\u00e9 \u4e2d\u6587 \U0001f468\u200d\U0001f469\u200d\U0001f467",
    "long255": ("\u00e9" * 100) + ("x" * 155),
    "empty": "",
    "json_lookalike": '{"id": 99, "name": "evil"}',
    "spaces": "  padded  ",
}


def test_values_arrive_byte_exact(worker: WorkerProcess, mysql: Any, redis_client: Any) -> None:
    rows = list(enumerate(NAMES.values(), start=100))
    with mysql.cursor() as cur:
        cur.executemany("INSERT INTO test.test VALUES (%s, %s)", rows)
    _wait_redis(redis_client, {str(i).encode(): name.encode() for i, name in rows})
    stored = {i: name for i, name in _exec(mysql, "SELECT id, name FROM test.test")}
    assert stored == dict(rows), "MariaDB itself must hold the names unchanged"


def test_null_name_removes_the_key(worker: WorkerProcess, mysql: Any, redis_client: Any) -> None:
    """Redis has no NULL: a NULL name is an absent key (a cache miss), never the string ''."""
    _exec(mysql, "INSERT INTO test.test VALUES (5, 'five'), (6, NULL)")
    _wait_redis(redis_client, {b"5": b"five"})
    _exec(mysql, "UPDATE test.test SET name = NULL WHERE id = 5")
    _exec(mysql, "INSERT INTO test.test VALUES (8, 'marker')")
    _wait_redis(redis_client, {b"8": b"marker"})
    assert redis_client.exists("5", "6") == 0
    assert {k for k, (_v, ttl) in _versions(redis_client).items() if ttl > 0} == {b"5", b"6"}  # tombstones


def _gearmand_sockets(port: int) -> int:
    """TCP sockets on this host whose remote end is 127.0.0.1:port, in any state: open, closing
    or closed (TIME_WAIT). Every state counts, so that a socket closed before the first count
    (the fixture's readiness probe) counts the same in both, whether it is still in FIN_WAIT or
    already in TIME_WAIT."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        remote, state = parts[2], parts[3]
        if remote == f"0100007F:{port:04X}" and state != "0A":  # 0A: LISTEN
            count += 1
    return count


def test_bulk_insert_uses_one_gearman_connection(stack: Stack, mysql: Any, gearmand: Gearmand) -> None:
    """The server calls the UDF's init once per row in a trigger; the connection must not follow."""
    _exec(mysql, "SELECT gman_servers_set(%s)", (gearmand.address,))
    before = _gearmand_sockets(gearmand.port)
    values = ", ".join(f"({i}, 'row {i}')" for i in range(1000, 2000))
    _exec(mysql, f"INSERT INTO test.test VALUES {values}")
    _exec(mysql, "UPDATE test.test SET name = CONCAT(name, '!') WHERE id >= 1000")
    assert _exec(mysql, "SELECT gearsync_send_flush()") == [(0,)]  # every record acknowledged
    opened = _gearmand_sockets(gearmand.port) - before  # before the connection below
    assert opened <= 1, f"{opened} connections to gearmand for 2,000 rows on one server thread"
    # gearsync_send batches records into envelope jobs: count the records, not the jobs. The
    # deletes of the fixture's DELETE FROM test.test may follow the list here: left out.
    jobs = grab_all(gearmand, b"syncToRedis")
    payloads = [json.loads(p) for _u, w in jobs for _v, p in decode(b"syncToRedis", w, None)]
    assert [p for p in payloads if "op" not in p] == (
        [{"id": i, "name": f"row {i}"} for i in range(1000, 2000)]
        + [{"id": i, "name": f"row {i}!"} for i in range(1000, 2000)])
    assert len(jobs) < 2000  # batched


def test_hung_gearmand_fails_the_submit_within_the_timeout(mysql: Any, gearmand: Gearmand) -> None:
    _exec(mysql, "SELECT gman_servers_set(%s)", (gearmand.address,))
    assert _exec(mysql, "SELECT gman_do_background('syncToRedis', 'warm-up')")[0][0]
    gearmand.pause()
    try:
        t0 = time.monotonic()
        handle = _exec(mysql, "SELECT gman_do_background('syncToRedis', 'while hung')")[0][0]
        took = time.monotonic() - t0
        assert handle is None
        assert took < 2.0, f"submit blocked {took:.2f} s with gearmand hung"
        t0 = time.monotonic()
        _exec(mysql, "INSERT INTO test.test VALUES (1, 'written while gearmand hangs')")
        assert time.monotonic() - t0 < 2.0
        assert _exec(mysql, "SELECT name FROM test.test WHERE id = 1") == [("written while gearmand hangs",)]
    finally:
        gearmand.resume()
    # once it answers again, submits work again
    assert wait_for(lambda: _exec(mysql, "SELECT gman_do_background('syncToRedis', 'after')")[0][0], 5)


def test_gearmand_down_returns_null_fast(mysql: Any, gearmand: Gearmand) -> None:
    _exec(mysql, "SELECT gman_servers_set(%s)", (gearmand.address,))
    gearmand.stop()
    t0 = time.monotonic()
    assert _exec(mysql, "SELECT gman_do_background('syncToRedis', 'x')") == [(None,)]
    assert time.monotonic() - t0 < 1.0


def test_redis_restart_loses_no_queued_job(stack: Stack, worker: WorkerProcess, mysql: Any, redis_client: Any) -> None:
    stack.redis.stop()
    try:
        with mysql.cursor() as cur:
            cur.executemany("INSERT INTO test.test VALUES (%s, %s)", [(i, f"v{i}") for i in range(300, 500)])
        time.sleep(1.0)  # the worker holds jobs and retries meanwhile
        assert worker.returncode is None, "the worker must survive Redis going away"
    finally:
        stack.redis.start()
    r = stack.redis.client()
    _wait_redis(r, {str(i).encode(): f"v{i}".encode() for i in range(300, 500)}, timeout=20)
    assert worker.returncode is None


def test_malformed_job_is_failed_and_the_worker_goes_on(
    stack: Stack, worker: WorkerProcess, mysql: Any, redis_client: Any
) -> None:
    for bad in ("not json", "[1, 2]", '{"name": "no id"}', '{"id": {"nested": 1}, "name": "x"}'):
        subprocess.run(["gearman", "-h", "127.0.0.1", "-p", str(stack.gearmand.port), "-f", "syncToRedis",
                        "-b", "--", bad], check=True, timeout=10)
    _exec(mysql, "INSERT INTO test.test VALUES (9, 'after the bad ones')")
    _wait_redis(redis_client, {b"9": b"after the bad ones"})
    assert worker.returncode is None


def test_udf_info_is_the_package_version(mysql: Any) -> None:
    """String UDFs return binary strings; the version is plain ASCII."""
    assert _exec(mysql, "SELECT gearsync_udf_info()") == [(gearsync.__version__.encode(),)]


def test_json_keys_come_from_aliases_in_the_real_server(mysql: Any) -> None:
    """The server's UDF_ARGS carries the aliases (Connector/C's header does not declare them).

    A UDF sees INT arguments as signed long long (UDF_ARGS has no unsigned flag), so an unsigned
    BIGINT above 2^63 goes through DECIMAL to stay exact."""
    _exec(mysql, "INSERT INTO test.test VALUES (1, 'a\\tb')")
    (out,), = _exec(mysql, "SELECT udf_json_object(t.id, t.name AS nm, 2.5e0 AS d, NULL AS n, "
                           "CAST(18446744073709551615 AS DECIMAL(20,0)) AS big, 1.50 AS dec_, "
                           "-9223372036854775808 AS small) FROM test.test t")
    assert json.loads(out) == {"id": 1, "nm": "a\tb", "d": 2.5, "n": None, "big": 18446744073709551615,
                               "dec_": 1.5, "small": -9223372036854775808}


def test_install_sql_is_idempotent_and_uninstall_removes_it(stack: Stack, mysql: Any) -> None:
    assert stack.mysql is not None
    stack.mysql.source(REPO_ROOT / "sql" / "install.sql")
    stack.mysql.source(REPO_ROOT / "sql" / "install.sql")
    funcs = {r[0] for r in _exec(mysql, "SELECT name FROM mysql.func WHERE dl = 'gearsync_udf.so'")}
    assert {"udf_json_object", "gman_servers_set", "gman_do_background", "gearsync_udf_info"} <= funcs
    triggers = _exec(mysql, "SELECT trigger_name FROM information_schema.triggers WHERE event_object_table = 'test'")
    assert len(triggers) == 3
    try:
        stack.mysql.source(REPO_ROOT / "sql" / "uninstall.sql")
        stack.mysql.source(REPO_ROOT / "sql" / "uninstall.sql")
        assert _exec(mysql, "SELECT name FROM mysql.func WHERE dl = 'gearsync_udf.so'") == []
        assert _exec(mysql, "SELECT trigger_name FROM information_schema.triggers "
                            "WHERE event_object_schema = 'test'") == []
        _exec(mysql, "INSERT INTO test.test VALUES (1, 'no trigger')")  # the table is kept and works
    finally:
        stack.install_sql()
    assert _exec(mysql, "SELECT gearsync_udf_info()") == [(gearsync.__version__.encode(),)]


def test_make_install_udf_copies_into_plugin_dir(tmp_path: Path) -> None:
    """(No server: install-udf builds build/gearsync_udf.so with the host's mysql_config and copies it.)"""
    res = subprocess.run(["make", "-s", "-C", str(REPO_ROOT), "install-udf", f"PLUGIN_DIR={tmp_path}/plugin"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "plugin" / "gearsync_udf.so").read_bytes() == (REPO_ROOT / "build" / "gearsync_udf.so").read_bytes()


def test_demo_runs_the_whole_pipeline(udf_so: Path, tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "gearsync.demo", "--dir", str(tmp_path / "demo")],
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "GET 20   -> 'bob'" in res.stdout
    assert "GET test_safe:2  -> 'second'" in res.stdout and "never committed" not in res.stdout.split("ROLLBACK")[1]
    assert "gearsync demo: OK" in res.stdout
    assert not (tmp_path / "demo").exists(), "the demo removes its data directory"

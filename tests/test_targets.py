"""Mapping power through the real stack (MariaDB triggers, a `gearsync worker` process, Redis):
a `where` filter, computed and renamed fields, and a table with four targets — a hash per row,
a set membership, a sorted-set index and a change stream — through backfill, live inserts,
updates that move rows in and out of the filter, a tag change, a key change, deletes, then
verify with planted drift (a PERSISTed key among it) and repair."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from gearsync import backfill as bf
from gearsync import install as inst
from gearsync import verify as vf
from gearsync.config import ConfigError, load
from gearsync.keys import record_key
from gearsync.testing.processes import WorkerProcess, wait_for
from gearsync.versioned import ScriptRunner

CONFIG = """
[tables."gs_t.users"]
key = "user:{id}"
value = "hash"
ttl = 300
where = "status <> 'draft'"
fields = { full_name = "CONCAT(first, ' ', last)", mail = "email", points = "score" }

[[tables."gs_t.users".targets]]
type = "set"
key = "tag:{tag}"
member = "{id}"

[[tables."gs_t.users".targets]]
type = "zset"
key = "leaderboard"
member = "u{id}"
score = "points"

[[tables."gs_t.users".targets]]
type = "stream"
key = "users:changes"
maxlen = 1000
"""


@pytest.fixture
def gs_t(mysql: Any, redis_client: Any, tmp_path: Path, stack: Any) -> Iterator[Path]:
    with mysql.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS gs_t")
        cur.execute("CREATE DATABASE gs_t")
        cur.execute("CREATE TABLE gs_t.users (id INT PRIMARY KEY, first VARCHAR(20), last VARCHAR(20), "
                    "email VARCHAR(40), status VARCHAR(10) NOT NULL, tag VARCHAR(10), score DECIMAL(10,2))")
        cur.execute("INSERT INTO gs_t.users VALUES (1, 'Ada', 'Lovelace', 'ada@x', 'live', 'red', 10), "
                    "(2, 'Bo', 'Draft', 'bo@x', 'draft', 'red', 5), (3, 'Cy', 'Null', NULL, 'live', 'green', NULL)")
        cur.execute("DELETE FROM gearsync.outbox")
    cfg_file = tmp_path / "gearsync.toml"
    cfg_file.write_text(f"[mysql]\nurl = \"{stack.mysql_url}\"\n[redis]\nurl = \"{stack.redis_url}\"\n" + CONFIG)
    yield cfg_file
    with mysql.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS gs_t")


def _events(r: Any) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(op, row key, row) of every entry of the stream, oldest first."""
    out = []
    for _id, f in r.xrange(b"users:changes"):
        out.append((f[b"op"].decode(), f[b"key"].decode(), json.loads(f[b"row"]) if b"row" in f else None))
    return out


def _verify(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gearsync", "verify", "--config", str(cfg), "--quiet", *args],
                          capture_output=True, text=True)


def test_filter_fields_and_four_targets_end_to_end(stack: Any, gs_t: Path, mysql: Any, redis_client: Any,
                                                   safe_env: dict[str, str], tmp_path: Path) -> None:
    r = redis_client
    cfg = load(gs_t)
    inst.install(cfg, mysql)
    w = WorkerProcess(safe_env, ["--config", str(gs_t)], log_path=tmp_path / "worker.log",
                      gearmand=stack.gearmand, function="gearsync")
    w.start()
    try:
        # -- backfill: the filter, the fields, each target ------------------------------------
        bf.backfill(cfg, progress=False)
        assert r.hgetall(b"user:1") == {b"full_name": b"Ada Lovelace", b"mail": b"ada@x", b"points": b"10.00"}
        assert 0 < r.ttl(b"user:1") <= 300
        assert not r.exists(b"user:2")                                   # a draft: outside the filter
        assert r.hgetall(b"user:3") == {b"full_name": b"Cy Null"}        # NULL fields are absent
        assert r.smembers(b"tag:red") == {b"1"} and r.smembers(b"tag:green") == {b"3"}
        assert r.zrange(b"leaderboard", 0, -1, withscores=True) == [(b"u1", 10.0)]  # 3's score is NULL
        assert sorted(_events(r)) == [("upsert", "user:1", {"full_name": "Ada Lovelace", "mail": "ada@x",
                                                           "points": 10.00}),
                                      ("upsert", "user:3", {"full_name": "Cy Null", "mail": None, "points": None})]
        assert json.loads(r.xrange(b"users:changes")[0][1][b"row"]) is not None
        assert all(f[b"version"] == b"0" for _i, f in r.xrange(b"users:changes"))  # a snapshot
        bf.backfill(cfg, progress=False)                                 # again: no event twice
        assert r.xlen(b"users:changes") == 2 and r.smembers(b"tag:red") == {b"1"}

        # -- live changes through the triggers and the worker ---------------------------------
        with mysql.cursor() as cur:
            cur.execute("UPDATE gs_t.users SET status = 'live' WHERE id = 2")           # into the filter
            cur.execute("UPDATE gs_t.users SET status = 'draft' WHERE id = 1")          # out of it
        wait_for(lambda: r.exists(b"user:2") and not r.exists(b"user:1"), 15, 0.05, "2 in, 1 out")
        wait_for(lambda: r.smembers(b"tag:red") == {b"2"}, 5, 0.05, "tag:red = {2}")
        assert r.zrange(b"leaderboard", 0, -1, withscores=True) == [(b"u2", 5.0)]
        with mysql.cursor() as cur:
            cur.execute("UPDATE gs_t.users SET tag = 'blue', score = 50 WHERE id = 2")  # leaves tag:red
            cur.execute("UPDATE gs_t.users SET id = 30, score = 1 WHERE id = 3")        # a key change
            cur.execute("INSERT INTO gs_t.users VALUES (4, 'Di', 'New', 'di@x', 'live', 'red', 7)")
            cur.execute("INSERT INTO gs_t.users VALUES (5, 'Ed', 'Gone', 'ed@x', 'live', 'red', 8)")
            cur.execute("DELETE FROM gs_t.users WHERE id = 5")
        wait_for(lambda: r.exists(b"user:30") and r.exists(b"user:4") and not r.exists(b"user:3"), 15, 0.05)
        wait_for(lambda: r.smembers(b"tag:red") == {b"4"}, 15, 0.05, "tag:red = {4}")
        assert r.smembers(b"tag:blue") == {b"2"} and r.smembers(b"tag:green") == {b"30"}
        assert r.zrange(b"leaderboard", 0, -1, withscores=True) == [(b"u30", 1.0), (b"u4", 7.0), (b"u2", 50.0)]
        assert r.hgetall(b"user:2") == {b"full_name": b"Bo Draft", b"mail": b"bo@x", b"points": b"50.00"}
        assert 0 < r.ttl(b"user:30") <= 300
        live = _events(r)[2:]
        assert ("delete", "user:1", None) in live and ("delete", "user:3", None) in live
        assert ("upsert", "user:30", {"full_name": "Cy Null", "mail": None, "points": 1.00}) in live
        assert ("delete", "user:5", None) in live
        # a replay of an older change adds nothing: neither a member nor a stream entry
        before = r.xlen(b"users:changes")
        rec = record_key(cfg.table("gs_t.users").targets[2].id, b"user:4")
        version = int(r.hget(rec, b"v"))
        from gearsync.changes import VersionedChange

        old = VersionedChange(b"users:changes", version - 1, None, op=b"X", args=(b"1000", b"upsert", b"user:4",
                                                                                   b"{}"), record=rec)
        assert ScriptRunner(r).run([old, old._replace(version=version)], "v") == [0, 0]
        assert r.xlen(b"users:changes") == before
        srec = record_key(cfg.table("gs_t.users").targets[0].id, b"user:4")
        stale_set = VersionedChange(b"tag:old", int(r.hget(srec, b"v")) - 1, None, op=b"S", args=(b"4",), record=srec)
        assert ScriptRunner(r).run([stale_set], "v") == [0] and not r.exists(b"tag:old")

        wait_for(lambda: mysql.cursor().execute("SELECT 1 FROM gearsync.outbox") == 0, 15, 0.05, "outbox empty")
        res = _verify(gs_t)
        assert res.returncode == 0, res.stdout + res.stderr

        # -- planted drift, found, repaired -------------------------------------------------------
        r.persist(b"user:30")                          # ttl: should expire, does not
        r.expire(b"user:4", 100000)                    # ttl: longer than configured
        r.hset(b"user:1", b"full_name", b"ghost")      # stale: the row is outside the filter
        r.sadd(b"tag:red", b"999")                     # a stray member no row or record claims
        r.srem(b"tag:blue", b"2")                      # a member missing
        r.zadd(b"leaderboard", {b"u4": 99})            # a wrong score
        r.hdel(record_key(cfg.table("gs_t.users").targets[2].id, b"user:4"), b"m")  # no upsert on record
        res = _verify(gs_t, "--json")
        assert res.returncode == 1, res.stderr
        (rep,) = json.loads(res.stdout)["tables"]
        assert (rep["ttl"], rep["stale"], rep["missing"], rep["orphaned"]) == (2, 2, 2, 1), rep
        assert sorted(rep["samples"]["ttl"]) == ["user:30", "user:4"]
        res = _verify(gs_t, "--repair")
        assert res.returncode == 0, res.stdout + res.stderr
        assert _verify(gs_t).returncode == 0
        assert 0 < r.ttl(b"user:30") <= 300 and 0 < r.ttl(b"user:4") <= 300
        assert not r.exists(b"user:1")
        assert r.smembers(b"tag:red") == {b"4"} and r.smembers(b"tag:blue") == {b"2"}
        assert r.zscore(b"leaderboard", b"u4") == 7.0
        assert _events(r)[-1] == ("upsert", "user:4", {"full_name": "Di New", "mail": "di@x", "points": 7.00})
        # the repair kept the versions live changes stored
        assert int(r.hget(record_key(cfg.table("gs_t.users").targets[0].id, b"user:2"), b"v")) > 0
    finally:
        w.stop()
    assert "Traceback" not in w.output()


def test_a_row_whose_placement_is_gone_is_an_orphan(stack: Any, gs_t: Path, mysql: Any, redis_client: Any) -> None:
    """Rows deleted while no trigger ran (no worker, no triggers): their members, scores and
    "upsert" records are orphans; repair removes them and says so on the stream."""
    r = redis_client
    cfg = load(gs_t)
    bf.backfill(cfg, progress=False)
    with mysql.cursor() as cur:
        cur.execute("DELETE FROM gs_t.users WHERE id = 1")   # no triggers installed: nothing applies it
    res = _verify(gs_t, "--json")
    (rep,) = json.loads(res.stdout)["tables"]
    # user:1's hash key, its set record, its zset record and its stream record
    assert res.returncode == 1 and rep["orphaned"] == 4, rep
    assert _verify(gs_t, "--repair").returncode == 0
    assert not r.exists(b"user:1") and not r.exists(b"tag:red") and r.zcard(b"leaderboard") == 0
    assert _events(r)[-1] == ("delete", "user:1", None)
    assert _verify(gs_t).returncode == 0


@pytest.mark.parametrize("bad, field", [
    ("where = \"no_such_column = 1\"", "where"),
    ("fields = { x = \"CONCAT(first,\" }", "fields.x"),
    ("[[tables.\"gs_t.users\".targets]]\ntype = \"set\"\nkey = \"t:{nope}\"\nmember = \"{id}\"", "targets[0]"),
    ("[[tables.\"gs_t.users\".targets]]\ntype = \"zset\"\nkey = \"lb\"\nmember = \"{id}\"\nscore = \"first\"",
     "targets[0].score"),
])
def test_install_refuses_what_does_not_compile(gs_t: Path, mysql: Any, tmp_path: Path, bad: str, field: str) -> None:
    """Each expression is run against the table (a read of no row) before any trigger exists."""
    f = tmp_path / "bad.toml"
    f.write_text("[tables.\"gs_t.users\"]\nkey = \"user:{id}\"\n" + bad + "\n")
    with pytest.raises(ConfigError) as e:
        inst.install(load(f), mysql)
    assert f"tables.'gs_t.users'.{field}" in str(e.value)
    with mysql.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.triggers WHERE event_object_schema = 'gs_t'")
        assert cur.fetchone()[0] == 0


def test_direct_mode_moves_memberships_too(stack: Any, gs_t: Path, mysql: Any, redis_client: Any,
                                           safe_env: dict[str, str], tmp_path: Path) -> None:
    """Direct mode (no versions): the record still says what a row placed, so a tag change and
    a move out of the filter leave the old set."""
    r = redis_client
    cfg = load(gs_t)
    inst.install(cfg, mysql, "direct")
    w = WorkerProcess(safe_env, ["--config", str(gs_t)], log_path=tmp_path / "worker.log",
                      gearmand=stack.gearmand, function="gearsync_direct")
    w.start()
    try:
        with mysql.cursor() as cur:
            cur.execute("UPDATE gs_t.users SET tag = 'blue' WHERE id = 1")
        wait_for(lambda: r.smembers(b"tag:blue") == {b"1"}, 15, 0.05)
        assert not r.exists(b"tag:red")
        with mysql.cursor() as cur:
            cur.execute("UPDATE gs_t.users SET status = 'draft' WHERE id = 1")
        wait_for(lambda: not r.exists(b"tag:blue") and not r.exists(b"user:1"), 15, 0.05)
        assert r.zcard(b"leaderboard") == 0
    finally:
        w.stop()

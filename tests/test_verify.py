"""gearsync verify [--repair] through the real stack: missing, stale (value and type) and orphaned
keys are counted with a sample, the exit code says drift, --repair fixes them with versioned
writes that never overwrite a live change."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from gearsync import backfill as bf
from gearsync.config import load
from gearsync.changes import VersionedChange
from gearsync.keys import key_pattern
from gearsync.connections import connect_mysql
from gearsync.mapping import row_changes
from gearsync.scan import TableReader
from gearsync.schema import resolve
from gearsync.verify import _reread
from gearsync.versioned import ScriptRunner
from gearsync.testing.sqlserver import numbers

CONFIG = """
[tables."gs_v.users"]
key = "user:{id}"
value = "json"
exclude = ["secret"]

[tables."gs_v.prefs"]
key = "pref[{id}]"
value = "hash"
ttl = 600
"""


@pytest.fixture
def gs_v(mysql: Any, redis_client: Any, tmp_path: Path, stack: Any) -> Iterator[Path]:
    with mysql.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS gs_v")
        cur.execute("CREATE DATABASE gs_v")
        cur.execute("CREATE TABLE gs_v.users (id INT PRIMARY KEY, name VARCHAR(50), secret VARCHAR(50))")
        cur.execute("CREATE TABLE gs_v.prefs (id INT PRIMARY KEY, color VARCHAR(10), size INT)")
        cur.execute("INSERT INTO gs_v.users SELECT seq, CONCAT('u', seq), 'x' FROM " + numbers(300))
        cur.execute("INSERT INTO gs_v.prefs SELECT seq, 'red', seq FROM " + numbers(50))
    cfg_file = tmp_path / "gearsync.toml"
    cfg_file.write_text(f"[mysql]\nurl = \"{stack.mysql_url}\"\n[redis]\nurl = \"{stack.redis_url}\"\n" + CONFIG)
    bf.backfill(load(cfg_file), progress=False)
    yield cfg_file
    with mysql.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS gs_v")


def _cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gearsync", "verify", "--config", str(cfg), *args],
                          capture_output=True, text=True)


def test_verify_finds_and_repairs_drift(gs_v: Path, redis_client: Any) -> None:
    assert _cli(gs_v, "--quiet").returncode == 0
    redis_client.set(b"user:7", b"stale")                       # stale value
    redis_client.set(b"gearsync:v:user:7", 5)                   # ... with a version
    redis_client.delete(b"user:8")                              # missing
    redis_client.set(b"user:9999", b"orphan")                   # orphan (no row 9999)
    redis_client.set(b"user:x:y", b"orphan too")
    redis_client.delete(b"pref[3]")
    redis_client.set(b"pref[4]", b"a string, not a hash")       # stale: wrong type
    redis_client.set(b"other:1", b"not ours")                   # matches no template
    res = _cli(gs_v, "--json")
    assert res.returncode == 1, res.stderr
    out = json.loads(res.stdout)
    users, prefs = out["tables"]
    assert (users["rows"], users["missing"], users["stale"], users["orphaned"]) == (300, 1, 1, 2)
    assert users["samples"]["missing"] == ["user:8"] and users["samples"]["stale"] == ["user:7"]
    assert sorted(users["samples"]["orphaned"]) == ["user:9999", "user:x:y"]
    assert (prefs["missing"], prefs["stale"], prefs["orphaned"]) == (1, 1, 0)
    assert out["drift"] == 6
    assert "verify gs_v.users: 300/300 rows" in _cli(gs_v).stderr

    res = _cli(gs_v, "--repair")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "6 repaired" not in res.stdout and "4 repaired" in res.stdout and "2 repaired" in res.stdout
    assert _cli(gs_v, "--quiet").returncode == 0
    assert redis_client.get(b"user:7") == b'{"id":7,"name":"u7"}'
    assert redis_client.get(b"gearsync:v:user:7") == b"5"       # repair keeps the version
    assert not redis_client.exists(b"user:9999") and redis_client.get(b"other:1") == b"not ours"
    assert redis_client.hgetall(b"pref[4]") == {b"id": b"4", b"color": b"red", b"size": b"4"}
    assert 0 < redis_client.ttl(b"pref[3]") <= 600


def test_repair_never_overwrites_a_live_change(gs_v: Path, redis_client: Any) -> None:
    """cas: the version read during the check must still be there."""
    runner = ScriptRunner(redis_client)
    redis_client.set(b"user:1", b"live")
    redis_client.set(b"gearsync:v:user:1", 42)
    assert runner.run([VersionedChange(b"user:1", 41, b"old")], "cas") == [False]
    assert runner.run([VersionedChange(b"user:1", 0, b"old")], "cas") == [False]
    assert runner.run([VersionedChange(b"user:1", 42, b"fixed")], "cas") == [True]
    assert redis_client.get(b"user:1") == b"fixed" and redis_client.get(b"gearsync:v:user:1") == b"42"


def test_key_pattern_escapes_glob_characters() -> None:
    assert key_pattern("pref[{id}]") == rb"pref\[*\]"
    assert key_pattern("a*{x}?{y}") == rb"a\**\?*"
    assert key_pattern("{{literal}}:{id}") == b"{literal}:*"


def test_repair_rereads_a_row_that_changed_after_it_was_first_read(gs_v: Path, mysql: Any,
                                                                    redis_client: Any) -> None:
    """A change that commits between verify's read of a row and its read of the key's version
    must not be overwritten by the older row: repair reads the drifted rows again."""
    cfg = load(gs_v)
    conn = connect_mysql(cfg.mysql_url)  # type: ignore[arg-type]
    try:
        (users, _prefs) = resolve(cfg, conn)
        reader = TableReader(users.cfg, lambda: conn, users)
        _last, batch = next(reader.chunks(None, 10))          # verify's first read: u1 … u10
        old = {c.key: c for c in row_changes(users.cfg, batch)}
        with mysql.cursor() as cur:                            # then the application changes row 3
            cur.execute("UPDATE gs_v.users SET name = 'newer' WHERE id = 3")
            cur.execute("DELETE FROM gs_v.users WHERE id = 4")
        fixes = [old[b"user:3"]._replace(version=42), old[b"user:4"]._replace(version=43)]
        again = {c.key: c for c in _reread(reader, batch, fixes)}
    finally:
        conn.close()
    assert json.loads(again[b"user:3"].value)["name"] == "newer" and again[b"user:3"].version == 42
    assert again[b"user:4"].value is None and again[b"user:4"].hash is None and again[b"user:4"].version == 43

"""Safe mode pieces: trigger generator, install.sql drift, outbox rows → changes, the Lua
versioned write (against a real Redis), settings and URL parsing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gearsync.outbox import OutboxRow, VersionedChange, parse_mysql_url, versioned_changes
from gearsync.redis_sink import RedisSink, version_key
from gearsync.settings import Settings, SettingsError
from gearsync.testing.stack import REPO_ROOT, RedisServer, Stack
from gearsync.triggers import (INSTALL_BEGIN, INSTALL_END, install_section, quote_ident, quote_string,
                               safe_triggers, uninstall_section)


# -- triggers ----------------------------------------------------------------------------------
def test_install_sql_holds_exactly_the_generated_section() -> None:
    text = (REPO_ROOT / "sql" / "install.sql").read_text()
    start, end = text.index(INSTALL_BEGIN), text.index(INSTALL_END) + len(INSTALL_END) + 1
    assert text[start:end] == install_section(), (
        "sql/install.sql drifted from gearsync.triggers.install_section(): paste its output again")
    assert uninstall_section() in (REPO_ROOT / "sql" / "uninstall.sql").read_text()


def test_identifiers_and_strings_are_quoted() -> None:
    assert quote_ident("a`b") == "`a``b`"
    assert quote_string("test_safe:") == "'test_safe:'"
    assert quote_string("it's\\") == "CONVERT(X'" + "it's\\".encode().hex().upper() + "' USING utf8mb4)"
    with pytest.raises(ValueError):
        quote_ident("")
    sql = "\n".join(safe_triggers("we`ird db", "ta'ble", ["k`1", "k2"], ["v 1", "v2"], "pre'fix:"))
    assert "`we``ird db`.`ta'ble`" in sql and "NEW.`k``1`" in sql
    assert "'pre'fix" not in sql  # the prefix went in as a hex literal
    with pytest.raises(ValueError):
        safe_triggers("s", "t", [], ["v"])
    with pytest.raises(TypeError):
        safe_triggers("s", "t", "id", ["v"])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        safe_triggers("s", "t", ["id"], ["v"], doorbell="sys_exec")
    assert "DO gearsync_send('gearsync', LAST_INSERT_ID(), LAST_INSERT_ID());" in "\n".join(
        safe_triggers("s", "t", ["id"], ["v"], doorbell="gearsync_send"))


def test_generated_triggers_work_for_an_odd_table(stack: Stack, mysql: Any) -> None:
    """Quoted names, a composite key, two value columns (the value is then the JSON object)."""
    with mysql.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS `we``ird db`")
        cur.execute("CREATE TABLE IF NOT EXISTS `we``ird db`.`ta'ble` (`k``1` INT, `k2` VARCHAR(10), "
                    "`v 1` VARCHAR(10), `v2` DECIMAL(5,2), PRIMARY KEY (`k``1`, `k2`))")
        try:
            for stmt in safe_triggers("we`ird db", "ta'ble", ["k`1", "k2"], ["v 1", "v2"], "pré'fix:"):
                cur.execute(stmt)
            cur.execute("INSERT INTO `we``ird db`.`ta'ble` VALUES (1, 'a', 'x', 1.50)")
            cur.execute("UPDATE `we``ird db`.`ta'ble` SET `k2` = 'b'")
            cur.execute("SELECT k, old_k, op, `row` FROM gearsync.outbox WHERE source = %s ORDER BY id",
                        ("we`ird db.ta'ble",))
            rows = cur.fetchall()
        finally:
            cur.execute("DROP DATABASE `we``ird db`")
            cur.execute("DELETE FROM gearsync.outbox")
    k = "pré'fix:1:".encode()
    assert rows == ((k + b"a", None, "insert", '{"v 1": "x", "v2": 1.50}'),
                    (k + b"b", k + b"a", "update", '{"v 1": "x", "v2": 1.50}'))


# -- outbox rows → versioned changes -----------------------------------------------------------
def test_versioned_changes() -> None:
    rows = [
        OutboxRow(1, b"t:1", None, "insert", '{"name": "a\\u0000b"}'),
        OutboxRow(2, b"t:2", b"t:1", "update", '{"name": "moved"}'),
        OutboxRow(3, b"t:3", None, "update", '{"name": null}'),
        OutboxRow(4, b"t:4", None, "delete", None),
        OutboxRow(5, b"t:5", None, "insert", '{"n": 18446744073709551615}'),
        OutboxRow(6, b"t:6", None, "insert", '{"a": 1, "b": "x"}'),
        OutboxRow(7, b"t:7", None, "insert", "not json"),
    ]
    assert versioned_changes(rows) == [
        VersionedChange(b"t:1", 1, b"a\0b"),
        VersionedChange(b"t:1", 2, None), VersionedChange(b"t:2", 2, b"moved"),
        VersionedChange(b"t:3", 3, None),
        VersionedChange(b"t:4", 4, None),
        VersionedChange(b"t:5", 5, b"18446744073709551615"),
        VersionedChange(b"t:6", 6, b'{"a": 1, "b": "x"}'),
    ]


# -- the Lua versioned write -------------------------------------------------------------------
@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with RedisServer(tmp_path_factory.mktemp("redis")) as r:
        yield r


def _apply(url: str, changes: list[VersionedChange], ttl: int = 100) -> list[bool]:
    async def go() -> list[bool]:
        sink = RedisSink.from_url(url)
        try:
            return await sink.apply_versioned(changes, ttl)
        finally:
            await sink.close()
    return asyncio.run(go())


def test_versioned_write_semantics(own_redis: RedisServer) -> None:
    r = own_redis.client()
    r.flushall()
    url = own_redis.url
    assert _apply(url, [VersionedChange(b"k", 5, b"five")]) == [True]
    assert _apply(url, [VersionedChange(b"k", 5, b"five again")]) == [False]  # replay: no-op
    assert _apply(url, [VersionedChange(b"k", 4, b"older")]) == [False]
    assert r.get(b"k") == b"five" and r.get(version_key(b"k")) == b"5" and r.ttl(version_key(b"k")) == -1
    assert _apply(url, [VersionedChange(b"k", 7, None)], ttl=100) == [True]  # delete: tombstone
    assert r.get(b"k") is None and r.get(version_key(b"k")) == b"7" and 0 < r.ttl(version_key(b"k")) <= 100
    assert _apply(url, [VersionedChange(b"k", 6, b"resurrect?")]) == [False]
    assert r.get(b"k") is None
    assert _apply(url, [VersionedChange(b"k", 8, b"back")]) == [True]
    assert r.ttl(version_key(b"k")) == -1, "a set after a tombstone drops its TTL"
    # one batch, out of order, over many keys and more than one script chunk
    changes = [VersionedChange(f"m{i % 50}".encode(), 1000 - i, f"v{1000 - i}".encode()) for i in range(600)]
    results = _apply(url, changes)
    assert results.count(True) == 50
    assert all(r.get(f"m{j}".encode()) == f"v{1000 - j}".encode() for j in range(50))


def test_versioned_write_reloads_the_script_after_a_flush(own_redis: RedisServer) -> None:
    r = own_redis.client()
    r.flushall()

    async def go() -> list[bool]:
        sink = RedisSink.from_url(own_redis.url)
        try:
            await sink.apply_versioned([VersionedChange(b"a", 1, b"x")])
            await sink.redis.script_flush()
            return await sink.apply_versioned([VersionedChange(b"a", 2, b"y")])
        finally:
            await sink.close()
    assert asyncio.run(go()) == [True]
    assert r.get(b"a") == b"y"


def test_version_key_memory_is_small(own_redis: RedisServer) -> None:
    r = own_redis.client()
    r.flushall()
    _apply(own_redis.url, [VersionedChange(b"test_safe:123456", 987654321, b"some name")])
    assert r.memory_usage(version_key(b"test_safe:123456")) <= 96


# -- settings ----------------------------------------------------------------------------------
def test_settings_and_urls() -> None:
    s = Settings.from_env({"GEARSYNC_MYSQL_URL": "mysql://u:p%40ss@db:3307/", "GEARSYNC_SWEEP_INTERVAL": "0.5",
                           "GEARSYNC_SWEEP_AGE": "2", "GEARSYNC_TOMBSTONE_TTL": "60"})
    assert (s.mysql_url, s.sweep_interval, s.sweep_age, s.tombstone_ttl) == ("mysql://u:p%40ss@db:3307/", 0.5, 2.0, 60)
    assert Settings.from_env({}).mysql_url is None
    assert parse_mysql_url("mysql://u:p%40ss@db:3307/app") == {
        "host": "db", "port": 3307, "user": "u", "password": "p@ss", "database": "app"}
    assert parse_mysql_url("mysql://root@127.0.0.1/")["port"] == 3306
    with pytest.raises(SettingsError):
        Settings.from_env({"GEARSYNC_MYSQL_URL": "postgres://x/"})
    with pytest.raises(SettingsError):
        Settings.from_env({"GEARSYNC_SWEEP_INTERVAL": "soon"})
    with pytest.raises(SettingsError):
        Settings.from_env({"GEARSYNC_MYSQL_URL": "mysql://x/"}, functions=["gearsync"])


def test_table_handler_results_become_versioned_writes(caplog: Any) -> None:
    from gearsync.mapping import Value
    from gearsync.outbox import OutboxRow, VersionedChange, versioned_changes

    rows = [OutboxRow(7, b"u:2", b"u:1", "update", '{"name":"x"}', "s.t"),
            OutboxRow(8, b"u:3", None, "delete", None, "s.t"),
            OutboxRow(9, b"u:4", None, "insert", '{"name":"y"}', "s.t"),
            OutboxRow(10, b"u:5", None, "insert", '{"name":"z"}', "s.t"),
            OutboxRow(11, b"k", None, "insert", '{"name":"plain"}', "other.t")]
    seen = []

    def fn(change: Any) -> Any:
        seen.append(change)
        if change.key == "u:4":
            raise RuntimeError("bug in the handler")
        if change.key == "u:5":
            return 42
        return None if change.row is None else Value("hash", {b"n": change.row["name"].encode()}, 60)

    out = versioned_changes(rows, handlers={"s.t": fn})
    assert out == [VersionedChange(b"u:1", 7, None), VersionedChange(b"u:2", 7, None, {b"n": b"x"}, 60),
                   VersionedChange(b"u:3", 8, None), VersionedChange(b"k", 11, b"plain")]
    assert (seen[0].op, seen[0].old_key, seen[0].version, seen[0].row) == ("update", "u:1", 7, {"name": "x"})
    assert "the handler for s.t raised" in caplog.text and "returned int" in caplog.text

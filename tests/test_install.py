"""gearsync triggers / install / uninstall for a config, through the real MariaDB, with hostile
identifiers (backticks, quotes, semicolons, spaces, keywords) in schema, table and columns."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gearsync import install as inst
from gearsync.payload import direct_change
from gearsync.config import ConfigError, parse
from gearsync.envelope import decode as decode_envelope
from gearsync.quoting import quote_ident
from gearsync.schema import resolve

from gearman_peers import grab_all

SCHEMA = "gs cfg`;"
TABLE = "we`ird'; DROP TABLE canary; --"
SHOP, VAL, KW = "sh`op id", "na'me\"; DROP TABLE canary; --", "select"


def _q(*parts: str) -> str:
    return ".".join(quote_ident(p) for p in parts)


def _cfg_name(schema: str, table: str) -> str:
    return ".".join("`" + p.replace("`", "``") + "`" for p in (schema, table))


def hostile_config(mode: str = "safe", **extra: Any) -> dict[str, Any]:
    return {"tables": {_cfg_name(SCHEMA, TABLE): {
        "key": "o'rd%er:{" + SHOP + "}:{id}", "value": "json", "mode": mode, **extra}}}


@pytest.fixture
def hostile(stack: Any, mysql: Any) -> Any:
    with mysql.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {quote_ident(SCHEMA)}")
        cur.execute(f"CREATE DATABASE {quote_ident(SCHEMA)}")
        cur.execute(f"CREATE TABLE {_q(SCHEMA, 'canary')} (x INT)")
        cur.execute(f"CREATE TABLE {_q(SCHEMA, TABLE)} ({quote_ident(SHOP)} INT NOT NULL, `id` INT NOT NULL, "
                    f"{quote_ident(VAL)} VARCHAR(100), {quote_ident(KW)} INT, PRIMARY KEY ({quote_ident(SHOP)}, `id`))")
        cur.execute("DELETE FROM gearsync.outbox")
    yield mysql
    with mysql.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {quote_ident(SCHEMA)}")


def _outbox(conn: Any) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute("SELECT source, k, old_k, op, pk, ver FROM gearsync.outbox ORDER BY id")
        return [tuple(r) for r in cur.fetchall()]


def _triggers(conn: Any) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT trigger_name FROM information_schema.triggers WHERE event_object_schema = %s "
                    "ORDER BY trigger_name", (SCHEMA,))
        return [r[0] for r in cur.fetchall()]


def test_hostile_identifiers_safe_mode(hostile: Any) -> None:
    cfg = parse(hostile_config())
    assert inst.install(cfg, hostile) == [f"{SCHEMA}.{TABLE}"]
    assert len(_triggers(hostile)) == 3
    t = _q(SCHEMA, TABLE)
    with hostile.cursor() as cur:
        cur.execute(f"INSERT INTO {t} VALUES (7, 1, 'a''b\"c', 3)")
        cur.execute(f"UPDATE {t} SET `id` = 2, {quote_ident(KW)} = 4 WHERE `id` = 1")
        cur.execute(f"DELETE FROM {t}")
        cur.execute(f"SELECT COUNT(*) FROM {_q(SCHEMA, 'canary')}")  # still there
    rows = _outbox(hostile)
    src = f"{SCHEMA}.{TABLE}"
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (src, b"o'rd%er:7:1", None, "insert"),
        (src, b"o'rd%er:7:2", b"o'rd%er:7:1", "update"),
        (src, b"o'rd%er:7:2", None, "delete"),
    ]
    # the row is named by its primary key (the worker reads it); versions grow in commit order
    assert [r[4] and json.loads(r[4]) for r in rows] == [[7, 1], [7, 2], None]
    assert 0 < rows[0][5] < rows[1][5] < rows[2][5] < 2 ** 53
    assert inst.uninstall(cfg, hostile) == [src]
    assert _triggers(hostile) == []


def test_triggers_command_script_through_the_client(stack: Any, hostile: Any, tmp_path: Path) -> None:
    """`gearsync triggers` prints a script the mysql client runs as is (both modes)."""
    cfg_file = tmp_path / "gearsync.toml"
    cfg_file.write_text(
        f"[mysql]\nurl = \"{stack.mysql_url}\"\n\n"
        f"[tables.{json.dumps(_cfg_name(SCHEMA, TABLE))}]\n"
        f"key = {json.dumps('o' + chr(39) + 'rd%er:{' + SHOP + '}:{id}')}\ncolumns = [\"id\", {json.dumps(VAL)}]\n",
        encoding="utf-8")
    for mode in ("direct", "safe"):
        out = subprocess.run([sys.executable, "-m", "gearsync", "triggers", "--config", str(cfg_file),
                              "--mode", mode], capture_output=True, text=True, check=True).stdout
        assert "CREATE TRIGGER" in out and ("INSERT INTO `gearsync`.`outbox`" in out) == (mode == "safe")
        script = tmp_path / f"{mode}.sql"
        script.write_text(out, encoding="utf-8")
        stack.mysql.source(script)
        assert len(_triggers(hostile)) == 3
    with hostile.cursor() as cur:
        cur.execute(f"INSERT INTO {_q(SCHEMA, TABLE)} VALUES (1, 2, 'x', 3)")
    (row,) = _outbox(hostile)
    assert row[1] == b"o'rd%er:1:2" and json.loads(row[4]) == [1, 2]
    res = subprocess.run([sys.executable, "-m", "gearsync", "uninstall", "--config", str(cfg_file)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert _triggers(hostile) == []


def test_unknown_column_is_an_error_before_anything_is_installed(stack: Any, hostile: Any) -> None:
    data = hostile_config()
    data["tables"]["test.test_safe"] = {"key": "x:{id}", "exclude": ["nope`; DROP TABLE canary"]}
    cfg = parse(data, source="bad.toml")
    with pytest.raises(ConfigError, match=r"bad.toml: tables.'test.test_safe'.exclude: no column 'nope"):
        inst.install(cfg, hostile)
    assert _triggers(hostile) == []  # the valid table got nothing either


def test_unknown_table_and_nullable_key(stack: Any, hostile: Any) -> None:
    cfg = parse({"tables": {"test.`no; such`": {"key": "k:{id}"}}}, source="c.toml")
    with pytest.raises(ConfigError, match="no such table in the database"):
        inst.install(cfg, hostile)
    cfg = parse({"tables": {_cfg_name(SCHEMA, TABLE): {"key": "k:{" + KW + "}"}}}, source="c.toml")
    with pytest.raises(ConfigError, match="is nullable"):
        inst.install(cfg, hostile)


def _direct_changes(stack: Any) -> list[Any]:
    """The changes queued for gearsync_direct: gearsync_send's envelopes, each record one change."""
    return [direct_change(payload, version) for _u, w in grab_all(stack.gearmand, b"gearsync_direct")
            for version, payload in decode_envelope(b"gearsync_direct", w, None)]


def test_direct_mode_payload(stack: Any, hostile: Any) -> None:
    """A direct-mode trigger's job names the changed row (keys as hex, the primary key as JSON)."""
    cfg = parse(hostile_config("direct"))
    inst.install(cfg, hostile)
    sql = "\n".join(inst.config_statements(resolve(cfg, hostile)))
    assert "gearsync_send_change('gearsync_direct', " in sql and VAL not in sql  # no value column
    with hostile.cursor() as cur:  # the triggers run (gearsync_send to the stack's gearmand)
        cur.execute(f"INSERT INTO {_q(SCHEMA, TABLE)} VALUES (1, 2, 'x', 3)")
        cur.execute(f"UPDATE {_q(SCHEMA, TABLE)} SET `id` = 3")
        cur.execute("SELECT gearsync_send_flush()")
    jobs = _direct_changes(stack)
    src = f"{SCHEMA}.{TABLE}"
    assert [(j.source, j.op, j.key, j.old_key, j.pk) for j in jobs] == [
        (src, "insert", b"o'rd%er:1:2", None, "[1, 2]"), (src, "update", b"o'rd%er:1:3", b"o'rd%er:1:2", "[1, 3]")]
    assert 0 < jobs[0].ver < jobs[1].ver  # gearsync_send's versions, in the order of the changes
    with hostile.cursor() as cur:
        cur.execute(f"DELETE FROM {_q(SCHEMA, TABLE)}")
        cur.execute("SELECT gearsync_send_flush()")
    (delete,) = _direct_changes(stack)
    assert (delete.op, delete.key, delete.pk) == ("delete", b"o'rd%er:1:3", None)
    assert delete.ver > jobs[1].ver
    assert _outbox(hostile) == []

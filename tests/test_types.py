"""The type contract, end to end: a table with a column of every type of the server (MariaDB's
INET6 and UUID only on MariaDB), in every value shape and both modes, through real triggers, the real worker, backfill and verify.

What Redis holds is checked against values the test computes on its own from the database
(``CAST(col AS CHAR)``, ``HEX(col)``, ``ST_Equals`` against the geometry, …), not with
gearsync's encoder: 0 differences and 0 failed writes, hostile values included (NUL, bytes
that are not UTF-8 in binary and latin1 columns, a 1 MiB BLOB, the extremes of every numeric
type, zero dates)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from gearsync import backfill as bf
from gearsync import install as inst
from gearsync import verify as vf
from gearsync.config import parse
from gearsync.testing.processes import WorkerProcess, wait_for

from helpers import SERVER

DB = "gs_types"
#: MariaDB's own column types; MySQL has neither (it stores addresses and UUIDs as VARBINARY or
#: CHAR, which the other columns cover), so a MySQL run leaves these two columns out.
MARIADB_ONLY = {"i6": "INET6", "u": "UUID"}
COLUMN_TYPES = [
    ("ti", "TINYINT"), ("tiu", "TINYINT UNSIGNED"), ("si", "SMALLINT"), ("mi", "MEDIUMINT"), ("i", "INT"),
    ("iu", "INT UNSIGNED"), ("bi", "BIGINT"), ("biu", "BIGINT UNSIGNED"), ("flag", "TINYINT(1)"),
    ("dm", "DECIMAL(65,30)"), ("f", "FLOAT"), ("d", "DOUBLE"), ("b", "BIT(64)"),
    ("da", "DATE"), ("t", "TIME(6)"), ("dt", "DATETIME(6)"), ("ts", "TIMESTAMP(6) NULL DEFAULT NULL"), ("y", "YEAR"),
    ("c", "CHAR(10)"), ("vc", "VARCHAR(300)"), ("tx", "TEXT"), ("l1", "VARCHAR(100) CHARACTER SET latin1"),
    ("bn", "BINARY(8)"), ("vb", "VARBINARY(300)"), ("bl", "LONGBLOB"),
    ("e", "ENUM('a','b','\u00e7')"), ("st", "SET('x','y','z')"), ("j", "JSON"), ("g", "GEOMETRY"), ("p", "POINT"),
    *MARIADB_ONLY.items(),
    ("gen", "INT AS (i * 2) VIRTUAL"), ("gens", "VARCHAR(20) AS (CONCAT('v', id)) STORED"),
]
if SERVER == "mysql":
    COLUMN_TYPES = [(n, t) for n, t in COLUMN_TYPES if n not in MARIADB_ONLY]
COLUMNS = ", ".join(f"{n} {t}" for n, t in COLUMN_TYPES)
NAMES = ["id"] + [n for n, _t in COLUMN_TYPES]
KIND = {**{n: "number" for n in ("ti", "tiu", "si", "mi", "i", "iu", "bi", "biu", "flag", "dm", "f", "d", "y",
                                 "gen", "id")},
        "b": "bit", **{n: "temporal" for n in ("da", "t", "dt", "ts")},
        **{n: "text" for n in ("c", "vc", "tx", "l1", "e", "st", "i6", "u", "gens")},
        **{n: "binary" for n in ("bn", "vb", "bl")}, "j": "json", "g": "geometry", "p": "geometry"}
WRITABLE = [n for n in NAMES if n not in ("gen", "gens")]

MIB = os.urandom(1 << 20)
HOSTILE = "nul\x00 tab\t cr\r lf\n bell\x07 del\x7f quote' dq\" bs\\ \u2028 emoji \U0001F680 \ufffd"
ROWS: list[dict[str, Any]] = [
    {"id": 1, "ti": 127, "tiu": 255, "si": 32767, "mi": 8388607, "i": 2147483647, "iu": 4294967295,
     "bi": 9223372036854775807, "biu": 18446744073709551615, "flag": 1,
     "dm": "99999999999999999999999999999999999.999999999999999999999999999999",
     "f": 3.40282e38, "d": 1.7976931348623157e308, "b": b"\xff" * 8, "da": "9999-12-31",
     "t": "838:59:59.000000", "dt": "9999-12-31 23:59:59.999999", "ts": "2038-01-19 03:14:07.999999",
     "y": 2155, "c": "x", "vc": HOSTILE, "tx": HOSTILE * 50, "l1": ("latin1", "80FF00E927"),
     "bn": b"\x00\xff\x80\x00\x01\x02\x03\x04", "vb": b"\xc3\x28\xff\xfe\x00\xed\xa0\x80", "bl": MIB,
     "e": "\u00e7", "st": "x,z", "j": '{"a": [1, 2.50, null], "b": "\\u0000\\u2028", "c": {"d": true}}',
     "g": ("geo", "GEOMETRYCOLLECTION(POINT(1 2),LINESTRING(0 0,1.5 1e-300),POLYGON((0 0,1 0,1 1,0 0)))"),
     "p": ("geo", "POINT(0.1 -2.5)"), "i6": "2001:db8::ff00:42:8329", "u": "123e4567-e89b-12d3-a456-426655440000"},
    {"id": 2, "ti": -128, "tiu": 0, "si": -32768, "mi": -8388608, "i": -2147483648, "iu": 0,
     "bi": -9223372036854775808, "biu": 0, "flag": 0,
     "dm": "-0.000000000000000000000000000001", "f": -1.17549e-38, "d": -2.2250738585072014e-308,
     "b": b"\x00" * 8, "da": "0000-00-00", "t": "-838:59:59.000000", "dt": "0000-00-00 00:00:00.000000",
     "ts": "1970-01-01 00:00:01.000000", "y": 1901, "c": "", "vc": "", "tx": "", "l1": ("latin1", ""),
     "bn": b"", "vb": b"", "bl": b"", "e": "a", "st": "", "j": "[]", "g": ("geo", "POINT(-180 90)"),
     "p": ("geo", "POINT(0 0)"), "i6": "::", "u": "00000000-0000-0000-0000-000000000000"},
    {"id": 3},  # every other column NULL
]
ROWS = [{k: v for k, v in row.items() if k in NAMES} for row in ROWS]
SHAPES = {"json": {"value": "json"}, "hash": {"value": "hash"}, "column": {"value": "column", "column": "vb"}}


def _sql_value(v: Any) -> tuple[str, list[Any]]:
    if isinstance(v, tuple) and v[0] == "geo":
        return "ST_GeomFromText(%s)", [v[1]]
    if isinstance(v, tuple):
        return "CONVERT(UNHEX(%s) USING latin1)", [v[1]]
    return "%s", [v]


def _insert(conn: Any, table: str, row: dict[str, Any]) -> None:
    cols = [n for n in WRITABLE if n in row]
    parts, args = zip(*(_sql_value(row[n]) for n in cols))
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO {DB}.{table} ({', '.join(cols)}) VALUES ({', '.join(parts)})",
                    [a for arg in args for a in arg])


def _tables() -> list[tuple[str, str, str]]:
    return [(f"t_{shape}_{mode}", shape, mode) for shape in SHAPES for mode in ("safe", "direct")]


@pytest.fixture
def typed(mysql: Any) -> Iterator[Any]:
    with mysql.cursor() as cur:
        cur.execute("SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION'")  # zero dates allowed
        cur.execute(f"DROP DATABASE IF EXISTS {DB}")
        cur.execute(f"CREATE DATABASE {DB}")
        for name, _shape, _mode in _tables():
            cur.execute(f"CREATE TABLE {DB}.{name} (id INT NOT NULL PRIMARY KEY, {COLUMNS}) CHARSET utf8mb4")
        cur.execute("DELETE FROM gearsync.outbox")
    yield mysql
    with mysql.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DB}")


def _config(stack: Any) -> Any:
    return parse({"mysql": {"url": stack.mysql_url}, "redis": {"url": stack.redis_url}, "tables": {
        f"{DB}.{name}": {"key": f"{name}:{{id}}", "mode": mode, **SHAPES[shape]} for name, shape, mode in _tables()}})


# -- what Redis must hold, computed from the database without gearsync's encoder ------------------
def _expected(conn: Any, table: str) -> dict[int, dict[str, Any]]:
    """id → column → (kind, expected) where expected is the text/bytes the contract promises,
    or None for NULL; geometry is checked by ST_Equals separately."""
    exprs = []
    for n in NAMES:
        k = KIND[n]
        if k == "bit":
            exprs.append(f"CAST({n} AS UNSIGNED)")
        elif k == "binary":
            exprs.append(f"HEX({n})")
        elif k == "text":
            exprs.append(f"HEX(CONVERT({n} USING utf8mb4))")
        elif k == "geometry":
            exprs.append(f"ST_AsText({n})")  # only whether it is NULL: values are compared by ST_Equals
        else:
            exprs.append(f"CAST({n} AS CHAR)")
    with conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(exprs)} FROM {DB}.{table} ORDER BY id")
        rows = cur.fetchall()
    out: dict[int, dict[str, Any]] = {}
    for r in rows:
        row: dict[str, Any] = {}
        for n, v in zip(NAMES, r):
            if v is None:
                row[n] = None
            elif KIND[n] in ("binary", "text"):
                row[n] = bytes.fromhex(v.decode() if isinstance(v, bytes) else v)
            else:
                row[n] = (v.decode() if isinstance(v, bytes) else str(v)).encode()
        out[int(r[0])] = row
    return out


def _same_geometry(conn: Any, table: str, rid: int, col: str, wkt: bytes) -> bool:
    with conn.cursor() as cur:
        cur.execute(f"SELECT ST_Equals(ST_GeomFromText(%s), {col}) FROM {DB}.{table} WHERE id = %s",
                    (wkt.decode(), rid))
        return cur.fetchone()[0] == 1


def _check_field(conn: Any, table: str, rid: int, col: str, want: Any, got: bytes) -> None:
    if KIND[col] == "geometry":
        assert _same_geometry(conn, table, rid, col, got), (table, rid, col, got)
    else:
        assert got == want, (table, rid, col, got[:80], want[:80])


class Num(str):
    """A JSON number as its text."""


def _check_json(conn: Any, table: str, rid: int, want: dict[str, Any], got: bytes) -> None:
    obj = json.loads(got, parse_float=Num, parse_int=Num)
    assert list(obj) == NAMES, "every column, in table order"
    for col, v in obj.items():
        w = want[col]
        if w is None:
            assert v is None, (table, rid, col)
        elif KIND[col] == "number" or KIND[col] == "bit":
            assert isinstance(v, Num) and v == w.decode(), (table, rid, col, v, w)
        elif KIND[col] == "binary":
            assert base64.b64decode(v) == w, (table, rid, col)
        elif KIND[col] == "json":
            assert v == json.loads(w, parse_float=Num, parse_int=Num), (table, rid, col)
        elif KIND[col] == "geometry":
            assert _same_geometry(conn, table, rid, col, v.encode()), (table, rid, col, v)
        else:
            assert v.encode("utf-8", "surrogateescape") == w, (table, rid, col, v)


def _check(conn: Any, r: Any, table: str, shape: str) -> None:
    want = _expected(conn, table)
    keys = sorted(k for k in r.scan_iter(match=f"{table}:*".encode()))
    if shape == "column":
        assert keys == sorted(f"{table}:{i}".encode() for i, row in want.items() if row["vb"] is not None)
        for i, row in want.items():
            if row["vb"] is not None:
                assert r.get(f"{table}:{i}") == row["vb"]
        return
    assert keys == sorted(f"{table}:{i}".encode() for i in want)
    for i, row in want.items():
        key = f"{table}:{i}"
        if shape == "json":
            _check_json(conn, table, i, row, r.get(key))
        else:
            got = r.hgetall(key)
            assert set(got) == {n.encode() for n, v in row.items() if v is not None}, (table, i)
            for n, v in row.items():
                if v is not None:
                    _check_field(conn, table, i, n, v, got[n.encode()])


def _outbox_empty(conn: Any) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM gearsync.outbox")
        return cur.fetchone()[0] == 0


def test_every_type_in_every_shape_and_mode(stack: Any, typed: Any, redis_client: Any, tmp_path: Path,
                                             safe_env: dict[str, str]) -> None:
    cfg = _config(stack)
    inst.install(cfg, typed)
    cfg_file = tmp_path / "gearsync.toml"
    cfg_file.write_text(f'[mysql]\nurl = "{stack.mysql_url}"\n' + "".join(
        f'[tables."{DB}.{name}"]\nkey = "{name}:{{id}}"\nmode = "{mode}"\n'
        + "".join(f'{k} = "{v}"\n' for k, v in SHAPES[shape].items()) for name, shape, mode in _tables()))
    w = WorkerProcess(safe_env, ["--config", str(cfg_file)], log_path=tmp_path / "worker.log",
                      gearmand=stack.gearmand, function="gearsync_direct").start()
    try:
        for name, _shape, _mode in _tables():
            for row in ROWS:
                _insert(typed, name, row)
            with typed.cursor() as cur:  # an update of a value, a key change and a delete
                cur.execute(f"UPDATE {DB}.{name} SET vc = CONCAT(vc, 'u'), j = JSON_SET(j, '$.n', 1) WHERE id = 1")
                cur.execute(f"UPDATE {DB}.{name} SET id = 20 WHERE id = 2")
                cur.execute(f"INSERT INTO {DB}.{name} (id, vb) VALUES (4, X'00')")
                cur.execute(f"DELETE FROM {DB}.{name} WHERE id = 4")

        def arrived() -> bool:
            return _outbox_empty(typed) and all(
                redis_client.exists(f"{name}:20") and not redis_client.exists(f"{name}:2")
                and not redis_client.exists(f"{name}:4") for name, shape, _m in _tables() if shape != "column")
        try:
            wait_for(arrived, 30, 0.1, "every change applied")
        except AssertionError:
            with typed.cursor() as cur:
                cur.execute("SELECT id, source, k, op, pk FROM gearsync.outbox")
                outbox = cur.fetchall()
            raise AssertionError(f"outbox {outbox[:5]}, redis {sorted(redis_client.keys())[:40]}, "
                                 f"worker:\n{w.output()[-3000:]}") from None
        for name, shape, _mode in _tables():
            _check(typed, redis_client, name, shape)
    finally:
        w.stop()
    log = w.output()
    mine = "\n".join(line for line in log.splitlines() if DB in line or "Traceback" in line)
    assert "Traceback" not in mine and " skipped: " not in mine and " failed" not in mine, mine[-3000:]
    assert "jobs_bad 0" in log

    # backfill into an empty Redis gives the same, and verify agrees with it
    redis_client.flushall()
    results = bf.backfill(cfg, progress=False)
    assert [r.rows for r in results] == [3] * len(_tables())
    for name, shape, _mode in _tables():
        _check(typed, redis_client, name, shape)
    assert [r.drift for r in vf.verify(cfg, progress=False)] == [0] * len(_tables())
    # and verify sees a planted difference in a byte of the BLOB
    redis_client.hset("t_hash_safe:1", "bl", MIB[:-1] + bytes([MIB[-1] ^ 1]))
    assert sum(r.stale for r in vf.verify(cfg, progress=False)) == 1

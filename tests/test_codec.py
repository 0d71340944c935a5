"""gearsync.codec: the type contract, value by value (the end-to-end proof is test_types.py)."""

from __future__ import annotations

import json
import struct

import pytest

from gearsync.codec import kind_of, to_bytes, to_json, wkt


@pytest.mark.parametrize("data_type, kind", [
    ("tinyint", "int"), ("BIGINT", "int"), ("year", "int"), ("decimal", "decimal"), ("double", "float"),
    ("bit", "bit"), ("datetime", "temporal"), ("time", "temporal"), ("varchar", "text"), ("enum", "text"),
    ("inet6", "text"), ("uuid", "text"), ("longblob", "binary"), ("varbinary", "binary"), ("point", "geometry"),
    ("geometrycollection", "geometry"), ("json", "json"), ("something_new", "text")])
def test_kinds(data_type: str, kind: str) -> None:
    assert kind_of(data_type) == kind
    assert kind_of("longtext", json_checked=True) == "json"


def test_numbers_keep_the_servers_digits() -> None:
    assert to_bytes("decimal", "12345678901234567890.1234567891") == b"12345678901234567890.1234567891"
    assert to_json("decimal", "-0.000000000000000000000000000001") == "-0.000000000000000000000000000001"
    assert to_json("int", 18446744073709551615) == "18446744073709551615"
    assert to_json("float", b"3.14159") == "3.14159" and to_json("float", "1e+20") == "1e+20"
    assert to_json("float", "inf") == '"inf"'  # not a JSON number: kept as text, never invalid JSON
    for kind in ("int", "decimal", "float"):
        json.loads(to_json(kind, "1e20"))


def test_bit_binary_text_json() -> None:
    assert to_bytes("bit", b"\x00\x05") == b"5" and to_json("bit", b"\x01\x00") == "256"
    assert to_bytes("binary", b"\x89PNG\x00\xff") == b"\x89PNG\x00\xff"
    assert to_json("binary", b"\x89PNG\x00\xff") == '"iVBORwD/"'
    assert to_bytes("text", "caf\u00e9\x00") == "caf\u00e9\x00".encode() and to_json("text", "a\u2028\x00") == '"a\u2028\\u0000"'
    assert to_json("json", '{"a": 1.50}') == '{"a": 1.50}'
    assert to_json("json", "{not json") == '"{not json"'
    assert to_json("temporal", "0000-00-00 00:00:00") == '"0000-00-00 00:00:00"'
    assert to_json("text", None) == "null"


def _g(srid: int, body: bytes) -> bytes:
    return struct.pack("<I", srid) + body


def _point(x: float, y: float, order: str = "<") -> bytes:
    return bytes([1 if order == "<" else 0]) + struct.pack(order + "Idd", 1, x, y)


def test_geometry_as_wkt() -> None:
    assert wkt(_g(0, _point(1.5, -2.25))) == "POINT(1.5 -2.25)"
    assert wkt(_g(4326, _point(0.1, 1e20, ">"))) == "SRID=4326;POINT(0.1 1e+20)"
    ring = struct.pack("<I", 4) + b"".join(struct.pack("<dd", *p) for p in [(0, 0), (1, 0), (1, 1), (0, 0)])
    assert wkt(_g(0, b"\x01" + struct.pack("<II", 3, 1) + ring)) == "POLYGON((0 0,1 0,1 1,0 0))"
    multi = b"\x01" + struct.pack("<II", 4, 2) + _point(1, 2) + _point(3, 4)
    assert wkt(_g(0, multi)) == "MULTIPOINT((1 2),(3 4))"
    coll = b"\x01" + struct.pack("<II", 7, 2) + _point(1, 2) + b"\x01" + struct.pack("<II", 2, 0)
    assert wkt(_g(0, coll)) == "GEOMETRYCOLLECTION(POINT(1 2),LINESTRING EMPTY)"
    assert to_json("geometry", _g(0, _point(1, 2))) == '"POINT(1 2)"'
    with pytest.raises(ValueError):
        wkt(b"\x00\x00")

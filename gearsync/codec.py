"""The type contract: what Redis holds for each column type, in each value shape.

Values are read with the server's own text for numbers and times (see
:data:`gearsync.connections.RAW_CONVERSIONS`): what the database prints is what arrives, digit
for digit. One encoder serves the worker, backfill and verify, so the three produce
byte-identical values for the same row.

=============  ========================================  =====================================
kind           column / hash field (bytes)               json shape (a JSON value)
=============  ========================================  =====================================
int            decimal text (``18446744073709551615``)   number
decimal        the server's text (``1.50``, full scale)  number, exact digits
float          the server's text (``3.14159``)           number
bit            the unsigned value as decimal text        number
temporal       the server's text (``2024-01-02 03:04:05.678901``, ``0000-00-00``, ``-838:59:59``)  string
text           UTF-8 (any column charset is converted)   string
binary         the raw bytes                             string, base64
json           its text                                  the JSON value itself (text if invalid)
geometry       WKT (``POINT(1.5 -2.25)``); ``SRID=n;``   string, the same WKT
               in front when the SRID is not 0
=============  ========================================  =====================================

NULL deletes the key in the column shape, leaves the field out of a hash, is ``null`` in JSON.
Geometry is WKT because it is text in every shape, the SQL standard's own form
(``ST_GeomFromText`` reads it back) and exact: coordinates print as the shortest decimal that
round-trips the double.
"""

from __future__ import annotations

import base64
import json
import re
import struct
from typing import Any, Callable

__all__ = ["kind_of", "KINDS", "to_bytes", "to_json", "bytes_encoder", "json_encoder", "wkt", "PK_HEX_KINDS"]

KINDS = ("int", "decimal", "float", "bit", "temporal", "text", "binary", "json", "geometry")
#: Primary-key kinds that travel as hex (the triggers write HEX(col), readers bind UNHEX(?)):
#: JSON cannot carry their bytes.
PK_HEX_KINDS = ("binary", "bit", "geometry")

_INT = {"tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year"}
_DECIMAL = {"decimal", "numeric"}
_FLOAT = {"float", "double", "real", "double precision"}
_TEMPORAL = {"date", "datetime", "timestamp", "time"}
_BINARY = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"}
_GEOMETRY = {"geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon",
             "geometrycollection", "geomcollection"}


def kind_of(data_type: str, json_checked: bool = False) -> str:
    """The kind of a column from information_schema's DATA_TYPE (``json_checked``: MariaDB's JSON
    alias, a text column with a ``json_valid`` check)."""
    t = data_type.lower()
    if t in _INT:
        return "int"
    if t in _DECIMAL:
        return "decimal"
    if t in _FLOAT:
        return "float"
    if t == "bit":
        return "bit"
    if t in _TEMPORAL:
        return "temporal"
    if t in _BINARY:
        return "binary"
    if t in _GEOMETRY:
        return "geometry"
    if t == "json" or json_checked:
        return "json"
    return "text"


def _text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).decode("utf-8", "surrogateescape")
    return str(v)


def _utf8(v: Any) -> bytes:
    if isinstance(v, str):
        return v.encode("utf-8", "surrogateescape")
    if isinstance(v, (bytes, bytearray)):
        return bytes(v)
    return str(v).encode()


def _raw_bytes(v: Any) -> bytes:
    return bytes(v) if not isinstance(v, str) else v.encode("utf-8", "surrogateescape")


def _bit(v: Any) -> bytes:
    return b"%d" % (v if isinstance(v, int) else int.from_bytes(bytes(v), "big"))


def _geometry(v: Any) -> bytes:
    return v.encode() if isinstance(v, str) else wkt(bytes(v)).encode()


_BYTES: dict[str, Callable[[Any], bytes]] = {"binary": _raw_bytes, "bit": _bit, "geometry": _geometry}


def bytes_encoder(kind: str) -> Callable[[Any], bytes]:
    """``fn(value) -> bytes`` for a non-NULL value of ``kind``: a string key or a hash field."""
    return _BYTES.get(kind, _utf8)


_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?\Z")
_json_string = json.JSONEncoder(ensure_ascii=False).encode


def _j_number(v: Any) -> str:
    if type(v) is int:
        return str(v)
    t = _text(v)
    if _NUMBER.match(t):
        return t
    t2 = t.replace("e+", "e")  # a double the server printed as 1e+20
    return t2 if _NUMBER.match(t2) else _json_string(t)


def _j_text(v: Any) -> str:
    return _json_string(v if type(v) is str else _text(v))


def _j_binary(v: Any) -> str:
    return '"' + base64.b64encode(_raw_bytes(v)).decode() + '"'


def _j_json(v: Any) -> str:
    t = _text(v)
    try:
        json.loads(t)
    except ValueError:  # not JSON after all (a text column without a check): a string
        return _json_string(t)
    return t


_JSON: dict[str, Callable[[Any], str]] = {
    "int": _j_number, "decimal": _j_number, "float": _j_number, "bit": lambda v: _bit(v).decode(),
    "binary": _j_binary, "geometry": lambda v: _json_string(_geometry(v).decode()), "json": _j_json,
}


def json_encoder(kind: str) -> Callable[[Any], str]:
    """``fn(value) -> JSON text`` for a non-NULL value of ``kind``."""
    return _JSON.get(kind, _j_text)


def to_bytes(kind: str, v: Any) -> bytes:
    """A non-NULL value as the bytes of a string key or hash field."""
    return bytes_encoder(kind)(v)


def to_json(kind: str, v: Any) -> str:
    """A value (None: NULL) as a JSON text fragment."""
    return "null" if v is None else json_encoder(kind)(v)


# -- WKB (MySQL's internal form: 4-byte SRID, then WKB) to WKT ------------------------------------
_TYPES = {1: "POINT", 2: "LINESTRING", 3: "POLYGON", 4: "MULTIPOINT", 5: "MULTILINESTRING",
          6: "MULTIPOLYGON", 7: "GEOMETRYCOLLECTION"}


def _num(x: float) -> str:
    if x == int(x) and abs(x) < 1e15:
        return "%d" % x if x or str(x)[0] != "-" else "-0"
    return repr(x)


class _Wkb:
    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos = data, pos

    def _unpack(self, fmt: str) -> tuple[Any, ...]:
        vals = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return vals

    def geometry(self) -> str:
        (order,) = self._unpack("B")
        e = "<" if order == 1 else ">"
        (code,) = self._unpack(e + "I")
        name = _TYPES.get(code)
        if name is None:
            raise ValueError(f"unknown WKB geometry type {code}")
        body = self._body(code, e)
        return name + (" EMPTY" if body == "()" else body)

    def _points(self, e: str) -> str:
        (n,) = self._unpack(e + "I")
        pts = [self._unpack(e + "dd") for _ in range(n)]
        return "(" + ",".join(f"{_num(x)} {_num(y)}" for x, y in pts) + ")"

    def _body(self, code: int, e: str) -> str:
        if code == 1:
            x, y = self._unpack(e + "dd")
            return f"({_num(x)} {_num(y)})"
        if code == 2:
            return self._points(e)
        if code == 3:
            (n,) = self._unpack(e + "I")
            return "(" + ",".join(self._points(e) for _ in range(n)) + ")"
        (n,) = self._unpack(e + "I")
        parts = []
        for _ in range(n):
            sub = _Wkb(self.data, self.pos)
            g = sub.geometry()
            self.pos = sub.pos
            # a multi-geometry's members print without their type name; a collection's with it
            parts.append(g if code == 7 else g[g.index("("):] if "(" in g else "EMPTY")
        return "(" + ",".join(parts) + ")"


def wkt(value: bytes) -> str:
    """MySQL/MariaDB's geometry bytes (SRID + WKB) as WKT, ``SRID=n;WKT`` for a non-zero SRID."""
    if len(value) < 9:
        raise ValueError("geometry value too short")
    (srid,) = struct.unpack_from("<I", value, 0)
    text = _Wkb(value, 4).geometry()
    return f"SRID={srid};{text}" if srid else text

from __future__ import annotations

import json

from gearsync.config import parse
from gearsync.mapping import Value, render, text_of

CFG = parse({"tables": {
    "s.users": {"key": "user:{id}", "value": "json", "exclude": ["pw"], "ttl": 60},
    "s.names": {"key": "{id}", "value": "column", "column": "name"},
    "s.h": {"key": "h:{id}", "value": "hash", "columns": ["id", "name", "score"]},
}})
ROW = {"id": 7, "name": "caf\u00e9 \"x\"\t", "pw": "secret", "score": None}
ORDER = ["id", "name", "pw", "score"]


def test_json_value_keeps_types_and_drops_excluded_columns() -> None:
    v = render(CFG.table("s.users"), ROW, ORDER)
    assert v.kind == "string" and v.ttl == 60
    assert isinstance(v.data, bytes)
    assert json.loads(v.data) == {"id": 7, "name": "caf\u00e9 \"x\"\t", "score": None}
    assert list(json.loads(v.data)) == ["id", "name", "score"]


def test_column_value_and_null_deletes() -> None:
    t = CFG.table("s.names")
    assert render(t, ROW) == Value("string", "caf\u00e9 \"x\"\t".encode(), None)
    assert render(t, {"id": 1, "name": None}) == Value("delete")


def test_hash_value_omits_null_fields() -> None:
    v = render(CFG.table("s.h"), ROW, ORDER)
    assert v == Value("hash", {b"id": b"7", b"name": "caf\u00e9 \"x\"\t".encode()}, None)
    assert render(CFG.table("s.h"), {"id": None, "name": None, "score": None}).kind == "delete"


def test_scalar_text() -> None:
    assert text_of(5) == b"5" and text_of(2.5) == b"2.5" and text_of(True) == b"1"
    assert text_of("\U0001f680") == "\U0001f680".encode() and text_of(b"\xff") == b"\xff"
    assert text_of({"a": [1]}) == b'{"a":[1]}'

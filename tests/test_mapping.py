from __future__ import annotations

import json
import random
from typing import Any

from gearsync.changes import OutboxRow, Value, VersionedChange
from gearsync.config import parse
from gearsync.mapping import outbox_changes, render, row_changes, text_of

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


def test_outbox_changes() -> None:
    rows = [
        OutboxRow(1, b"t:1", None, "insert", '{"name": "a\\u0000b"}'),
        OutboxRow(2, b"t:2", b"t:1", "update", '{"name": "moved"}'),
        OutboxRow(3, b"t:3", None, "update", '{"name": null}'),
        OutboxRow(4, b"t:4", None, "delete", None),
        OutboxRow(5, b"t:5", None, "insert", '{"n": 18446744073709551615}'),
        OutboxRow(6, b"t:6", None, "insert", '{"a": 1, "b": "x"}'),
        OutboxRow(7, b"t:7", None, "insert", "not json"),
    ]
    assert outbox_changes(rows) == [
        VersionedChange(b"t:1", 1, b"a\0b"),
        VersionedChange(b"t:1", 2, None), VersionedChange(b"t:2", 2, b"moved"),
        VersionedChange(b"t:3", 3, None),
        VersionedChange(b"t:4", 4, None),
        VersionedChange(b"t:5", 5, b"18446744073709551615"),
        VersionedChange(b"t:6", 6, b'{"a": 1, "b": "x"}'),
    ]


def test_table_handler_results_become_versioned_writes(caplog: Any) -> None:
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

    out = outbox_changes(rows, handlers={"s.t": fn})
    assert out == [VersionedChange(b"u:1", 7, None), VersionedChange(b"u:2", 7, None, {b"n": b"x"}, 60),
                   VersionedChange(b"u:3", 8, None), VersionedChange(b"k", 11, b"plain")]
    assert (seen[0].op, seen[0].old_key, seen[0].version, seen[0].row) == ("update", "u:1", 7, {"name": "x"})
    assert "the handler for s.t raised" in caplog.text and "returned int" in caplog.text


def test_batch_mapping_equals_mapping_render() -> None:
    """The fast paths of row_changes give what mapping.render gives (the worker's contract)."""
    rnd = random.Random(1)
    vals = [None, 1, -5, 1.5, 12.5, "a\"b\\c\n\u00e9\U0001F600\x00", "", True, False, 10 ** 20, [1, 2], {"x": 1}]
    rows = []
    for i in range(500):
        obj = {"id": i, "a": rnd.choice(vals), "b": rnd.choice(vals)}
        rows.append((b"k:%d" % i, json.dumps(obj, separators=(", ", ": "), ensure_ascii=rnd.random() < 0.5)))
    for spec in ({"value": "json"}, {"value": "column", "column": "a", "ttl": 9}, {"value": "hash", "ttl": 5},
                 {"value": "json", "exclude": ["b"]}):
        t = parse({"tables": {"a.b": {"key": "k:{id}", **spec}}}).table("a.b")
        for (key, row), c in zip(rows, row_changes(t, rows)):
            v = render(t, json.loads(row))
            assert c.key == key and c.ttl == (None if v.kind == "delete" else v.ttl)
            assert (c.value, c.hash) == {"string": (v.data, None), "hash": (None, v.data),
                                         "delete": (None, None)}[v.kind], (spec, row)

"""gearsync.mapping: rows → Redis values per shape, and changes → versioned writes."""

from __future__ import annotations

from typing import Any

import pytest

from gearsync.changes import OutboxRow, Value, VersionedChange
from gearsync.config import parse
from gearsync.mapping import RowEncoder, SchemaDrift, changes_of, row_changes
from gearsync.scan import Rows

CFG = parse({"tables": {
    "s.users": {"key": "user:{id}", "value": "json", "exclude": ["pw"], "ttl": 60},
    "s.names": {"key": "{id}", "value": "column", "column": "name"},
    "s.h": {"key": "h:{id}", "value": "hash", "columns": ["id", "name", "score"]},
}})
NAMES = ("id", "name", "pw", "score")
KINDS = {"id": "int", "name": "text", "pw": "binary", "score": "decimal"}
VALUES = (7, "caf\u00e9 \"x\"\t", b"\xff\x00secret", None)


def _value(table: str, values: Any = VALUES) -> Value:
    return RowEncoder(CFG.table(table), NAMES, KINDS).value(values)


def test_json_value_keeps_types_order_and_drops_excluded_columns() -> None:
    v = _value("s.users")
    assert v.kind == "string" and v.ttl == 60
    assert v.data == '{"id":7,"name":"caf\u00e9 \\"x\\"\\t","score":null}'.encode()
    assert _value("s.users", (7, "x", None, "12345678901234567890.123456789100000000000000000000")).data == \
        b'{"id":7,"name":"x","score":12345678901234567890.123456789100000000000000000000}'


def test_column_value_and_null_deletes() -> None:
    assert _value("s.names") == Value("string", "caf\u00e9 \"x\"\t".encode(), None)
    assert _value("s.names", (1, None, None, None)) == Value("delete")


def test_hash_value_omits_null_fields() -> None:
    assert _value("s.h") == Value("hash", {b"id": b"7", b"name": "caf\u00e9 \"x\"\t".encode()}, None)
    assert _value("s.h", (None, None, None, None)).kind == "delete"


def test_a_configured_column_gone_is_schema_drift() -> None:
    with pytest.raises(SchemaDrift, match="configured column 'name' is not in the table"):
        RowEncoder(CFG.table("s.names"), ("id", "other"), {})


def test_row_changes_of_a_scan() -> None:
    rows = Rows(NAMES, [(b"h:1", (1, "a", b"", "1.50")), (b"h:2", (None, None, None, None))], KINDS)
    assert row_changes(CFG.table("s.h"), rows) == [
        VersionedChange(b"h:1", 0, None, {b"id": b"1", b"name": b"a", b"score": b"1.50"}),
        VersionedChange(b"h:2", 0, None)]


def test_changes_read_back_by_primary_key() -> None:
    """A change names its row; the row as read now decides: its key → value, gone or moved → delete."""
    t = CFG.table("s.names")
    rows = [OutboxRow(1, b"5", None, "insert", None, "s.names", "[5]", 1000),
            OutboxRow(2, b"6", None, "update", None, "s.names", "[6]", 1001),     # gone since
            OutboxRow(3, b"8", b"7", "update", None, "s.names", "[8]", 1002),     # key moved 7 -> 8
            OutboxRow(4, b"9", None, "delete", None, "s.names", None, 1003),
            OutboxRow(5, b"x", None, "insert", None, "s.gone", "[1]", 1004),      # not configured
            OutboxRow(6, b"h:1", None, "insert", None, "s.h", "[1]", 1005)]      # configured, not read (drift)
    read = {"s.names": Rows(NAMES, [(b"5", (5, "five", None, None)), (b"8", (8, "eight", None, None))], KINDS)}
    skipped: list[Any] = []
    out = changes_of(rows, read, {"s.names": t, "s.h": CFG.table("s.h")},
                     on_skip=lambda r, why: skipped.append((r.id, why)))
    assert out == [VersionedChange(b"5", 1000, b"five"), VersionedChange(b"6", 1001, None),
                   VersionedChange(b"7", 1002, None), VersionedChange(b"8", 1002, b"eight"),
                   VersionedChange(b"9", 1003, None)]
    assert [i for i, _ in skipped] == [5, 6]
    assert "not a table of this worker's config" in skipped[0][1] and "could not be read" in skipped[1][1]


def test_legacy_changes_carry_their_row() -> None:
    """Outbox rows written by triggers of gearsync 0.1 (the row as JSON, no version: the id is)."""
    rows = [
        OutboxRow(1, b"t:1", None, "insert", '{"name": "a\\u0000b"}'),
        OutboxRow(2, b"t:2", b"t:1", "update", '{"name": "moved"}'),
        OutboxRow(3, b"t:3", None, "update", '{"name": null}'),
        OutboxRow(4, b"t:4", None, "delete", None),
        OutboxRow(5, b"t:5", None, "insert", '{"n": 18446744073709551615}'),
        OutboxRow(6, b"t:6", None, "insert", '{"a": 1, "b": "x"}'),
        OutboxRow(7, b"t:7", None, "insert", "not json"),
    ]
    assert changes_of(rows, {}) == [
        VersionedChange(b"t:1", 1, b"a\0b"),
        VersionedChange(b"t:1", 2, None), VersionedChange(b"t:2", 2, b"moved"),
        VersionedChange(b"t:3", 3, None),
        VersionedChange(b"t:4", 4, None),
        VersionedChange(b"t:5", 5, b"18446744073709551615"),
        VersionedChange(b"t:6", 6, b'{"a": 1, "b": "x"}'),
    ]
    legacy = OutboxRow(8, b"user:1", None, "update", '{"id": 1, "name": "n", "pw": "p", "score": 1.50}', "s.users")
    assert changes_of([legacy], {}, CFG.tables) == [
        VersionedChange(b"user:1", 8, b'{"id":1,"name":"n","score":1.50}', None, 60)]


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

    out = changes_of(rows, {}, handlers={"s.t": fn})
    assert out == [VersionedChange(b"u:1", 7, None), VersionedChange(b"u:2", 7, None, {b"n": b"x"}, 60),
                   VersionedChange(b"u:3", 8, None), VersionedChange(b"k", 11, b"plain")]
    assert [c.old_key for c in seen[:1]] == ["u:1"]
    assert "bug in the handler" in caplog.text and "returned int" in caplog.text

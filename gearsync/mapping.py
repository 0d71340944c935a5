"""Turn a source row into what Redis should hold for it, as a table's config says.

A row is a mapping of column name to value as it arrives (JSON-decoded: str, int, float,
bool, None, or the exact text of a number). The result is a :class:`Value`:

* ``value = "column"``: the one column's text (``None`` -> the key is deleted: Redis has no
  NULL, an absent key is a cache miss);
* ``value = "json"``: the chosen columns as one JSON object, NULL as ``null``;
* ``value = "hash"``: a Redis hash of the chosen columns; a NULL column is an absent field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from gearsync.config import TableConfig

__all__ = ["Value", "render", "text_of"]


@dataclass(frozen=True)
class Value:
    """What to write: ``kind`` is "string", "hash" or "delete"."""

    kind: str
    data: bytes | dict[bytes, bytes] | None = None
    ttl: int | None = None


def text_of(value: Any) -> bytes:
    """A scalar column value as the bytes a reader of the cache expects."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if value is True:
        return b"1"
    if value is False:
        return b"0"
    if isinstance(value, (int, float)):
        return repr(value).encode() if isinstance(value, float) else str(value).encode()
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def render(table: TableConfig, row: Mapping[str, Any], columns: Sequence[str] | None = None) -> Value:
    """The Redis value of ``row``; ``columns`` is the table's column order (default: the row's)."""
    order = list(columns) if columns is not None else list(row)
    if table.value == "column":
        assert table.column is not None
        v = row.get(table.column)
        return Value("delete") if v is None else Value("string", text_of(v), table.ttl)
    chosen = [c for c in table.value_columns(order) if c in row]
    if table.value == "json":
        obj = {c: row[c] for c in chosen}
        return Value("string", json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode(), table.ttl)
    fields = {c.encode(): text_of(row[c]) for c in chosen if row[c] is not None}
    return Value("hash", fields, table.ttl) if fields else Value("delete")

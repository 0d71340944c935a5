"""The one place a source row becomes what Redis holds for it.

A row is a mapping of column name to value as it arrives (JSON-decoded: str, int, float,
bool, None, or the exact text of a number). A configured table's ``value`` shape decides:

* ``column``: the one column's text (``None`` → the key is deleted: Redis has no NULL, an
  absent key is a cache miss);
* ``json``: the chosen columns as one JSON object, NULL as ``null``;
* ``hash``: a Redis hash of the chosen columns; a NULL column is an absent field.

The worker (outbox rows, ``gearsync_direct`` jobs), backfill and verify all turn rows into
:class:`~gearsync.changes.VersionedChange` writes here: :func:`row_change` for one row,
:func:`row_changes` for a scanned chunk, :func:`outbox_changes` for claimed outbox rows,
:func:`direct_changes` for a direct-mode job. An UPDATE that changed a row's key also
deletes the old key, with the same version (:func:`_moved`).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Mapping, Sequence

from .changes import OutboxRow, TableChange, TableHandler, Value, VersionedChange
from .config import TableConfig
from .payload import Num, decode_json

__all__ = ["render", "text_of", "row_change", "row_changes", "outbox_changes", "direct_changes"]

log = logging.getLogger(__name__)

_json_decode = json.JSONDecoder().decode
_json_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


# -- one row ------------------------------------------------------------------------------------
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
    return _json_encode(value).encode()


def render(table: TableConfig, row: Mapping[str, Any], columns: Sequence[str] | None = None) -> Value:
    """The Redis value of ``row``; ``columns`` is the table's column order (default: the row's)."""
    order = list(columns) if columns is not None else list(row)
    if table.value == "column":
        assert table.column is not None
        v = row.get(table.column)
        return Value("delete") if v is None else Value("string", text_of(v), table.ttl)
    chosen = [c for c in table.value_columns(order) if c in row]
    if table.value == "json":
        return Value("string", _json_encode({c: row[c] for c in chosen}).encode(), table.ttl)
    fields = {c.encode(): text_of(row[c]) for c in chosen if row[c] is not None}
    return Value("hash", fields, table.ttl) if fields else Value("delete")


def row_change(table: TableConfig, key: bytes, version: int, row: str | None) -> VersionedChange:
    """The write of a configured table's row (its value columns as a JSON object; None: the row
    is gone): string, hash or delete, with the TTL."""
    if row is None:
        return VersionedChange(key, version, None)
    obj = _json_decode(row)
    if type(obj) is not dict:
        raise ValueError(f"row is not a JSON object: {row[:80]!r}")
    if table.value == "json" and table.columns is None and not table.exclude:
        # render's "json" shape without its per-row column filtering (nothing to filter)
        return VersionedChange(key, version, _json_encode(obj).encode(), None, table.ttl)
    return VersionedChange.of(key, version, render(table, obj))


def row_changes(table: TableConfig, rows: Sequence[tuple[bytes, str | None]], version: int = 0
                ) -> list[VersionedChange]:
    """:func:`row_change` of many (key, row JSON) pairs (backfill, verify): the same results
    (a test compares them), with the column choice made once per distinct set of row members
    and the rows mapped in one loop."""
    dec, enc, ttl, shape = _json_decode, _json_encode, table.ttl, table.value
    chosen: dict[tuple[str, ...], tuple[list[str], bool]] = {}
    out: list[VersionedChange] = []
    append = out.append
    try:
        for k, r in rows:
            obj = dec(r)  # type: ignore[arg-type]  # None: TypeError, the slow path below
            if shape == "column":
                v = obj.get(table.column)
                append(VersionedChange(k, version, None) if v is None
                       else VersionedChange(k, version, text_of(v), None, ttl))
                continue
            names = tuple(obj)
            got = chosen.get(names)
            if got is None:
                cols = [c for c in table.value_columns(names) if c in obj]
                got = chosen[names] = (cols, cols == list(names))
            cols, everything = got
            if shape == "json":
                data = enc(obj if everything else {c: obj[c] for c in cols}).encode()
                append(VersionedChange(k, version, data, None, ttl))
            else:
                fields = {c.encode(): text_of(obj[c]) for c in cols if obj[c] is not None}
                append(VersionedChange(k, version, None, fields, ttl) if fields else VersionedChange(k, version, None))
    except (TypeError, AttributeError):  # a row that is not a JSON object: let the slow path say so
        return [row_change(table, k, version, r) for k, r in rows]
    return out


def _moved(key: bytes, old_key: bytes | None, version: int) -> list[VersionedChange]:
    """The deletion of the old key when a change moved the row to another key."""
    if old_key is None or old_key == key:
        return []
    return [VersionedChange(old_key, version, None)]


# -- the built-in shape of tables without a config -----------------------------------------------
def _builtin_value(row: str | None) -> bytes | None:
    """The Redis value of an outbox row's JSON: one member → its value, several → the object."""
    if row is None:
        return None
    obj = decode_json(row)
    if type(obj) is not dict:
        raise ValueError(f"outbox row is not a JSON object: {row[:80]!r}")
    if len(obj) != 1:
        return row.encode("utf-8")
    (v,) = obj.values()
    if v is None:
        return None
    if isinstance(v, Num):
        return str.__str__(v).encode()
    if isinstance(v, str):
        return v.encode("utf-8")
    if isinstance(v, bool):
        return b"true" if v else b"false"
    return json.dumps(v, ensure_ascii=False, separators=(", ", ": ")).encode("utf-8")


# -- outbox rows and direct-mode jobs ------------------------------------------------------------
def outbox_changes(rows: Sequence[OutboxRow], tables: Mapping[str, TableConfig] | None = None,
                   handlers: Mapping[str, TableHandler] | None = None) -> list[VersionedChange]:
    """Claimed outbox rows → Redis writes, each versioned with its outbox id.

    A row of a table in ``tables`` (source "schema.table" → its config) is mapped by its
    config; one with a handler (``handlers``: source → fn) gets what its handler returns for
    a :class:`~gearsync.changes.TableChange`; others keep the built-in shape (one value
    column → its value, several → the JSON object). A row whose JSON is unreadable, or whose
    handler raises, is logged and skipped (it will not get better)."""
    out: list[VersionedChange] = []
    for r in rows:
        key = bytes(r.key)
        old = bytes(r.old_key) if r.old_key is not None else None
        fn = handlers.get(r.source) if handlers and r.source else None
        if fn is not None:
            out.extend(_handled(fn, r, key, old))
            continue
        if r.op == "delete":
            out.append(VersionedChange(key, r.id, None))
            continue
        table = tables.get(r.source) if tables and r.source else None
        try:
            change = (row_change(table, key, r.id, r.row) if table is not None
                      else VersionedChange(key, r.id, _builtin_value(r.row)))
        except ValueError as e:
            log.error("outbox row %d (%r) skipped: %s", r.id, key, e)
            continue
        out += _moved(key, old, r.id)
        out.append(change)
    return out


def _handled(fn: TableHandler, r: OutboxRow, key: bytes, old: bytes | None) -> list[VersionedChange]:
    """A table handler's result as versioned writes (old key deleted when the key changed)."""
    moved = old is not None and old != key
    try:
        row = None if r.op == "delete" or r.row is None else json.loads(r.row)
        res = fn(TableChange(r.source or "", r.op, key.decode("utf-8", "surrogateescape"),
                             old.decode("utf-8", "surrogateescape") if moved and old else None, r.id, row))
    except Exception:
        log.exception("outbox row %d (%r): the handler for %s raised; change skipped", r.id, key, r.source)
        return []
    if res is None:
        value = Value("delete")
    elif isinstance(res, (bytes, str)):
        value = Value("string", res.encode() if isinstance(res, str) else res)
    elif isinstance(res, Value):
        value = res
    else:
        log.error("outbox row %d: the handler for %s returned %s, not bytes, str, Value or None; "
                  "change skipped", r.id, r.source, type(res).__name__)
        return []
    return _moved(key, old, r.id) + [VersionedChange.of(key, r.id, value)]


def direct_changes(workload: bytes, tables: Mapping[str, TableConfig]) -> list[VersionedChange]:
    """A ``gearsync_direct`` job (see :func:`gearsync.triggers.direct_triggers`) → its writes:
    ``{"source", "op", "k", "old_k", "json_row"}``, unversioned (version 0)."""
    obj = json.loads(workload)
    if type(obj) is not dict or not isinstance(obj.get("source"), str) or not isinstance(obj.get("k"), str):
        raise ValueError("not a gearsync_direct payload (source, op, k, old_k, json_row)")
    table = tables.get(obj["source"])
    if table is None:
        raise LookupError(f"table {obj['source']!r} is not configured")
    key = obj["k"].encode("utf-8", "surrogatepass")
    old = obj.get("old_k")
    out = _moved(key, old.encode("utf-8", "surrogatepass") if isinstance(old, str) else None, 0)
    row = obj.get("json_row")
    if obj.get("op") == "delete" or row is None:
        out.append(VersionedChange(key, 0, None))
    else:
        out.append(row_change(table, key, 0, json.dumps(row)))
    return out

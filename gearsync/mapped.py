"""A configured table's row → its versioned Redis write.

The one place a configured row becomes a Redis value: the worker (outbox rows, direct-mode
jobs), backfill and verify all pass MariaDB's ``JSON_OBJECT`` of the value columns through
:func:`gearsync.mapping.render` (json / hash / column, TTL) by way of these functions.
"""

from __future__ import annotations

import json
from typing import Sequence

from .config import TableConfig
from .outbox import VersionedChange

__all__ = ["mapped_change", "mapped_changes"]

_json_decode = json.JSONDecoder().decode
_json_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def mapped_change(table: TableConfig, key: bytes, version: int, row: str | None) -> VersionedChange:
    """The write of a configured table's row (its value columns as a JSON object; None: the row
    is gone) through :func:`gearsync.mapping.render`: string, hash or delete, with the TTL.

    The one place a configured row becomes a Redis value: the worker, backfill and verify all
    call it with MariaDB's ``JSON_OBJECT`` of the value columns."""
    from .mapping import render

    if row is None:
        return VersionedChange(key, version, None)
    obj = _json_decode(row)
    if type(obj) is not dict:
        raise ValueError(f"row is not a JSON object: {row[:80]!r}")
    if table.value == "json" and table.columns is None and not table.exclude:
        # mapping.render's "json" shape without its per-row column filtering (nothing to filter)
        return VersionedChange(key, version, _json_encode(obj).encode(), None, table.ttl)
    v = render(table, obj)
    if v.kind == "delete":
        return VersionedChange(key, version, None)
    if v.kind == "hash":
        return VersionedChange(key, version, None, v.data, v.ttl)  # type: ignore[arg-type]
    return VersionedChange(key, version, v.data, None, v.ttl)  # type: ignore[arg-type]


def mapped_changes(table: TableConfig, rows: Sequence[tuple[bytes, str]], version: int = 0
                   ) -> list[VersionedChange]:
    """:func:`mapped_change` of many (key, row JSON) pairs (backfill, verify): the same results
    (a test compares them with :func:`gearsync.mapping.render`), with the column choice made
    once per distinct set of row members and the rows mapped in one loop."""
    from .mapping import text_of

    dec, enc, ttl, shape = _json_decode, _json_encode, table.ttl, table.value
    chosen: dict[tuple[str, ...], tuple[list[str], bool]] = {}
    out: list[VersionedChange] = []
    append = out.append
    try:
        for k, r in rows:
            obj = dec(r)
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
        return [mapped_change(table, k, version, r) for k, r in rows]
    return out

"""The one place a source row becomes what Redis holds for it.

A configured table's ``value`` shape decides, with :mod:`gearsync.codec` encoding each column
by its kind:

* ``column``: the one column's bytes (NULL → the key is deleted: Redis has no NULL, an absent
  key is a cache miss);
* ``json``: the chosen columns as one JSON object, in table order, NULL as ``null``;
* ``hash``: a Redis hash of the chosen columns; a NULL column is an absent field.

The worker (outbox rows and direct-mode jobs), backfill and verify all turn rows into
:class:`~gearsync.changes.VersionedChange` writes here. A change names a row by its primary
key; the worker reads the row as it is now (:class:`gearsync.scan.TableReader`) and
:func:`changes_of` writes it under its key — or deletes the key when the row is gone or now
maps to another key (a later change of that row writes the new key). An UPDATE that changed
a row's key also deletes the old key, with the same version.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Mapping, Sequence

from .changes import OutboxRow, TableChange, TableHandler, Value, VersionedChange
from .codec import bytes_encoder, json_encoder
from .computed import IN, field_name
from .config import TableConfig
from .payload import Num, decode_json
from .placements import placements
from .scan import Rows

__all__ = ["RowEncoder", "encoder", "row_changes", "target_changes", "changes_of", "SchemaDrift", "Read",
           "coalesce"]

log = logging.getLogger(__name__)

_json_string = json.JSONEncoder(ensure_ascii=False).encode


class SchemaDrift(ValueError):
    """A configured column is not in the table any more: the change cannot be mapped."""


class RowEncoder:
    """A table's rows (values in the order of ``names``: computed values, then the table's
    columns, see gearsync.scan.Rows) → its Redis values. A row outside the table's ``where``
    maps to nothing (its key is deleted)."""

    def __init__(self, cfg: TableConfig, names: Sequence[str], kinds: Mapping[str, str]) -> None:
        self.cfg, self.ttl, self.shape = cfg, cfg.ttl, cfg.value
        index = {n: i for i, n in enumerate(names)}
        columns = [n for n in names if not n.startswith("\0")]
        fields = set(cfg.field_names)
        chosen = cfg.value_columns(columns)
        named = [cfg.column] if cfg.value == "column" else list(cfg.columns or ())
        missing = [c for c in named if c not in index and c not in fields]
        if missing:
            raise SchemaDrift(f"{cfg.display}: configured column {missing[0]!r} is not in the table "
                              f"(it has {', '.join(columns)})")
        self.inside = index.get(IN)

        def at(name: str) -> tuple[int, str]:
            ref = field_name(name) if name in fields else name
            return index[ref], kinds.get(ref, "text")

        if cfg.value == "column":
            assert cfg.column is not None
            i, kind = at(cfg.column)
            self.column: tuple[int, Callable[[Any], bytes]] | None = (i, bytes_encoder(kind))
            members = [(cfg.column, i, kind)]
        else:
            self.column = None
            members = [(c, *at(c)) for c in chosen] + [(f, *at(f)) for f in cfg.field_names]
        self.json = [(i, _json_string(c) + ":", json_encoder(kind)) for c, i, kind in members]
        self.hash = [(i, c.encode("utf-8", "surrogateescape"), bytes_encoder(kind)) for c, i, kind in members]

    def present(self, values: Sequence[Any]) -> bool:
        """Whether the row is inside the table's ``where`` (always, without one)."""
        return self.inside is None or bool(int(values[self.inside] or 0))

    def json_text(self, values: Sequence[Any]) -> bytes:
        """The value's columns and fields as one JSON object."""
        body = ",".join(name + ("null" if values[i] is None else enc(values[i])) for i, name, enc in self.json)
        return ("{" + body + "}").encode("utf-8", "surrogateescape")

    def value(self, values: Sequence[Any]) -> Value:
        if not self.present(values):
            return Value("delete")
        if self.column is not None:
            i, enc = self.column
            v = values[i]
            return Value("delete") if v is None else Value("string", enc(v), self.ttl)
        if self.shape in ("json", "redisjson"):
            return Value("string" if self.shape == "json" else "redisjson", self.json_text(values), self.ttl)
        fields = {f: enc(values[i]) for i, f, enc in self.hash if values[i] is not None}
        return Value("hash", fields, self.ttl) if fields else Value("delete")

    def change(self, key: bytes, version: int, values: Sequence[Any]) -> VersionedChange:
        return VersionedChange.of(key, version, self.value(values))


_encoders: dict[tuple[Any, ...], RowEncoder] = {}


def encoder(cfg: TableConfig, names: Sequence[str], kinds: Mapping[str, str]) -> RowEncoder:
    """A (cached) :class:`RowEncoder`."""
    ident = (cfg, tuple(names), tuple(kinds.get(n) for n in names))
    enc = _encoders.get(ident)
    if enc is None:
        if len(_encoders) > 256:
            _encoders.clear()
        enc = _encoders[ident] = RowEncoder(cfg, names, kinds)
    return enc


def row_changes(cfg: TableConfig, rows: Rows, version: int = 0) -> list[VersionedChange]:
    """Scanned rows (backfill, verify) → their writes."""
    enc = encoder(cfg, rows.names, rows.kinds)
    return [enc.change(k, version, values) for k, values in rows.rows]


def target_changes(cfg: TableConfig, rows: Rows, version: int = 0) -> list[VersionedChange]:
    """Scanned rows → the placements of the table's extra targets (gearsync.targets)."""
    if not cfg.targets:
        return []
    enc = encoder(cfg, rows.names, rows.kinds)
    return [c for k, values in rows.rows for c in placements(cfg, rows.names, enc, k, version, values)]


def coalesce(changes: Sequence[VersionedChange]) -> list[VersionedChange]:
    """``changes`` with only the newest placement per record (the changes of one row in a batch
    all read the row as it is now: one placement, one stream entry says it)."""
    best: dict[bytes, int] = {}
    for i, c in enumerate(changes):
        if c.record is not None:
            j = best.get(c.record)
            if j is None or _ver(changes[j]) <= _ver(c):
                best[c.record] = i
    keep = set(best.values())
    return [c for i, c in enumerate(changes) if c.record is None or i in keep]


def _ver(c: VersionedChange) -> int:
    return c.version if isinstance(c.version, int) else 0


def _moved(key: bytes, old_key: bytes | None, version: int) -> list[VersionedChange]:
    """The deletion of the old key when a change moved the row to another key."""
    if old_key is None or old_key == key:
        return []
    return [VersionedChange(old_key, version, None)]


#: source → the rows read for its changes, see :func:`changes_of`.
Read = Mapping[str, Rows]


def changes_of(rows: Sequence[OutboxRow], read: Read, tables: Mapping[str, TableConfig] | None = None,
               handlers: Mapping[str, TableHandler] | None = None,
               on_skip: Callable[[OutboxRow, str], None] | None = None) -> list[VersionedChange]:
    """Changes (outbox rows, direct-mode jobs) → Redis writes, versioned with ``row.ver`` (or
    the outbox id for rows written before versions existed).

    A change that names its row by primary key (``pk``) takes the row from ``read``: written
    under its key if the row still maps to it, else the key is deleted. A legacy change
    carries its row as JSON (``row``). A table with a handler (``handlers``: source → fn) gets
    what its handler returns for a :class:`~gearsync.changes.TableChange`; a table without a
    config keeps the built-in shape (one value column → its value, several → the JSON
    object). A change that cannot be mapped (unreadable JSON, a handler that raises, a
    configured column gone) is reported to ``on_skip`` and left out (it will not get better)."""
    found: dict[str, tuple[dict[bytes, tuple[Any, ...]], Rows]] = {s: (dict(r.rows), r) for s, r in read.items()}
    # the encoder of each table read (one per batch, not one lookup per row)
    encoders = {s: encoder(tables[s], r.names, r.kinds) for s, r in read.items() if tables and s in tables}
    out: list[VersionedChange] = []
    for r in rows:
        key = bytes(r.key)
        old = bytes(r.old_key) if r.old_key is not None else None
        ver = r.ver or r.id
        try:
            row = _row_of(r, key, found, tables)
            fn = handlers.get(r.source) if handlers and r.source else None
            table = tables.get(r.source) if tables and r.source else None
            if fn is not None:
                change = _handled(fn, r, key, old, ver, row)
            elif r.op == "delete" or row is None:
                change = VersionedChange(key, ver, None)
            elif table is not None:
                names, values = row
                enc = encoders.get(r.source or "") if r.pk is not None else None
                change = (enc or encoder(table, names, _kinds(r, found, values))).change(key, ver, values)
            else:
                change = VersionedChange(key, ver, _builtin_value(r.row))
            extra = _placed(table, r, key, old, ver, row, found) if table is not None and fn is None else []
        except Exception as e:  # noqa: BLE001 - reported, then the change is left out
            if on_skip is not None:
                on_skip(r, f"{type(e).__name__}: {e}")
            log.error("change %d (%s %r) skipped: %s: %s", r.id, r.source, key, type(e).__name__, e)
            continue
        out += _moved(key, old, ver)
        out.append(change)
        out += extra
    return coalesce(out)


def _placed(table: TableConfig, r: OutboxRow, key: bytes, old: bytes | None, ver: int,
            row: tuple[Sequence[str], Sequence[Any]] | None, found: Mapping[str, Any]) -> list[VersionedChange]:
    """The placements of a change in the table's extra targets: the row's, and nothing for its
    old key when the change moved it."""
    if not table.targets or r.pk is None:
        return []
    read = found.get(r.source or "")
    names = row[0] if row is not None else ()
    enc = encoder(table, names, read[1].kinds) if read is not None and row is not None else None
    out: list[VersionedChange] = []
    if old is not None and old != key:
        out += placements(table, (), None, old, ver, None)
    return out + placements(table, names, enc, key, ver, None if row is None else row[1])


def _row_of(r: OutboxRow, key: bytes, found: Mapping[str, Any], tables: Mapping[str, TableConfig] | None
            ) -> tuple[Sequence[str], Sequence[Any]] | None:
    """(column names, values) of the change's row as it is now, None when it is gone or now
    maps to another key."""
    if r.op == "delete":
        return None
    if r.pk is not None:
        if (r.source or "") not in found:
            if not tables or r.source not in tables:
                raise LookupError(f"{r.source} is not a table of this worker's config")
            raise SchemaDrift(f"{r.source}: its rows could not be read (see the worker's log and `gearsync status`)")
        rows, read = found[r.source or ""]
        values = rows.get(key)
        return None if values is None else (read.names, values)
    if r.row is None:
        return None
    obj = decode_json(r.row)  # a legacy change: the value columns as JSON
    if type(obj) is not dict:
        raise ValueError(f"outbox row is not a JSON object: {r.row[:80]!r}")
    return list(obj), [_legacy_value(v) for v in obj.values()]


def _kinds(r: OutboxRow, found: Mapping[str, Any], values: Sequence[Any]) -> Mapping[str, str]:
    if r.pk is not None:
        return found[r.source or ""][1].kinds
    obj = decode_json(r.row or "{}")
    return {n: _legacy_kind(v) for n, v in obj.items()}


def _legacy_value(v: Any) -> Any:
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    if isinstance(v, bool):
        return int(v)
    return str.__str__(v) if isinstance(v, Num) else v


def _legacy_kind(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return "json"
    if isinstance(v, (bool, Num)):
        return "decimal"
    return "text"


def _handled(fn: TableHandler, r: OutboxRow, key: bytes, old: bytes | None, ver: int,
             row: tuple[Sequence[str], Sequence[Any]] | None) -> VersionedChange:
    """A table handler's result as a versioned write."""
    moved = old is not None and old != key
    res = fn(TableChange(r.source or "", r.op, key.decode("utf-8", "surrogateescape"),
                         old.decode("utf-8", "surrogateescape") if moved and old else None, ver,
                         None if row is None else dict(zip(*row))))
    if res is None:
        return VersionedChange(key, ver, None)
    if isinstance(res, (bytes, str)):
        return VersionedChange(key, ver, res.encode() if isinstance(res, str) else res)
    if isinstance(res, Value):
        return VersionedChange.of(key, ver, res)
    raise TypeError(f"the handler for {r.source} returned {type(res).__name__}, not bytes, str, Value or None")


def _builtin_value(row: str | None) -> bytes | None:
    """The Redis value of a table without a config: one member → its value, several → the object
    as the server's JSON_OBJECT printed it (MariaDB keeps the columns' order, MySQL sorts keys)."""
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

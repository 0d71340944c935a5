"""Reading a configured table's rows: in primary-key chunks (backfill, verify) and by primary
key (the worker, for the changes it applies).

Every read is ``SELECT <key expression>, <computed…>, t.* …``: the key is computed by the
database with the very expression the triggers use, the config's filter, fields and target
keys/members/scores by :mod:`gearsync.computed` (named in :attr:`Rows.names` by their internal
names, before the table's columns), and ``t.*`` brings every column the table has *now* — a
column added a moment ago included — in the server's own text for numbers and times (see
:func:`gearsync.connections.connect_mysql`). :mod:`gearsync.codec` turns the values into what
Redis holds, the same way for the worker, backfill and verify.

Chunks use keyset pagination (``WHERE pk > last ORDER BY pk LIMIT n``: every chunk is an index
range, however far in). A :class:`TableReader` notices when the table's columns changed (the
result's columns differ from what it resolved) and resolves the table again.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Sequence

from .codec import PK_HEX_KINDS
from .computed import ALIAS, extras
from .config import TableConfig
from .constants import DEFAULT_CHUNK
from .quoting import MARK, params, qualified, quote_ident
from .schema import ResolvedTable, resolve_table

__all__ = ["TableReader", "Rows", "count_rows", "plan_bounds"]

log = logging.getLogger(__name__)

_ALIAS = ALIAS


class Rows(NamedTuple):
    """Rows read: ``names`` of the computed values (internal names, see gearsync.computed) and
    then of the table's columns, per row (Redis key, values in that order), and the kinds
    (gearsync.codec) of columns and fields as resolved for this read."""

    names: tuple[str, ...]
    rows: list[tuple[bytes, tuple[Any, ...]]]
    kinds: Mapping[str, str]


def _after(pk: Sequence[str]) -> str:
    """``(a, b) > (?, ?)`` spelled so that the optimizer makes it a range."""
    cols = [f"{_ALIAS}.{quote_ident(c)}" for c in pk]
    ors = []
    for i in range(len(cols)):
        eqs = [f"{cols[j]} = {MARK}" for j in range(i)] + [f"{cols[i]} > {MARK}"]
        ors.append("(" + " AND ".join(eqs) + ")")
    return "(" + " OR ".join(ors) + ")"


def _after_args(last: Sequence[Any]) -> list[Any]:
    args: list[Any] = []
    for i in range(len(last)):
        args += list(last[:i]) + [last[i]]
    return args


def _key(v: Any) -> bytes:
    return bytes(v) if isinstance(v, (bytes, bytearray)) else str(v).encode("utf-8", "surrogatepass")


class TableReader:
    """Reads one configured table through ``connection()`` (called for each read, so a caller
    that reconnects hands the new connection)."""

    def __init__(self, cfg: TableConfig, connection: Callable[[], Any], resolved: ResolvedTable | None = None,
                 source: str = "<config>") -> None:
        self.cfg = cfg
        self.connection = connection
        self.source = source
        self._rt = resolved
        self._extras = extras(cfg)
        self._computed = tuple(n for n, _sql in self._extras)
        self._select = "".join(f", {sql}" for _n, sql in self._extras)
        self._shape: tuple[Any, ...] | None = None   # (name, type code) of t.* as last seen
        self.resolves = 0
        #: Set when a read found the columns changed since an earlier read (the caller clears it).
        self.changed = False

    def forget(self) -> None:
        """Resolve the table again before the next read."""
        self._rt = None
        self._shape = None

    @property
    def rt(self) -> ResolvedTable:
        if self._rt is None:
            self._rt = resolve_table(self.connection(), self.cfg, self.source)
            self.resolves += 1
        return self._rt

    def _columns(self, description: Sequence[Any], skip: int) -> tuple[str, ...]:
        """The computed names and the table's column names in a result; a changed set or type
        of columns resolves the table again."""
        skip += len(self._computed)
        shape = tuple((d[0], d[1]) for d in description[skip:])
        names = tuple(d[0] for d in description[skip:])
        if shape != self._shape:
            if self._shape is not None or names != self.rt.columns:
                log.info("%s: columns changed, resolving the table again", self.cfg.name)
                self._rt = None
                self.changed = True
            self._shape = shape
        return self._computed + names

    # -- chunks --------------------------------------------------------------------------------
    def chunk_sql(self, resume: bool, upto: bool = False) -> str:
        """pk columns…, key, t.* of the next chunk (DB-API ``%s`` params: the pk values to resume
        after, the last pk to include (``upto``), then the limit)."""
        rt = self.rt
        pk = ", ".join(f"{_ALIAS}.{quote_ident(c)}" for c in rt.primary_key)
        conds = ([_after(rt.primary_key)] if resume else []) + ([f"NOT {_after(rt.primary_key)}"] if upto else [])
        where = f" WHERE {' AND '.join(conds)}" if conds else ""
        return params(f"SELECT {pk}, {rt.key_sql(_ALIAS)}{self._select}, {_ALIAS}.* FROM {qualified(self.cfg.schema, self.cfg.table)} "
                      f"AS {_ALIAS}{where} ORDER BY {pk} LIMIT {MARK}")

    def chunks(self, after: Sequence[Any] | None = None, chunk: int = DEFAULT_CHUNK,
               upto: Sequence[Any] | None = None) -> Iterator[tuple[list[Any], Rows]]:
        """Yield (last primary key, rows) per chunk, in primary-key order, from after ``after``
        (None: the first row) up to and including ``upto`` (None: the last)."""
        npk = len(self.rt.primary_key)
        bound = _after_args(upto) if upto else []
        last = list(after) if after else None
        while True:
            with self.connection().cursor() as cur:
                if last is None:
                    cur.execute(self.chunk_sql(False, bool(upto)), (*bound, chunk))
                else:
                    cur.execute(self.chunk_sql(True, bool(upto)), (*_after_args(last), *bound, chunk))
                found = cur.fetchall()
                names = self._columns(cur.description, npk + 1)
            if not found:
                return
            last = list(found[-1][:npk])
            yield last, Rows(names, [(_key(r[npk]), tuple(r[npk + 1:])) for r in found], self.rt.kinds)
            if len(found) < chunk:
                return

    # -- by primary key ------------------------------------------------------------------------
    def by_keys(self, pks: Sequence[Sequence[Any]], lock: bool = False) -> Rows:
        """The rows whose primary key is one of ``pks`` (values as the triggers wrote them: hex
        for :data:`PK_HEX_KINDS`), each with its Redis key as it is now. ``lock``: a locking
        read (``LOCK IN SHARE MODE``), which waits for the transactions that are writing those
        rows and then returns them as committed (a rolled-back insert: absent) — for a change
        whose job may arrive before its writer committed."""
        rt = self.rt
        if not pks:
            return Rows(self._computed + rt.columns, [], rt.kinds)
        marks = [f"UNHEX({MARK})" if rt.kinds.get(c) in PK_HEX_KINDS else MARK for c in rt.primary_key]
        one = "(" + ", ".join(marks) + ")" if len(marks) > 1 else marks[0]
        cols = ", ".join(f"{_ALIAS}.{quote_ident(c)}" for c in rt.primary_key)
        target = f"({cols})" if len(marks) > 1 else cols
        sql = params(f"SELECT {rt.key_sql(_ALIAS)}{self._select}, {_ALIAS}.* FROM {qualified(self.cfg.schema, self.cfg.table)} "
                     f"AS {_ALIAS} WHERE {target} IN ({', '.join([one] * len(pks))})"
                     + (" LOCK IN SHARE MODE" if lock else ""))
        args = [v for pk in pks for v in pk]
        with self.connection().cursor() as cur:
            cur.execute(sql, args)
            found = cur.fetchall()
            names = self._columns(cur.description, 1)
        return Rows(names, [(_key(r[0]), tuple(r[1:])) for r in found], self.rt.kinds)


def count_rows(conn: Any, rt: ResolvedTable) -> int:
    with conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {qualified(rt.cfg.schema, rt.cfg.table)}")
        return int(cur.fetchone()[0])


def plan_bounds(conn: Any, rt: ResolvedTable, total: int, parts: int) -> list[list[Any]]:
    """The primary keys that end partitions 0 … parts-2 of a table of ``total`` rows (cut at
    offsets total·i/parts; fewer bounds for a small table)."""
    pk = ", ".join(quote_ident(c) for c in rt.primary_key)
    sql = params(f"SELECT {pk} FROM {qualified(rt.cfg.schema, rt.cfg.table)} ORDER BY {pk} LIMIT 1 OFFSET {MARK}")
    bounds: list[list[Any]] = []
    with conn.cursor() as cur:
        for i in range(1, parts):
            off = total * i // parts - 1
            if off < 0:
                continue
            cur.execute(sql, (off,))
            row = cur.fetchone()
            if row is not None and (not bounds or list(row) != bounds[-1]):
                bounds.append(list(row))
    return bounds

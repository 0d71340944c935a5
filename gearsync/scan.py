"""Reading a configured table in primary-key chunks, as backfill and verify do.

Rows are read with keyset pagination (``WHERE pk > last ORDER BY pk LIMIT n``: every chunk is
an index range, however far in). Each row's key and value columns are computed by the
database with the very expressions the triggers use (the key template's ``CONCAT``,
``JSON_OBJECT`` of the value columns), so what backfill writes and verify expects is
byte-identical to what the worker writes for the same row.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from .constants import DEFAULT_CHUNK
from .quoting import MARK, params, qualified, quote_ident, quote_string
from .schema import ResolvedTable

__all__ = ["select_sql", "scan_rows", "count_rows", "plan_bounds"]

_ALIAS = "_gs"


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


def select_sql(rt: ResolvedTable, resume: bool, upto: bool = False) -> str:
    """pk columns…, key, JSON_OBJECT(value columns) of the next chunk (DB-API ``%s`` params:
    the pk values to resume after, the last pk to include (``upto``), then the limit)."""
    t = rt.cfg
    pk = ", ".join(f"{_ALIAS}.{quote_ident(c)}" for c in rt.primary_key)
    members = ", ".join(f"{quote_string(c)}, {_ALIAS}.{quote_ident(c)}" for c in rt.value_columns)
    conds = ([_after(rt.primary_key)] if resume else []) + ([f"NOT {_after(rt.primary_key)}"] if upto else [])
    where = f" WHERE {' AND '.join(conds)}" if conds else ""
    return params(f"SELECT {pk}, {rt.key_sql(_ALIAS)}, JSON_OBJECT({members}) "
                  f"FROM {qualified(t.schema, t.table)} AS {_ALIAS}{where} ORDER BY {pk} LIMIT {MARK}")


def scan_rows(conn: Any, rt: ResolvedTable, after: Sequence[Any] | None = None,
              chunk: int = DEFAULT_CHUNK, upto: Sequence[Any] | None = None
              ) -> Iterator[tuple[list[Any], list[tuple[bytes, str | None]]]]:
    """Yield (last primary key, [(key, row JSON), …]) per chunk, in primary-key order, from
    after ``after`` (None: the first row) up to and including ``upto`` (None: the last)."""
    npk = len(rt.primary_key)
    bound = _after_args(upto) if upto else []
    sql_first, sql_next = select_sql(rt, False, bool(upto)), select_sql(rt, True, bool(upto))
    last = list(after) if after else None
    while True:
        with conn.cursor() as cur:
            if last is None:
                cur.execute(sql_first, (*bound, chunk))
            else:
                cur.execute(sql_next, (*_after_args(last), *bound, chunk))
            rows = cur.fetchall()
        if not rows:
            return
        last = list(rows[-1][:npk])
        yield last, [(_bytes(r[npk]), _text(r[npk + 1])) for r in rows]
        if len(rows) < chunk:
            return


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


def _bytes(v: Any) -> bytes:
    return v if isinstance(v, bytes) else str(v).encode("utf-8", "surrogatepass")


def _text(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    return bytes(v).decode("utf-8")

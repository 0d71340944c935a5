"""What the live database says about configured tables: columns, primary keys, nullability.

:func:`resolve` checks a config against the database (unknown table or column, nullable key
column, no primary key: a :class:`~gearsync.config.ConfigError` naming the file, table and
field) and returns each table as a :class:`ResolvedTable`, before anything is installed,
backfilled or verified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from .config import Config, ConfigError, TableConfig
from .quoting import key_expr

__all__ = ["ResolvedTable", "resolve", "check_schema", "live_columns", "primary_keys", "nullable_columns"]


@dataclass(frozen=True)
class ResolvedTable:
    """A configured table with what the live schema says about it."""

    cfg: TableConfig
    columns: tuple[str, ...]          # all columns, table order
    value_columns: tuple[str, ...]    # those in the value
    primary_key: tuple[str, ...]      # for keyset pagination (backfill, verify)

    @property
    def name(self) -> str:
        return self.cfg.name

    def key_sql(self, alias: str) -> str:
        """SQL computing the Redis key of ``alias``'s row (the triggers' own expression)."""
        return key_expr(alias, self.cfg.key)


def live_columns(conn: Any, tables: Iterable[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
    """Column names in table order for (schema, table) pairs, from information_schema."""
    out: dict[tuple[str, str], list[str]] = {}
    with conn.cursor() as cur:
        for schema, table in tables:
            cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                        "AND table_name = %s ORDER BY ordinal_position", (schema, table))
            rows = cur.fetchall()
            if rows:
                out[(schema, table)] = [r[0] for r in rows]
    return out


def primary_keys(conn: Any, tables: Iterable[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
    """The primary-key columns, in index order, of (schema, table) pairs."""
    out: dict[tuple[str, str], list[str]] = {}
    with conn.cursor() as cur:
        for schema, table in tables:
            cur.execute("SELECT column_name FROM information_schema.statistics WHERE table_schema = %s "
                        "AND table_name = %s AND index_name = 'PRIMARY' ORDER BY seq_in_index", (schema, table))
            out[(schema, table)] = [r[0] for r in cur.fetchall()]
    return out


def nullable_columns(conn: Any, schema: str, table: str) -> set[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                    "AND table_name = %s AND is_nullable = 'YES'", (schema, table))
        return {r[0] for r in cur.fetchall()}


def check_schema(cfg: Config, columns_of: Mapping[tuple[str, str], list[str]]) -> None:
    """Raise ConfigError if a configured table or column does not exist.

    ``columns_of`` maps (schema, table) to its column names in order (see :func:`live_columns`)."""
    for t in cfg.tables.values():
        where = f"{cfg.source}: tables.{t.display!r}"
        cols = columns_of.get((t.schema, t.table))
        if cols is None:
            raise ConfigError(f"{where}: no such table in the database")
        known = set(cols)
        named = [("key", c) for c in t.key_columns] + [("columns", c) for c in (t.columns or ())]
        named += [("exclude", c) for c in t.exclude] + ([("column", t.column)] if t.column else [])
        for fld, c in named:
            if c not in known:
                raise ConfigError(f"{where}.{fld}: no column {c!r} in {t.display} (it has {', '.join(cols)})")


def resolve(cfg: Config, conn: Any, only: Sequence[str] | None = None) -> list[ResolvedTable]:
    """Check ``cfg`` against the live database and resolve its tables (``only``: these names).

    Raises ConfigError naming the file, table and field for an unknown table or column, a
    nullable key column, or a table without a primary key."""
    tables = [cfg.table(n) for n in only] if only else list(cfg.tables.values())
    pairs = [(t.schema, t.table) for t in tables]
    cols = live_columns(conn, pairs)
    check_schema(cfg.subset(tables), cols)
    pks = primary_keys(conn, pairs)
    out: list[ResolvedTable] = []
    for t in tables:
        where = f"{cfg.source}: tables.{t.display!r}"
        nullable = nullable_columns(conn, t.schema, t.table) & set(t.key_columns)
        if nullable:
            raise ConfigError(f"{where}.key: key column {sorted(nullable)[0]!r} is nullable "
                              "(a Redis key needs NOT NULL columns)")
        pk = pks.get((t.schema, t.table)) or []
        if not pk:
            raise ConfigError(f"{where}: {t.display} has no primary key")
        all_cols = cols[(t.schema, t.table)]
        values = t.value_columns(all_cols)
        if not values:
            raise ConfigError(f"{where}: no value column is left (columns/exclude)")
        out.append(ResolvedTable(t, tuple(all_cols), tuple(values), tuple(pk)))
    return out

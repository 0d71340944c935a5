"""What the live database says about configured tables: columns and their kinds, primary keys,
nullability, engine and cascading foreign keys.

:func:`resolve` checks a config against the database (unknown table or column, nullable key
column, no primary key: a :class:`~gearsync.config.ConfigError` naming the file, table and
field) and returns each table as a :class:`ResolvedTable`, before anything is installed,
backfilled or verified. The worker resolves a table the same way (:func:`resolve_table`)
when it first reads its rows and again whenever the table's columns changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from .codec import kind_of
from .computed import probe
from .config import Config, ConfigError, TableConfig
from .quoting import key_expr

__all__ = ["ResolvedTable", "resolve", "resolve_table", "check_schema", "live_columns", "drift"]


@dataclass(frozen=True)
class ResolvedTable:
    """A configured table with what the live schema says about it."""

    cfg: TableConfig
    columns: tuple[str, ...]          # all columns, table order
    value_columns: tuple[str, ...]    # those in the value
    primary_key: tuple[str, ...]      # for keyset pagination and reading rows back
    kinds: Mapping[str, str] = field(default_factory=dict)   # column -> gearsync.codec kind
    engine: str = "InnoDB"
    cascades: tuple[str, ...] = ()    # foreign keys whose ON DELETE/UPDATE changes this table's rows

    @property
    def name(self) -> str:
        return self.cfg.name

    def key_sql(self, alias: str) -> str:
        """SQL computing the Redis key of ``alias``'s row (the triggers' own expression)."""
        return key_expr(alias, self.cfg.key)

    def warnings(self) -> list[str]:
        """What install should tell the operator about this table (not errors)."""
        out = []
        if self.engine.lower() != "innodb":
            out.append(f"{self.cfg.display} uses {self.engine}, which has no transactions: a write that is "
                       "\"rolled back\" keeps its row and still reaches Redis in direct mode, and in safe mode "
                       "its outbox row is rolled back with nothing else, so that change never arrives "
                       "(convert it: ALTER TABLE … ENGINE=InnoDB)")
        for fk in self.cascades:
            out.append(f"{self.cfg.display}: foreign key {fk} changes rows by cascade, which fires no trigger "
                       "(a MySQL/MariaDB limit): those changes reach Redis only by `gearsync verify --repair`")
        return out


def live_columns(conn: Any, tables: Iterable[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
    """Column names in table order for (schema, table) pairs, from information_schema."""
    return {t: [c[0] for c in cols] for t in tables if (cols := _columns(conn, *t))}


def _columns(conn: Any, schema: str, table: str) -> list[tuple[str, str, bool]]:
    """(name, kind, nullable) of each column, in table order."""
    with conn.cursor() as cur:
        cur.execute("SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                    "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position", (schema, table))
        rows = [(_s(r[0]), _s(r[1]), _s(r[2]) == "YES") for r in cur.fetchall()]
        json_checked = _json_checked(cur, schema, table) if rows else set()
    return [(name, kind_of(t, name in json_checked), nullable) for name, t, nullable in rows]


#: The CHECK clauses of one table. MariaDB's check_constraints has the table's name (constraint
#: names are per table there: a column's check is named after the column); MySQL's has not
#: (names are per schema), its table comes from table_constraints.
_CHECKS = {
    "mariadb": ("SELECT check_clause FROM information_schema.check_constraints "
                "WHERE constraint_schema = %s AND table_name = %s"),
    "mysql": ("SELECT cc.check_clause FROM information_schema.table_constraints tc "
              "JOIN information_schema.check_constraints cc ON cc.constraint_schema = tc.constraint_schema "
              "AND cc.constraint_name = tc.constraint_name "
              "WHERE tc.constraint_type = 'CHECK' AND tc.constraint_schema = %s AND tc.table_name = %s"),
}


def _json_checked(cur: Any, schema: str, table: str) -> set[str]:
    """Columns with a ``json_valid(col)`` check: MariaDB's JSON type is LONGTEXT with that check
    (MySQL's is a real type, but a text column checked so there holds JSON just as well)."""
    cur.execute("SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = 'information_schema' "
                "AND table_name = 'CHECK_CONSTRAINTS' AND column_name = 'TABLE_NAME'")
    flavor = "mariadb" if int(cur.fetchone()[0]) else "mysql"
    cur.execute(_CHECKS[flavor], (schema, table))
    out = set()
    for (clause,) in cur.fetchall():
        m = re.fullmatch(r"\s*json_valid\(`((?:[^`]|``)+)`\)\s*", _s(clause))
        if m:
            out.add(m.group(1).replace("``", "`"))
    return out


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, (bytes, bytearray)) else str(v)


def _primary_key(conn: Any, schema: str, table: str) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT column_name FROM information_schema.statistics WHERE table_schema = %s "
                    "AND table_name = %s AND index_name = 'PRIMARY' ORDER BY seq_in_index", (schema, table))
        return [_s(r[0]) for r in cur.fetchall()]


def _engine_and_cascades(conn: Any, schema: str, table: str) -> tuple[str, tuple[str, ...]]:
    with conn.cursor() as cur:
        cur.execute("SELECT engine FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
                    (schema, table))
        row = cur.fetchone()
        cur.execute("SELECT constraint_name, delete_rule, update_rule FROM information_schema.referential_constraints "
                    "WHERE constraint_schema = %s AND table_name = %s", (schema, table))
        cascades = tuple(f"{_s(n)} (ON DELETE {_s(d)}, ON UPDATE {_s(u)})" for n, d, u in cur.fetchall()
                         if {_s(d), _s(u)} & {"CASCADE", "SET NULL", "SET DEFAULT"})
    return (_s(row[0]) if row and row[0] else "?"), cascades


def check_schema(cfg: Config, columns_of: Mapping[tuple[str, str], list[str]]) -> None:
    """Raise ConfigError if a configured table or column does not exist.

    ``columns_of`` maps (schema, table) to its column names in order (see :func:`live_columns`)."""
    for t in cfg.tables.values():
        problems = _missing(t, columns_of.get((t.schema, t.table)))
        if problems:
            raise ConfigError(f"{cfg.source}: tables.{t.display!r}{problems[0]}")


def _missing(t: TableConfig, cols: Sequence[str] | None) -> list[str]:
    """What of ``t`` the live columns lack (``.field: reason`` or ``: reason``)."""
    if cols is None:
        return [": no such table in the database"]
    known = set(cols)
    named = [("key", c) for c in t.key_columns] + [("columns", c) for c in (t.columns or ())]
    named += [("exclude", c) for c in t.exclude]
    named += [("column", t.column)] if t.column and t.column not in t.field_names else []
    return [f".{fld}: no column {c!r} in {t.display} (it has {', '.join(cols)})" for fld, c in named if c not in known]


def resolve_table(conn: Any, t: TableConfig, source: str = "<config>") -> ResolvedTable:
    """One configured table against the live database (see :func:`resolve`)."""
    where = f"{source}: tables.{t.display!r}"
    cols = _columns(conn, t.schema, t.table)
    problems = _missing(t, [c[0] for c in cols] if cols else None)
    if problems:
        raise ConfigError(where + problems[0])
    nullable = {name for name, _k, null in cols if null} & set(t.key_columns)
    if nullable:
        raise ConfigError(f"{where}.key: key column {sorted(nullable)[0]!r} is nullable "
                          "(a Redis key needs NOT NULL columns)")
    pk = _primary_key(conn, t.schema, t.table)
    if not pk:
        raise ConfigError(f"{where}: {t.display} has no primary key")
    names = [c[0] for c in cols]
    values = t.value_columns(names)
    if not values and not t.fields:
        raise ConfigError(f"{where}: no value column is left (columns/exclude)")
    kinds = {n: k for n, k, _ in cols}
    kinds.update(probe(conn, t, kinds, where))
    engine, cascades = _engine_and_cascades(conn, t.schema, t.table)
    return ResolvedTable(t, tuple(names), tuple(values), tuple(pk), kinds, engine, cascades)


def resolve(cfg: Config, conn: Any, only: Sequence[str] | None = None) -> list[ResolvedTable]:
    """Check ``cfg`` against the live database and resolve its tables (``only``: these names).

    Raises ConfigError naming the file, table and field for an unknown table or column, a
    nullable key column, or a table without a primary key."""
    tables = [cfg.table(n) for n in only] if only else list(cfg.tables.values())
    return [resolve_table(conn, t, cfg.source) for t in tables]


def drift(conn: Any, t: TableConfig, installed_pk: Sequence[str] | None = None) -> list[str]:
    """How a configured table's live schema no longer fits its config (or the primary key its
    triggers were installed with): one line per problem, none when it fits."""
    cols = _columns(conn, t.schema, t.table)
    out = [f"{t.display}{p}" for p in _missing(t, [c[0] for c in cols] if cols else None)]
    if cols and installed_pk is not None:
        pk = _primary_key(conn, t.schema, t.table)
        if list(pk) != list(installed_pk):
            out.append(f"{t.display}: primary key is now ({', '.join(pk)}), the triggers were installed for "
                       f"({', '.join(installed_pk)}): run `gearsync install` again")
    return out

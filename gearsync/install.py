"""Triggers for the tables of a config: generate (``gearsync triggers``), install, uninstall.

A configured table resolves against the live schema (:func:`resolve`) to its column order,
value columns and primary key; :func:`table_statements` turns it into trigger SQL:

* safe mode: :func:`gearsync.triggers.safe_triggers` with the config's key template, so the
  outbox row carries the rendered key and the value columns as a JSON object;
* direct mode: :func:`gearsync.triggers.direct_triggers` (one ``udf_json_object`` job per row
  to the ``gearsync_direct`` function, the outbox row's shape).

:func:`install` checks the whole config against the live database (unknown tables or
columns, nullable key columns) before it creates anything.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from .config import Config, ConfigError, TableConfig, check_schema, live_columns
from .outbox import driver_module, parse_mysql_url
from .triggers import direct_triggers, drop_triggers, render_script, safe_triggers, template_key_expr

__all__ = ["ResolvedTable", "resolve", "table_statements", "config_statements", "install", "uninstall",
           "connect", "triggers_script"]

log = logging.getLogger(__name__)


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
        return template_key_expr(alias, self.cfg.key)


def connect(url: str, **kw: Any) -> Any:
    """An autocommit DB-API connection (mysqlclient if installed, else PyMySQL)."""
    args = parse_mysql_url(url)
    args.pop("database", None)
    return driver_module().connect(**args, charset="utf8mb4", autocommit=True, **kw)


def _primary_keys(conn: Any, tables: Iterable[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    with conn.cursor() as cur:
        for schema, table in tables:
            cur.execute("SELECT column_name FROM information_schema.statistics WHERE table_schema = %s "
                        "AND table_name = %s AND index_name = 'PRIMARY' ORDER BY seq_in_index", (schema, table))
            out[(schema, table)] = [r[0] for r in cur.fetchall()]
    return out


def _nullable(conn: Any, schema: str, table: str) -> set[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                    "AND table_name = %s AND is_nullable = 'YES'", (schema, table))
        return {r[0] for r in cur.fetchall()}


def resolve(cfg: Config, conn: Any, only: Sequence[str] | None = None) -> list[ResolvedTable]:
    """Check ``cfg`` against the live database and resolve its tables (``only``: these names).

    Raises ConfigError naming the file, table and field for an unknown table or column, a
    nullable key column, or a table without a primary key."""
    tables = [cfg.table(n) for n in only] if only else list(cfg.tables.values())
    pairs = [(t.schema, t.table) for t in tables]
    cols = live_columns(conn, pairs)
    sub = Config(gearman=cfg.gearman, redis_url=cfg.redis_url, mysql_url=cfg.mysql_url,
                 tables={t.name: t for t in tables}, source=cfg.source)
    check_schema(sub, cols)
    pks = _primary_keys(conn, pairs)
    out: list[ResolvedTable] = []
    for t in tables:
        where = f"{cfg.source}: tables.{t.display!r}"
        nullable = _nullable(conn, t.schema, t.table) & set(t.key_columns)
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


def table_statements(rt: ResolvedTable, mode: str | None = None) -> list[str]:
    """The DROP/CREATE TRIGGER statements of one table (``mode`` overrides the config's)."""
    mode = mode or rt.cfg.mode
    t = rt.cfg
    if mode == "safe":
        return safe_triggers(t.schema, t.table, t.key_columns, rt.value_columns, key_template=t.key)
    if mode == "direct":
        return direct_triggers(t.schema, t.table, t.key, rt.value_columns, t.key_columns)
    raise ValueError(f"unknown mode {mode!r}: expected safe or direct")


def config_statements(tables: Sequence[ResolvedTable], mode: str | None = None) -> list[str]:
    return [s for rt in tables for s in table_statements(rt, mode)]


def triggers_script(cfg: Config, conn: Any, mode: str | None = None) -> str:
    """``gearsync triggers``: the SQL script (for the mysql client) of every configured table."""
    out: list[str] = []
    for rt in resolve(cfg, conn):
        out.append(f"-- {rt.cfg.display}: {mode or rt.cfg.mode} mode, key {rt.cfg.key}, value {rt.cfg.value}")
        out.append(render_script(table_statements(rt, mode)))
    return "\n".join(out)


def install(cfg: Config, conn: Any, mode: str | None = None) -> list[str]:
    """Check everything, then create the triggers of every configured table; their names."""
    tables = resolve(cfg, conn)  # raises before anything is created
    stmts = config_statements(tables, mode)
    with conn.cursor() as cur:
        for s in stmts:
            cur.execute(s)
    names = [rt.name for rt in tables]
    log.info("installed triggers on %d tables: %s", len(names), ", ".join(names))
    return names


def uninstall(cfg: Config, conn: Any) -> list[str]:
    """Drop the triggers of every configured table (a missing one is fine); the tables."""
    names: list[str] = []
    with conn.cursor() as cur:
        for t in cfg.tables.values():
            for s in drop_triggers(t.schema, t.table):
                cur.execute(s)
            names.append(t.name)
    return names

"""Triggers for the tables of a config: generate (``gearsync triggers``), install, uninstall.

Each configured table is first resolved against the live schema
(:func:`gearsync.schema.resolve`: unknown tables or columns, nullable key columns and tables
without a primary key are errors naming the file, table and field), so nothing is created
for a config that does not fit the database. :func:`table_statements` turns a resolved table
into trigger SQL:

* safe mode: :func:`gearsync.triggers.safe_triggers` with the config's key template, so the
  outbox row carries the rendered key and the value columns as a JSON object;
* direct mode: :func:`gearsync.triggers.direct_triggers` (one ``udf_json_object`` job per row
  to the ``gearsync_direct`` function, the outbox row's shape).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from .config import Config
from .schema import ResolvedTable, resolve
from .triggers import direct_triggers, drop_triggers, render_script, safe_triggers

__all__ = ["table_statements", "config_statements", "install", "uninstall", "triggers_script"]

log = logging.getLogger(__name__)


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

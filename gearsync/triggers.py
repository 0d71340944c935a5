"""Safe-mode (outbox) trigger SQL for any table.

For a table, :func:`safe_triggers` returns the statements that create its AFTER INSERT /
UPDATE / DELETE triggers. Each trigger, in the writer's own transaction:

1. inserts one row into ``gearsync.outbox``: the source table, the Redis key (``key_prefix`` +
   the key columns joined by ``:``), the old key when an UPDATE changed it, the op, and the
   value columns as a JSON object (MariaDB's native ``JSON_OBJECT``: byte-exact for every
   string, numbers as their SQL text);
2. rings gearmand: ``gman_do_background('gearsync', <outbox id>, <outbox id>)`` (workload and
   unique are the id; ``LAST_INSERT_ID()`` inside a trigger is the outbox id, and the
   application's own ``LAST_INSERT_ID()`` is restored when the trigger ends).

The worker turns the JSON object into the Redis value: one value column → its value (a NULL
deletes the key); several → the JSON object text. Key columns must be NOT NULL (a primary
key): a NULL key makes the outbox insert, and so the writer's statement, fail.

Identifiers and literals are written by :mod:`gearsync.quoting`, so the output is correct
under any ``sql_mode`` and no config text reaches SQL unquoted.
"""

from __future__ import annotations

from typing import Sequence

from .constants import DIRECT_FUNCTION, OUTBOX_SCHEMA, OUTBOX_TABLE, SAFE_FUNCTION
from .outbox import OUTBOX_DDL
from .quoting import key_expr, qualified as _qualified, quote_ident, quote_string

__all__ = ["safe_triggers", "direct_triggers", "drop_triggers", "trigger_names", "render_script",
           "install_section", "uninstall_section", "DOORBELLS"]

#: UDFs that can ring gearmand from a safe-mode trigger.
DOORBELLS = ("gman_do_background", "gearsync_send")


def trigger_names(table: str) -> dict[str, str]:
    """op → trigger name (``<table>_gearsync_ai`` / ``_au`` / ``_ad``)."""
    names = {op: f"{table}_gearsync_a{op[0]}" for op in ("insert", "update", "delete")}
    for n in names.values():
        if len(n) > 64:
            raise ValueError(f"trigger name {n!r} is longer than 64 characters")
    return names


def _key_expr(alias: str, key_columns: Sequence[str], prefix: str) -> str:
    parts: list[str] = [quote_string(prefix)] if prefix else []
    for i, col in enumerate(key_columns):
        if i:
            parts.append("':'")
        parts.append(f"{alias}.{quote_ident(col)}")
    return "CONCAT(" + ", ".join(parts) + ")"


def _row_expr(alias: str, value_columns: Sequence[str]) -> str:
    members = ", ".join(f"{quote_string(c)}, {alias}.{quote_ident(c)}" for c in value_columns)
    return f"JSON_OBJECT({members})"


def safe_triggers(
    schema: str,
    table: str,
    key_columns: Sequence[str],
    value_columns: Sequence[str],
    key_prefix: str | None = None,
    *,
    function: str = SAFE_FUNCTION,
    outbox: tuple[str, str] = (OUTBOX_SCHEMA, OUTBOX_TABLE),
    doorbell: str = "gearsync_send",
    key_template: str | None = None,
) -> list[str]:
    """The DROP/CREATE TRIGGER statements of one table, each a single SQL statement.

    ``key_prefix`` defaults to ``"<table>:"``; pass ``""`` for bare keys. Feed the list to a
    DB-API cursor one statement at a time, or :func:`render_script` it for the mysql client.
    ``doorbell`` is the UDF that rings gearmand with ``(function, id, id)``:
    ``gman_do_background`` waits for gearmand's ack (a round trip per row); a pipelined
    no-wait sender such as ``gearsync_send`` is cheaper and loses nothing here (a lost
    doorbell only leaves the row to the sweeper). ``key_template`` (a config key such as
    ``order:{shop_id}:{id}``) replaces ``key_prefix`` + the key columns joined by ``:``.
    """
    if doorbell not in DOORBELLS:
        raise ValueError(f"unknown doorbell {doorbell!r}: expected one of {', '.join(DOORBELLS)}")
    if isinstance(key_columns, str) or isinstance(value_columns, str):
        raise TypeError("key_columns and value_columns are sequences of column names")
    if not key_columns:
        raise ValueError("at least one key column is needed")
    if not value_columns:
        raise ValueError("at least one value column is needed")
    prefix = f"{table}:" if key_prefix is None else key_prefix
    target = _qualified(schema, table)
    ob = _qualified(*outbox)
    source = quote_string(f"{schema}.{table}")
    fn = quote_string(function)
    names = trigger_names(table)
    if key_template is not None:
        new_key, old_key = key_expr("NEW", key_template), key_expr("OLD", key_template)
    else:
        new_key, old_key = _key_expr("NEW", key_columns, prefix), _key_expr("OLD", key_columns, prefix)
    ring = f"  DO {doorbell}({fn}, LAST_INSERT_ID(), LAST_INSERT_ID());\n"
    key_same = f"CAST({new_key} AS BINARY) <=> CAST({old_key} AS BINARY)"
    old_row_still_there = _old_row_still_there(key_columns)
    cols = f"{ob} (`source`, `k`, `old_k`, `op`, `row`)"
    bodies = {
        "insert": f"  INSERT INTO {cols}\n    VALUES ({source}, {new_key}, NULL, 'insert', "
                  f"{_row_expr('NEW', value_columns)});\n",
        "update": f"  IF {key_same} THEN\n"
                  f"    INSERT INTO {cols}\n      VALUES ({source}, {new_key}, NULL, 'update', "
                  f"{_row_expr('NEW', value_columns)});\n"
                  f"  {ring}"
                  # UPDATE IGNORE that hits a duplicate key on a key change fires this trigger
                  # though the row stays where it was (MariaDB 10.11): then OLD's row still exists.
                  f"  ELSEIF NOT EXISTS (SELECT 1 FROM {target} WHERE {old_row_still_there}) THEN\n"
                  f"    INSERT INTO {cols}\n      VALUES ({source}, {new_key}, {old_key}, 'update', "
                  f"{_row_expr('NEW', value_columns)});\n"
                  f"  {ring}"
                  f"  END IF;\n",
        "delete": f"  INSERT INTO {cols}\n    VALUES ({source}, {old_key}, NULL, 'delete', NULL);\n",
    }
    out: list[str] = []
    for op, body in bodies.items():
        name = _qualified(schema, names[op])
        tail = "" if op == "update" else ring
        out.append(f"DROP TRIGGER IF EXISTS {name}")
        out.append(f"CREATE TRIGGER {name} AFTER {op.upper()} ON {target} FOR EACH ROW\nBEGIN\n{body}{tail}END")
    return out


def _old_row_still_there(key_columns: Sequence[str]) -> str:
    """WHERE condition: the row OLD names is still in the table. MariaDB 10.11 fires AFTER
    UPDATE for an UPDATE IGNORE whose key change hit a duplicate, though the row did not move:
    then this holds, and the trigger must send nothing."""
    return " AND ".join(
        f"{quote_ident(c)} = OLD.{quote_ident(c)} AND BINARY {quote_ident(c)} = BINARY OLD.{quote_ident(c)}"
        for c in key_columns)


def direct_triggers(
    schema: str,
    table: str,
    key_template: str,
    value_columns: Sequence[str],
    key_columns: Sequence[str] = (),
    *,
    function: str = DIRECT_FUNCTION,
    doorbell: str = "gearsync_send",
) -> list[str]:
    """Direct-mode triggers of a configured table: each sends one background job whose
    workload is ``udf_json_object(…)`` with the outbox row's shape, no outbox involved::

        {"source":"shop.users","op":"insert","k":"user:1","old_k":null,"json_row":{…the value columns…}}

    (``json_row`` is MariaDB's ``JSON_OBJECT`` of the value columns, nested as JSON by the
    UDF because its alias starts with ``json_``; ``old_k`` is set on an UPDATE that changed
    the key; a DELETE has ``"k"`` = the old key and no row). The limits of direct mode apply.
    With ``key_columns`` (the key template's columns), an UPDATE that changed the key sends
    nothing when the old row is still there (see :func:`_old_row_still_there`).
    """
    if doorbell not in DOORBELLS:
        raise ValueError(f"unknown doorbell {doorbell!r}: expected one of {', '.join(DOORBELLS)}")
    if not value_columns:
        raise ValueError("at least one value column is needed")
    target = _qualified(schema, table)
    source = quote_string(f"{schema}.{table}")
    fn = quote_string(function)
    names = trigger_names(table)
    new_key, old_key = key_expr("NEW", key_template), key_expr("OLD", key_template)

    def send(op: str, key: str, old: str, row: str) -> str:
        return (f"DO {doorbell}({fn}, udf_json_object({source} AS `source`, '{op}' AS `op`, {key} AS `k`, "
                f"{old} AS `old_k`, {row} AS `json_row`))")

    new_row = _row_expr("NEW", value_columns)
    if key_columns:
        update = (f"IF CAST({new_key} AS BINARY) <=> CAST({old_key} AS BINARY) THEN\n"
                  f"    {send('update', new_key, 'NULL', new_row)};\n"
                  f"  ELSEIF NOT EXISTS (SELECT 1 FROM {target} WHERE {_old_row_still_there(key_columns)}) THEN\n"
                  f"    {send('update', new_key, old_key, new_row)};\n"
                  f"  END IF")
    else:
        update = send("update", new_key,
                      f"IF(CAST({new_key} AS BINARY) <=> CAST({old_key} AS BINARY), NULL, {old_key})", new_row)
    bodies = {
        "insert": send("insert", new_key, "NULL", new_row),
        "update": update,
        "delete": send("delete", old_key, "NULL", "NULL"),
    }
    out: list[str] = []
    for op, body in bodies.items():
        name = _qualified(schema, names[op])
        out.append(f"DROP TRIGGER IF EXISTS {name}")
        out.append(f"CREATE TRIGGER {name} AFTER {op.upper()} ON {target} FOR EACH ROW\nBEGIN\n  {body};\nEND")
    return out


def drop_triggers(schema: str, table: str) -> list[str]:
    """The statements removing what :func:`safe_triggers` created."""
    return [f"DROP TRIGGER IF EXISTS {_qualified(schema, n)}" for n in trigger_names(table).values()]


def render_script(statements: Sequence[str]) -> str:
    """Statements as a script for the ``mysql``/``mariadb`` client (``DELIMITER $$`` around
    compound statements)."""
    lines: list[str] = []
    for stmt in statements:
        if "BEGIN\n" in stmt:
            lines += ["DELIMITER $$", stmt + "$$", "DELIMITER ;"]
        else:
            lines.append(stmt + ";")
    return "\n".join(lines) + "\n"


#: The safe-mode section of ``sql/install.sql`` sits between these two lines.
INSTALL_BEGIN = "-- BEGIN gearsync safe mode (generated by gearsync.triggers.install_section(); do not edit)"
INSTALL_END = "-- END gearsync safe mode"


def install_section() -> str:
    """The outbox and the safe-mode demo table ``test.test_safe`` with its triggers, as pasted
    into ``sql/install.sql`` (a test checks the file holds exactly this)."""
    return "\n".join([
        INSTALL_BEGIN,
        "-- The outbox: one row per change of a safe-mode table, written by its triggers in the",
        "-- writer's transaction; id is the change's version. gearsync workers delete applied rows.",
        OUTBOX_DDL.rstrip("\n"),
        "",
        "-- The safe-mode demo table: changes arrive as SET test_safe:<id> <name> / DEL test_safe:<id>.",
        "CREATE TABLE IF NOT EXISTS `test`.`test_safe` (",
        "  `id` INT NOT NULL PRIMARY KEY,",
        "  `name` VARCHAR(255)",
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;",
        render_script(safe_triggers("test", "test_safe", ["id"], ["name"], "test_safe:")).rstrip("\n"),
        INSTALL_END,
    ]) + "\n"


def uninstall_section() -> str:
    """The statements of ``sql/uninstall.sql`` that remove the safe-mode triggers."""
    return render_script(drop_triggers("test", "test_safe"))

"""Trigger SQL: safe mode (an outbox row per change) and direct mode (a job per change).

For a table, :func:`safe_triggers` returns the statements that create its AFTER INSERT /
UPDATE / DELETE triggers. Each trigger, in the writer's own transaction:

1. inserts one row into ``gearsync.outbox``: the source table, the Redis key (the config's
   key template rendered in SQL), the old key when an UPDATE changed it, the op, the row's
   primary key (``JSON_ARRAY``, binary parts as hex) and its version ``gearsync_seq()``;
2. rings gearmand: ``gearsync_send('gearsync', <outbox id>, <outbox id>)`` (``LAST_INSERT_ID()``
   inside a trigger is the outbox id, and the application's own ``LAST_INSERT_ID()`` is
   restored when the trigger ends).

The worker reads the committed row by its primary key and maps it (gearsync.mapping). A
trigger names only key and primary-key columns: adding, dropping, renaming or retyping any
other column cannot make the application's writes fail. :func:`direct_triggers` sends the
same facts as a job instead of an outbox row. Key columns must be NOT NULL.

Identifiers and literals are written by :mod:`gearsync.quoting`, so the output is correct
under any ``sql_mode`` and no config text reaches SQL unquoted.
"""

from __future__ import annotations

from typing import Sequence

from .constants import DIRECT_FUNCTION, OUTBOX_SCHEMA, OUTBOX_TABLE, SAFE_FUNCTION
from .outbox import OUTBOX_STATEMENTS, upgrade_statements
from .quoting import key_expr, qualified as _qualified, quote_ident, quote_string
from .codec import PK_HEX_KINDS

__all__ = ["safe_triggers", "direct_triggers", "drop_triggers", "trigger_names", "render_script",
           "install_section", "uninstall_section", "DOORBELLS", "pk_expr", "TRIGGER_UDFS"]

#: UDFs that can ring gearmand from a safe-mode trigger.
DOORBELLS = ("gman_do_background", "gearsync_send")
#: The library's functions the generated triggers call, each with a probe that calls it with no
#: effect (a NULL function sends nothing) and without waiting (``gearsync install`` and
#: ``gearsync status`` check them).
TRIGGER_UDFS = {"gearsync_seq": "SELECT gearsync_seq()", "gearsync_send": "SELECT gearsync_send(NULL, NULL)",
                "gearsync_send_change": "SELECT gearsync_send_change(NULL, NULL, NULL, NULL, NULL, NULL)"}

#: Errors a gearsync function called by a trigger raises when it was dropped by hand or
#: cannot be loaded (1305, 1122, 1123, 1126, 1128).
FUNCTION_ERRORS = (1305, 1122, 1123, 1126, 1128)
#: Errors of the outbox INSERT when a DBA changed gearsync's own tables under the triggers:
#: the outbox or its database dropped (1146, 1049), a column of it dropped, renamed or retyped
#: (1054, 1136, 1364, 1048, 1366, 1406, 1264, 1265, 1292), the definer's INSERT privilege on
#: it revoked (1142, 1143), a unique index added or its ids exhausted (1062, 167), the table
#: full (1114). Never lock waits or deadlocks: they can abort more than the statement, and a
#: trigger that went on after them would report a write the transaction no longer holds.
OUTBOX_ERRORS = (1146, 1049, 1054, 1136, 1364, 1048, 1366, 1406, 1264, 1265, 1292, 1142, 1143, 1062, 167, 1114,
                 *FUNCTION_ERRORS)


def _handler(errors: Sequence[int], body: str, indent: str) -> str:
    """A CONTINUE handler for ``errors`` running ``body`` (a statement, or ``BEGIN END``). A
    handler costs a writer nothing until it runs (a flag variable tested after every INSERT
    cost a 20,000-row INSERT a fifth of its speed)."""
    return f"{indent}DECLARE CONTINUE HANDLER FOR {', '.join(map(str, errors))}{body};\n"


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


def pk_expr(alias: str, pk: Sequence[tuple[str, str]]) -> str:
    """SQL naming a row by its primary key: ``JSON_ARRAY(NEW.a, HEX(NEW.b))`` — ``pk`` is
    (column, gearsync.codec kind) pairs; binary kinds travel as hex (see
    :data:`gearsync.scan.PK_HEX_KINDS`), which JSON cannot carry raw. Temporal values travel as
    the column's own text (``CAST(… AS CHAR)``): MySQL's JSON prints every DATETIME and TIME
    with six fractional digits, and MySQL 9.7 does not find a TIME(3) row by
    ``(t, id) IN (('12:00:00.500000', 1))`` (it does by ``'12:00:00.500'``, and by either text
    in a longer IN list); MariaDB's JSON prints the column's text already."""
    def part(c: str, kind: str) -> str:
        col = f"{alias}.{quote_ident(c)}"
        return f"HEX({col})" if kind in PK_HEX_KINDS else f"CAST({col} AS CHAR)" if kind == "temporal" else col
    return "JSON_ARRAY(" + ", ".join(part(c, kind) for c, kind in pk) + ")"


def _check(doorbell: str, key_columns: Sequence[str], value_columns: Sequence[str],
           pk: Sequence[tuple[str, str]] | None) -> None:
    if doorbell not in DOORBELLS:
        raise ValueError(f"unknown doorbell {doorbell!r}: expected one of {', '.join(DOORBELLS)}")
    if isinstance(key_columns, str) or isinstance(value_columns, str):
        raise TypeError("key_columns and value_columns are sequences of column names")
    if not key_columns:
        raise ValueError("at least one key column is needed")
    if not value_columns and not pk:
        raise ValueError("at least one value column is needed")


def _triggers(schema: str, table: str, bodies: dict[str, str], head: str = "") -> list[str]:
    """DROP + CREATE of each op's AFTER trigger with its body (after ``head``: a declaration)."""
    out: list[str] = []
    target = _qualified(schema, table)
    names = trigger_names(table)
    for op, body in bodies.items():
        q = _qualified(schema, names[op])
        out.append(f"DROP TRIGGER IF EXISTS {q}")
        out.append(f"CREATE TRIGGER {q} AFTER {op.upper()} ON {target} FOR EACH ROW\nBEGIN\n{head}{body}END")
    return out


def _update(target: str, new_key: str, old_key: str, still_there: str, same: str, moved: str) -> str:
    """An AFTER UPDATE body: ``same`` when the key did not change, else ``moved`` — unless the
    row did not move at all: MariaDB fires AFTER UPDATE for an UPDATE IGNORE whose key change
    hit a duplicate (10.11), and then OLD's row is still there."""
    return (f"  IF CAST({new_key} AS BINARY) <=> CAST({old_key} AS BINARY) THEN\n{same}"
            f"  ELSEIF NOT EXISTS (SELECT 1 FROM {target} WHERE {still_there}) THEN\n{moved}"
            f"  END IF;\n")


def safe_triggers(
    schema: str,
    table: str,
    key_columns: Sequence[str],
    value_columns: Sequence[str] = (),
    key_prefix: str | None = None,
    *,
    function: str = SAFE_FUNCTION,
    fallback: str = DIRECT_FUNCTION,
    outbox: tuple[str, str] = (OUTBOX_SCHEMA, OUTBOX_TABLE),
    doorbell: str = "gearsync_send",
    key_template: str | None = None,
    pk: Sequence[tuple[str, str]] | None = None,
) -> list[str]:
    """The DROP/CREATE TRIGGER statements of one table, each a single SQL statement.

    Each trigger inserts one outbox row in the writer's transaction — source, Redis key, the
    old key when an UPDATE changed it, op, and the version ``gearsync_seq()`` — then rings
    gearmand with ``(function, id, id)``. With ``pk`` ((column, kind) pairs of the primary
    key: what ``gearsync install`` generates) the row is named by its primary key and the
    worker reads the committed row itself, so the trigger mentions no value column: DDL on
    other columns cannot break it, and no value passes through SQL's JSON. Without it the
    trigger carries ``value_columns`` as ``JSON_OBJECT`` (the library's built-in shape).

    ``key_prefix`` defaults to ``"<table>:"``; pass ``""`` for bare keys; ``key_template``
    (a config key such as ``order:{shop_id}:{id}``) replaces ``key_prefix`` + the key columns
    joined by ``:``. ``doorbell``: ``gman_do_background`` waits for gearmand's ack (a round
    trip per row); ``gearsync_send`` does not and loses nothing here (a lost doorbell only
    leaves the row to the sweeper).

    An outbox INSERT that fails because gearsync's own tables were changed under the trigger
    (:data:`OUTBOX_ERRORS`: the outbox dropped, altered, its privilege revoked) does not fail
    the application's write: with ``pk`` the change is sent instead as a direct-mode job
    (``fallback``, naming the row like :func:`direct_triggers`), so it still arrives — with
    direct mode's exposure — while ``gearsync status`` reports the outbox broken; without
    ``pk`` it is lost. Feed the list to a DB-API cursor one statement at a time,
    or :func:`render_script` it for the mysql client.
    """
    _check(doorbell, key_columns, value_columns, pk)
    prefix = f"{table}:" if key_prefix is None else key_prefix
    target = _qualified(schema, table)
    source = quote_string(f"{schema}.{table}")
    if key_template is not None:
        new_key, old_key = key_expr("NEW", key_template), key_expr("OLD", key_template)
    else:
        new_key, old_key = _key_expr("NEW", key_columns, prefix), _key_expr("OLD", key_columns, prefix)
    ring = f"  DO {doorbell}({quote_string(function)}, LAST_INSERT_ID(), LAST_INSERT_ID());\n"
    if pk:
        cols = f"{_qualified(*outbox)} (`source`, `k`, `old_k`, `op`, `pk`, `ver`)"
        new_row = pk_expr("NEW", pk)
        still_there = _old_row_still_there([c for c, _ in pk])
    else:
        cols = f"{_qualified(*outbox)} (`source`, `k`, `old_k`, `op`, `row`, `ver`)"
        new_row = _row_expr("NEW", value_columns)
        still_there = _old_row_still_there(key_columns)

    def insert(key: str, old: str, op: str, row: str, indent: str = "  ") -> str:
        """One change: a block whose handler catches what a broken outbox raises (OUTBOX_ERRORS)
        and then sends the change as a direct-mode job naming the row instead (without ``pk``:
        nothing to name, the change is lost), so the application's write goes on. The handler
        guards its own send against a dropped function. A doorbell after a failed INSERT names
        an older outbox id: looked up, harmless."""
        inner = indent + "  "
        if pk:
            job = _direct_job(doorbell, fallback, source, op, key, old, "NULL" if op == "delete" else row, "")
            catch = (f"\n{inner}BEGIN\n{_handler(FUNCTION_ERRORS, ' BEGIN END', inner + '  ')}"
                     f"{inner}  {job.rstrip()}\n{inner}END")
        else:
            catch = " BEGIN END"
        return (f"{indent}BEGIN\n{_handler(OUTBOX_ERRORS, catch, inner)}"
                f"{inner}INSERT INTO {cols}\n{inner}  VALUES ({source}, {key}, {old}, '{op}', {row}, "
                f"gearsync_seq());\n{inner}{ring.lstrip()}{indent}END;\n")

    return _triggers(schema, table, {
        "insert": insert(new_key, "NULL", "insert", new_row),
        "update": _update(target, new_key, old_key, still_there, insert(new_key, "NULL", "update", new_row, "    "),
                          insert(new_key, old_key, "update", new_row, "    ")),
        "delete": insert(old_key, "NULL", "delete", "NULL"),
    })


def _direct_job(doorbell: str, function: str, source: str, op: str, key: str, old: str, row: str,
                indent: str) -> str:
    """The statement sending one direct-mode job naming a changed row (see :func:`direct_triggers`).
    With ``gearsync_send`` the library's ``gearsync_send_change`` builds the job's JSON in C — the
    server's JSON_OBJECT, HEX and a second evaluation of the key cost a bulk INSERT a quarter of its
    speed — and routes it by the key, so that with ``spread = on`` one key keeps one gearmand
    (``gman_do_background``'s third argument would be a unique id: none there)."""
    if doorbell == "gearsync_send":  # the same job, its JSON built in C: 1.3-1.5x faster in bulk
        return (f"{indent}DO gearsync_send_change({quote_string(function)}, {source}, '{op}', {key}, {old}, "
                f"{row});\n")
    old_hex = "NULL" if old == "NULL" else f"HEX({old})"
    return (f"{indent}DO {doorbell}({quote_string(function)}, JSON_OBJECT('s', {source}, 'o', '{op}', "
            f"'k', HEX({key}), 'ok', {old_hex}, 'pk', {row}));\n")


def _old_row_still_there(key_columns: Sequence[str]) -> str:
    """WHERE condition: the row OLD names is still in the table (see :func:`_update`)."""
    return " AND ".join(
        f"{quote_ident(c)} = OLD.{quote_ident(c)} AND BINARY {quote_ident(c)} = BINARY OLD.{quote_ident(c)}"
        for c in key_columns)


def direct_triggers(
    schema: str,
    table: str,
    key_template: str,
    pk: Sequence[tuple[str, str]],
    *,
    function: str = DIRECT_FUNCTION,
    doorbell: str = "gearsync_send",
) -> list[str]:
    """Direct-mode triggers of a configured table: each sends one background job naming the
    changed row, no outbox involved (the worker reads the committed row)::

        {"s": "shop.users", "o": "update", "k": "<hex of the key>", "ok": "<hex of the old key>" | null,
         "pk": [1]}

    (``ok`` is set on an UPDATE that changed the key; a DELETE sends the old key). With
    ``gearsync_send`` the key is also the route (``spread = on`` keeps a key on one gearmand). Keys travel
    as hex so that any bytes survive JSON; the payload is built from ASCII and the primary key's
    ``JSON_ARRAY`` only — by the library's ``gearsync_send_change`` in C, or with
    ``gman_do_background`` by the server's ``JSON_OBJECT``. The limits of direct mode apply.
    """
    _check(doorbell, ["-"], (), pk)
    if not pk:
        raise ValueError("the primary key is needed")
    target = _qualified(schema, table)
    source = quote_string(f"{schema}.{table}")
    new_key, old_key = key_expr("NEW", key_template), key_expr("OLD", key_template)

    def send(op: str, key: str, old: str, row: str, indent: str = "  ") -> str:
        return _direct_job(doorbell, function, source, op, key, old, row, indent)

    new_row = pk_expr("NEW", pk)
    return _triggers(schema, table, {
        "insert": send("insert", new_key, "NULL", new_row),
        "update": _update(target, new_key, old_key, _old_row_still_there([c for c, _ in pk]),
                          send("update", new_key, "NULL", new_row, "    "),
                          send("update", new_key, old_key, new_row, "    ")),
        "delete": send("delete", old_key, "NULL", "NULL"),
    }, _handler(FUNCTION_ERRORS, " BEGIN END", "  "))


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
        "-- writer's transaction; ver (gearsync_seq()) is the change's version. gearsync workers",
        "-- delete applied rows. gearsync.installed records the tables `gearsync install` set up.",
        render_script(OUTBOX_STATEMENTS).rstrip("\n"),
        "-- Columns added since the first release, for an outbox made before them (a procedure: the",
        "-- same script for MySQL, which has no ADD COLUMN IF NOT EXISTS, and MariaDB).",
        render_script(upgrade_statements()).rstrip("\n"),
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

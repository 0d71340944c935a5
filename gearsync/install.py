"""Triggers for the tables of a config: generate (``gearsync triggers``), install, uninstall.

Each configured table is first resolved against the live schema
(:func:`gearsync.schema.resolve`: unknown tables or columns, nullable key columns and tables
without a primary key are errors naming the file, table and field), and :func:`install` checks
what the triggers will need — the outbox (created or upgraded where missing) and the UDFs
they call — so nothing is created that would make an application's write fail.
:func:`table_statements` turns a resolved table into trigger SQL: safe mode
(:func:`gearsync.triggers.safe_triggers`) or direct mode
(:func:`gearsync.triggers.direct_triggers`), both naming the changed row by its primary key.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import redis as redis_lib

from . import __version__, outbox
from .config import Config, ConfigError
from .constants import DEFAULT_REDIS_URL
from .modules import require_modules
from .redis_clients import sync_client
from .schema import ResolvedTable, resolve
from .quoting import qualified
from .triggers import TRIGGER_UDFS, direct_triggers, drop_triggers, render_script, safe_triggers, trigger_names

__all__ = ["table_statements", "config_statements", "install", "uninstall", "triggers_script", "check_udfs",
           "Installed"]

log = logging.getLogger(__name__)

#: UDFs the generated triggers call, with a probe that calls each without side effects.
UDF_PROBES = {**TRIGGER_UDFS, "gearsync_udf_info": "SELECT gearsync_udf_info()"}


def table_statements(rt: ResolvedTable, mode: str | None = None) -> list[str]:
    """The DROP/CREATE TRIGGER statements of one table (``mode`` overrides the config's)."""
    mode = mode or rt.cfg.mode
    t = rt.cfg
    pk = [(c, rt.kinds.get(c, "text")) for c in rt.primary_key]
    if mode == "safe":
        return safe_triggers(t.schema, t.table, t.key_columns, key_template=t.key, pk=pk)
    if mode == "direct":
        return direct_triggers(t.schema, t.table, t.key, pk)
    raise ValueError(f"unknown mode {mode!r}: expected safe or direct")


def config_statements(tables: Sequence[ResolvedTable], mode: str | None = None) -> list[str]:
    return [s for rt in tables for s in table_statements(rt, mode)]


def _comment(text: str) -> str:
    """Config text fit for a ``--`` comment line: every character outside printable ASCII (a
    newline would end the comment and run the rest as SQL) as a \\x/\\u escape."""
    return "".join(ch if " " <= ch <= "~" else ascii(ch)[1:-1] for ch in text)


def triggers_script(cfg: Config, conn: Any, mode: str | None = None) -> str:
    """``gearsync triggers``: the SQL script (for the mysql client) of every configured table."""
    out: list[str] = []
    for rt in resolve(cfg, conn):
        out.append(_comment(f"-- {rt.cfg.display}: {mode or rt.cfg.mode} mode, key {rt.cfg.key}, "
                            f"value {rt.cfg.value}"))
        out.append(render_script([_lock(rt), *table_statements(rt, mode), "UNLOCK TABLES"]))
    return "\n".join(out)


def _lock(rt: ResolvedTable) -> str:
    """Write-locks the table while its triggers are replaced: a write waits a moment instead of
    falling between the old triggers and the new (it would fire none and never arrive)."""
    return f"LOCK TABLES {qualified(rt.cfg.schema, rt.cfg.table)} WRITE"


def _lockable(conn: Any, rt: ResolvedTable) -> bool:
    """Whether this login may :func:`_lock` the table (tried and released at once). Where it may
    not, creating triggers on a table that has none of ours is still fine (no write can fall
    between); replacing live ones is a ConfigError, raised before anything is created."""
    with conn.cursor() as cur:
        try:
            cur.execute(_lock(rt))
        except Exception as e:
            cur.execute("SELECT COUNT(*) FROM information_schema.triggers WHERE event_object_schema = %s "
                        "AND event_object_table = %s AND trigger_name IN %s",
                        (rt.cfg.schema, rt.cfg.table, tuple(trigger_names(rt.cfg.table).values())))
            if cur.fetchone()[0]:
                raise ConfigError(f"{rt.cfg.display}: cannot lock the table to replace its triggers "
                                  f"({type(e).__name__}: {e}); without the lock a write made while they are "
                                  "replaced would fire none and never arrive: grant this login LOCK TABLES on "
                                  f"`{rt.cfg.schema}`, or run install as a login that has it") from None
            return False
        cur.execute("UNLOCK TABLES")
        return True


def _replace_triggers(conn: Any, rt: ResolvedTable, statements: Sequence[str], lock: bool) -> None:
    """Run one table's DROP/CREATE TRIGGER statements, under :func:`_lock` when ``lock``."""
    with conn.cursor() as cur:
        if lock:
            cur.execute(_lock(rt))
        try:
            for s in statements:
                cur.execute(s)
        finally:
            if lock:
                cur.execute("UNLOCK TABLES")


def check_udfs(conn: Any) -> str:
    """Raise ConfigError unless the UDFs the triggers call are registered; the library version."""
    version = ""
    with conn.cursor() as cur:
        for name, probe in UDF_PROBES.items():
            try:
                cur.execute(probe)
                row = cur.fetchone()
            except Exception as e:
                raise ConfigError(f"the UDF {name} is not registered ({type(e).__name__}: {e}): install the library "
                                  "and register its functions first (make install-udf, then sql/install.sql as root)"
                                  ) from None
            if name == "gearsync_udf_info":
                version = row[0].decode() if isinstance(row[0], bytes) else str(row[0])
    if version != __version__:
        log.warning("the UDF library in the server is %s, this gearsync is %s: install the matching library "
                    "(make install-udf) and restart the server", version, __version__)
    return version


class Installed(list):  # type: ignore[type-arg]
    """The tables :func:`install` created triggers for, plus what it did and has to say."""

    def __init__(self, names: Sequence[str], done: Sequence[str], warnings: Sequence[str]) -> None:
        super().__init__(names)
        self.done = list(done)
        self.warnings = list(warnings)


def check_redis(cfg: Config, redis_url: str | None) -> None:
    """Raise ConfigError if a table needs a Redis module (``value = "redisjson"``) that the Redis
    at ``redis_url`` (else the config's, else the default) lacks, or that Redis cannot be asked."""
    if not any(t.value == "redisjson" for t in cfg.tables.values()):
        return
    url = redis_url or cfg.redis_url or DEFAULT_REDIS_URL
    client = sync_client(url, connect_timeout=5, socket_timeout=10)  # one Redis, a cluster or Sentinel
    try:
        require_modules(cfg, client, f" at {url}")
    except redis_lib.RedisError as e:
        raise ConfigError(f"{cfg.source}: value = \"redisjson\" needs the RedisJSON module; cannot ask the Redis at "
                          f"{url} whether it has it ({type(e).__name__}: {e})") from None
    finally:
        client.close()


def install(cfg: Config, conn: Any, mode: str | None = None, *, redis_url: str | None = None) -> Installed:
    """Check everything, then create the triggers of every configured table; their names.

    Before anything is created: every table resolves against the schema (its ``where``,
    ``fields`` and targets compile against the table), the UDFs the triggers call are
    registered, Redis has the modules the config needs (``redis_url``, else the config's), and
    the outbox exists with every column the triggers write (created or upgraded if not).
    Tables without transactions and tables changed by cascading foreign keys are reported in
    ``warnings``. A table's triggers are replaced with the table write-locked (writers wait a
    few milliseconds; none falls between the old triggers and the new)."""
    tables = resolve(cfg, conn)
    check_redis(cfg, redis_url)
    check_udfs(conn)
    locks = [_lockable(conn, rt) for rt in tables]
    try:
        done = outbox.ensure(conn)
    except Exception as e:
        raise ConfigError(f"cannot create or upgrade the outbox gearsync.outbox ({type(e).__name__}: {e}): "
                          "run sql/install.sql as root, or grant this login CREATE and ALTER on `gearsync`") from None
    for rt, lock in zip(tables, locks):
        _replace_triggers(conn, rt, table_statements(rt, mode), lock)
    for rt in tables:
        outbox.record_installed(conn, rt.name, mode or rt.cfg.mode, rt.primary_key)
    names = [rt.name for rt in tables]
    warnings = [w for rt in tables for w in rt.warnings()]
    for w in warnings:
        log.warning("%s", w)
    log.info("installed triggers on %d tables: %s", len(names), ", ".join(names))
    return Installed(names, done, warnings)


def uninstall(cfg: Config, conn: Any) -> list[str]:
    """Drop the triggers of every configured table (a missing one is fine); the tables."""
    names: list[str] = []
    with conn.cursor() as cur:
        for t in cfg.tables.values():
            for s in drop_triggers(t.schema, t.table):
                cur.execute(s)
            names.append(t.name)
    for name in names:
        try:
            outbox.record_installed(conn, name, None, ())
        except Exception:  # no record table (an outbox from before it): nothing to forget
            pass
    return names

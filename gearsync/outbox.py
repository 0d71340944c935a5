"""The safe-mode outbox: ``gearsync.outbox`` rows written by triggers, confirmed, then deleted.

Blocking DB-API code; the worker calls it from one dedicated thread. Driver: mysqlclient
(``MySQLdb``, C, releases the GIL while waiting) when installed, else PyMySQL (pure Python);
measured here, a batch of 512 ids claimed + deleted + committed took 5.0–5.5 ms with
mysqlclient and 7.6–8.0 ms with PyMySQL — either far above what triggers write. Each
connection runs READ COMMITTED with autocommit off, so that

* :meth:`Outbox.claim` — ``SELECT … WHERE id IN (…) FOR UPDATE`` — waits for the writers'
  transactions still open (at most ``lock_wait_timeout`` s), returns only committed rows (a
  rolled-back row is simply absent) and locks them against other workers and sweepers; on a
  lock-wait timeout it takes what is committed with ``SKIP LOCKED`` and leaves the long
  transactions to the sweeper. READ COMMITTED takes no gap locks, so a worker's read never
  blocks writers inserting new outbox rows.
* :meth:`Outbox.claim_stale` — the sweeper — ``… WHERE created < NOW(6) - age ORDER BY id
  LIMIT n FOR UPDATE SKIP LOCKED``: several workers sweep in parallel without waiting for
  each other or applying a row twice at once.
* :meth:`Outbox.finish` deletes the applied rows (one statement) and commits, releasing the
  locks. A worker that dies before that leaves its rows for the sweeper; applying twice is
  harmless because Redis writes are versioned.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

from .payload import _decode_json, _Num

if TYPE_CHECKING:
    from .config import TableConfig

__all__ = ["Outbox", "OutboxRow", "VersionedChange", "OutboxError", "OUTBOX_DDL", "parse_mysql_url",
           "versioned_changes"]

log = logging.getLogger(__name__)

OUTBOX_DDL = """CREATE DATABASE IF NOT EXISTS `gearsync`;
CREATE TABLE IF NOT EXISTS `gearsync`.`outbox` (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  `source` VARCHAR(192) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  `k` VARBINARY(3072) NOT NULL,
  `old_k` VARBINARY(3072) NULL,
  `op` ENUM('insert','update','delete') NOT NULL,
  `row` LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  `created` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
"""

_COLUMNS = "`id`, `k`, `old_k`, `op`, `row`, `source`"
_LOCK_WAIT_TIMEOUT = 1205
_DEADLOCK = 1213


class OutboxError(Exception):
    """The database could not be reached or refused; nothing was claimed or deleted."""


class OutboxRow(NamedTuple):
    id: int
    key: bytes
    old_key: bytes | None
    op: str
    row: str | None
    source: str | None = None


class TableChange(NamedTuple):
    """One commit-confirmed change of a source table, as a table handler receives it.

    ``row`` is the value columns decoded from JSON (None for a delete); ``version`` is the
    outbox id (for one key it grows in commit order)."""

    source: str
    op: str
    key: str
    old_key: str | None
    version: int
    row: dict[str, Any] | None


#: ``fn(change) -> value``: bytes/str (a string), a :class:`gearsync.mapping.Value`, or None (delete).
TableHandler = Callable[[TableChange], Any]


class VersionedChange(NamedTuple):
    """Write ``value`` to ``key`` (None: delete, leaving a tombstone) if stored version < version.

    ``hash``: write a Redis hash of these fields instead of ``value``; ``ttl``: expire the key."""

    key: bytes
    version: int
    value: bytes | None
    hash: dict[bytes, bytes] | None = None
    ttl: int | None = None


def _value(row: str | None) -> bytes | None:
    """The Redis value of an outbox row's JSON: one member → its value, several → the object."""
    if row is None:
        return None
    obj = _decode_json(row)
    if type(obj) is not dict:
        raise ValueError(f"outbox row is not a JSON object: {row[:80]!r}")
    if len(obj) != 1:
        return row.encode("utf-8")
    (v,) = obj.values()
    if v is None:
        return None
    if isinstance(v, _Num):
        return str.__str__(v).encode()
    if isinstance(v, str):
        return v.encode("utf-8")
    if isinstance(v, bool):
        return b"true" if v else b"false"
    return json.dumps(v, ensure_ascii=False, separators=(", ", ": ")).encode("utf-8")


def versioned_changes(rows: Sequence[OutboxRow],
                      tables: "Mapping[str, TableConfig] | None" = None,
                      handlers: "Mapping[str, TableHandler] | None" = None) -> list[VersionedChange]:
    """Outbox rows → Redis writes, each versioned with its outbox id.

    An UPDATE that changed the key also deletes the old key (same version). A NULL value
    deletes. A row of a table in ``tables`` (source "schema.table" → its config) is mapped by
    :func:`gearsync.mapped.mapped_change`; others keep the built-in shape (one value column → its value,
    several → the JSON object). A table with a handler (``handlers``: source → fn) gets what
    its handler returns for a :class:`TableChange`. A row whose JSON is unreadable, or whose
    handler raises, is logged and skipped (it will not get better).
    """
    from .mapped import mapped_change

    out: list[VersionedChange] = []
    for r in rows:
        table = tables.get(r.source) if tables and r.source else None
        fn = handlers.get(r.source) if handlers and r.source else None
        if fn is not None:
            out.extend(_handled(fn, r))
            continue
        if r.op == "delete":
            out.append(VersionedChange(bytes(r.key), r.id, None))
            continue
        try:
            if table is not None:
                change = mapped_change(table, bytes(r.key), r.id, r.row)
                if r.old_key is not None and bytes(r.old_key) != bytes(r.key):
                    out.append(VersionedChange(bytes(r.old_key), r.id, None))
                out.append(change)
                continue
            value = _value(r.row)
        except ValueError as e:
            log.error("outbox row %d (%r) skipped: %s", r.id, r.key, e)
            continue
        if r.old_key is not None and bytes(r.old_key) != bytes(r.key):
            out.append(VersionedChange(bytes(r.old_key), r.id, None))
        out.append(VersionedChange(bytes(r.key), r.id, value))
    return out


def _handled(fn: TableHandler, r: OutboxRow) -> list[VersionedChange]:
    """A table handler's result as versioned writes (old key deleted when the key changed)."""
    from .mapping import Value

    key = bytes(r.key)
    old = bytes(r.old_key) if r.old_key is not None and bytes(r.old_key) != key else None
    try:
        row = None if r.op == "delete" or r.row is None else json.loads(r.row)
        res = fn(TableChange(r.source or "", r.op, key.decode("utf-8", "surrogateescape"),
                             old.decode("utf-8", "surrogateescape") if old else None, r.id, row))
    except Exception:
        log.exception("outbox row %d (%r): the handler for %s raised; change skipped", r.id, key, r.source)
        return []
    out = [VersionedChange(old, r.id, None)] if old else []
    if res is None:
        out.append(VersionedChange(key, r.id, None))
    elif isinstance(res, (bytes, str)):
        out.append(VersionedChange(key, r.id, res.encode() if isinstance(res, str) else res))
    elif isinstance(res, Value):
        if res.kind == "hash":
            out.append(VersionedChange(key, r.id, None, res.data, res.ttl))  # type: ignore[arg-type]
        elif res.kind == "string":
            out.append(VersionedChange(key, r.id, res.data, None, res.ttl))  # type: ignore[arg-type]
        else:
            out.append(VersionedChange(key, r.id, None))
    else:
        log.error("outbox row %d: the handler for %s returned %s, not bytes, str, Value or None; "
                  "change skipped", r.id, r.source, type(res).__name__)
        return []
    return out


def parse_mysql_url(url: str) -> dict[str, Any]:
    """``mysql://user:pass@host:port/db?unix_socket=/path`` → connect() keyword arguments."""
    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb", "mysql+pymysql"):
        raise ValueError(f"not a mysql:// URL: {url!r}")
    kw: dict[str, Any] = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username) if parts.username else "root",
        "password": unquote(parts.password) if parts.password else "",
    }
    db = parts.path.lstrip("/")
    if db:
        kw["database"] = unquote(db)
    q = parse_qs(parts.query)
    if "unix_socket" in q:
        kw["unix_socket"] = q["unix_socket"][0]
    return kw


def redact_mysql_url(url: str) -> str:
    p = urlsplit(url)
    if p.password:
        return url.replace(":" + p.password + "@", ":***@", 1)
    return url


class Outbox:
    """One connection to the outbox's database; reconnects on the next call after a failure."""

    def __init__(self, url: str, *, lock_wait_timeout: int = 1, connect_timeout: float = 3.0,
                 read_timeout: float = 30.0, driver: str | None = None) -> None:
        self.url = url
        self.driver = driver
        self.lock_wait_timeout = lock_wait_timeout
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._conn: Any = None
        self.lock_timeouts = 0
        self.deadlocks = 0
        self.errors = 0

    # -- connection ---------------------------------------------------------------------
    def _connect(self) -> Any:
        kw = parse_mysql_url(self.url)
        kw.pop("database", None)
        driver = driver_module(self.driver)
        timeouts: dict[str, Any] = dict(connect_timeout=self.connect_timeout, read_timeout=self.read_timeout,
                                        write_timeout=self.read_timeout)
        if driver.__name__ == "MySQLdb":
            timeouts = {k: max(1, int(round(v))) for k, v in timeouts.items()}
        conn = driver.connect(**kw, charset="utf8mb4", autocommit=False, **timeouts)
        with conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            cur.execute("SET SESSION innodb_lock_wait_timeout = %s", (int(self.lock_wait_timeout),))
        return conn

    def _cursor(self) -> Any:
        if self._conn is None:
            try:
                self._conn = self._connect()
            except Exception as e:
                self.errors += 1
                raise OutboxError(f"connect {redact_mysql_url(self.url)}: {type(e).__name__}: {e}") from e
        return self._conn.cursor()

    def _fail(self, e: BaseException, what: str) -> OutboxError:
        """Drop the connection (its transaction is gone or unknown) and wrap the error."""
        self.errors += 1
        self.close()
        return OutboxError(f"{what}: {type(e).__name__}: {e}")

    def close(self) -> None:
        """Idempotent; an open transaction is rolled back by the server."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken
                pass

    # -- operations ---------------------------------------------------------------------
    def claim(self, ids: Sequence[int]) -> list[OutboxRow]:
        """Lock and return the committed rows among ``ids`` (waiting briefly for open ones)."""
        if not ids:
            return []
        marks = ",".join(["%s"] * len(ids))
        # FORCE INDEX: on a small table the optimizer would scan it all and wait on rows that
        # other workers hold (found by the 4-worker test as lock waits and deadlocks).
        sql = (f"SELECT {_COLUMNS} FROM `gearsync`.`outbox` FORCE INDEX (PRIMARY) WHERE `id` IN ({marks}) "
               "ORDER BY `id` FOR UPDATE")
        cur = self._cursor()
        try:
            try:
                cur.execute(sql, tuple(ids))
            except Exception as e:
                if _errno(e) != _LOCK_WAIT_TIMEOUT:
                    raise
                self.lock_timeouts += 1
                log.info("outbox: a transaction held %d ids for over %d s; taking the committed "
                         "ones, the sweeper gets the rest", len(ids), self.lock_wait_timeout)
                cur.execute(sql + " SKIP LOCKED", tuple(ids))
            return [OutboxRow(*r) for r in cur.fetchall()]
        except Exception as e:
            raise self._fail(e, "claim") from e
        finally:
            _quietly(cur.close)

    def claim_stale(self, older_than: float, limit: int) -> list[OutboxRow]:
        """Lock and return up to ``limit`` committed rows older than ``older_than`` seconds."""
        sql = (f"SELECT {_COLUMNS} FROM `gearsync`.`outbox` WHERE `created` < NOW(6) - INTERVAL %s "
               f"MICROSECOND ORDER BY `id` LIMIT %s FOR UPDATE SKIP LOCKED")
        cur = self._cursor()
        try:
            cur.execute(sql, (int(older_than * 1e6), int(limit)))
            return [OutboxRow(*r) for r in cur.fetchall()]
        except Exception as e:
            raise self._fail(e, "sweep") from e
        finally:
            _quietly(cur.close)

    def finish(self, ids: Sequence[int]) -> int:
        """Delete ``ids`` (applied) in one statement and commit; the number deleted.

        A deadlock (error 1213: InnoDB rolled the transaction back) is retried up to 3 times;
        the rows were applied, so deleting them in a new transaction is right.
        """
        sql = ("DELETE `gearsync`.`outbox` FROM `gearsync`.`outbox` FORCE INDEX (PRIMARY) "
               f"WHERE `id` IN ({','.join(['%s'] * len(ids))})")
        for attempt in range(1, 4):
            cur = self._cursor()
            try:
                n = cur.execute(sql, tuple(ids)) if ids else 0
                self._conn.commit()
                return int(n)
            except Exception as e:
                if _errno(e) == _DEADLOCK and attempt < 3:
                    self.deadlocks += 1
                    log.info("outbox delete: deadlock, retry %d", attempt)
                    _quietly(self._conn.rollback)
                    continue
                raise self._fail(e, "delete") from e
            finally:
                _quietly(cur.close)
        raise AssertionError("unreachable")

    def release(self) -> None:
        """Roll back: release the claimed rows without deleting them."""
        if self._conn is None:
            return
        try:
            self._conn.rollback()
        except Exception as e:
            raise self._fail(e, "rollback") from e

    def oldest_age(self) -> float | None:
        """Seconds since the oldest outbox row was written (the lag), None if empty. One index
        probe (the lowest id), so cheap enough to run every sweep."""
        cur = self._cursor()
        try:
            cur.execute("SELECT TIMESTAMPDIFF(MICROSECOND, `created`, NOW(6)) FROM `gearsync`.`outbox` "
                        "ORDER BY `id` LIMIT 1")
            row = cur.fetchone()
            self._conn.commit()
            return None if row is None else max(0.0, int(row[0]) / 1e6)
        except Exception as e:
            raise self._fail(e, "lag") from e
        finally:
            _quietly(cur.close)

    def stats(self) -> tuple[int, float | None]:
        """(rows in the outbox, age in seconds of the oldest one or None). Consistent read, no locks."""
        cur = self._cursor()
        try:
            cur.execute("SELECT COUNT(*), TIMESTAMPDIFF(MICROSECOND, MIN(`created`), NOW(6)) "
                        "FROM `gearsync`.`outbox`")
            count, age = cur.fetchone()
            self._conn.commit()
            return int(count), (None if age is None else max(0.0, int(age) / 1e6))
        except Exception as e:
            raise self._fail(e, "stats") from e
        finally:
            _quietly(cur.close)


def driver_module(name: str | None = None) -> Any:
    """The DB-API module: ``"mysqlclient"``, ``"pymysql"``, or None for ``$GEARSYNC_MYSQL_DRIVER``,
    else mysqlclient if installed, else PyMySQL."""
    name = name or os.environ.get("GEARSYNC_MYSQL_DRIVER") or None
    if name in (None, "mysqlclient", "MySQLdb"):
        try:
            import MySQLdb

            return MySQLdb
        except ImportError:
            if name is not None:
                raise
    if name in (None, "pymysql", "PyMySQL"):
        import pymysql

        return pymysql
    raise ValueError(f"unknown MySQL driver {name!r}: expected mysqlclient or pymysql")


def _quietly(fn: Any) -> None:
    """Call ``fn()`` ignoring errors (closing what a failure already broke)."""
    try:
        fn()
    except Exception:
        pass


def _errno(e: BaseException) -> int | None:
    args = getattr(e, "args", ())
    return args[0] if args and isinstance(args[0], int) else None

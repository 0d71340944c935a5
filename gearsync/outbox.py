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
from typing import Any, Sequence

from .connections import connect_mysql, redact
from .constants import OUTBOX_SCHEMA, OUTBOX_TABLE
from .changes import OutboxRow
from .quoting import qualified

__all__ = ["Outbox", "OutboxError", "OUTBOX_DDL", "OUTBOX_STATEMENTS", "upgrade_statements", "ensure",
           "record_installed", "installed", "ADDED_COLUMNS"]

log = logging.getLogger(__name__)

_OUTBOX = qualified(OUTBOX_SCHEMA, OUTBOX_TABLE)

_INSTALLED = qualified(OUTBOX_SCHEMA, "installed")
#: Columns added since the first release: (name, definition), added by :func:`ensure` (and by
#: install.sql) to an outbox created before them.
ADDED_COLUMNS = (
    ("pk", "TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL AFTER `row`"),
    ("ver", "BIGINT UNSIGNED NOT NULL DEFAULT 0 AFTER `pk`"),
)

#: The statements creating gearsync's tables where they are missing (each without its ``;``).
OUTBOX_STATEMENTS = (
    f"CREATE DATABASE IF NOT EXISTS `{OUTBOX_SCHEMA}`",
    f"""CREATE TABLE IF NOT EXISTS {_OUTBOX} (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  `source` VARCHAR(192) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  `k` VARBINARY(3072) NOT NULL,
  `old_k` VARBINARY(3072) NULL,
  `op` ENUM('insert','update','delete') NOT NULL,
  `row` LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  `pk` TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  `ver` BIGINT UNSIGNED NOT NULL DEFAULT 0,
  `created` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    f"""CREATE TABLE IF NOT EXISTS {_INSTALLED} (
  `source` VARCHAR(192) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  `mode` ENUM('safe','direct') NOT NULL,
  `pk` TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  `installed` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (`source`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
)
OUTBOX_DDL = "".join(stmt + ";\n" for stmt in OUTBOX_STATEMENTS)

_UPGRADE = qualified(OUTBOX_SCHEMA, "install_add_columns")


def upgrade_statements() -> list[str]:
    """The statements of ``sql/install.sql`` that add :data:`ADDED_COLUMNS` to an outbox made
    before them. MySQL has no ``ADD COLUMN IF NOT EXISTS`` (MariaDB only) and no anonymous
    compound statement outside a stored program (MariaDB's ``BEGIN NOT ATOMIC``), so a stored
    procedure checks information_schema and is dropped once called: the same script runs on
    both servers. (:func:`ensure` does the same from Python, statement by statement.)"""
    checks = "".join(
        f"  IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = '{OUTBOX_SCHEMA}'\n"
        f"                 AND table_name = '{OUTBOX_TABLE}' AND column_name = '{name}') THEN\n"
        f"    ALTER TABLE {_OUTBOX} ADD COLUMN `{name}` {definition};\n"
        "  END IF;\n"
        for name, definition in ADDED_COLUMNS)
    return [f"DROP PROCEDURE IF EXISTS {_UPGRADE}",
            f"CREATE PROCEDURE {_UPGRADE}()\nBEGIN\n{checks}END",
            f"CALL {_UPGRADE}()",
            f"DROP PROCEDURE {_UPGRADE}"]


def ensure(conn: Any) -> list[str]:
    """Create the outbox (and the record of installed tables) where missing and add the columns
    an older outbox lacks; what was done, one line each. Statement by statement, checking
    information_schema for the columns (MySQL has no ``ADD COLUMN IF NOT EXISTS``), so it needs
    no privilege to create routines."""
    done: list[str] = []
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
                    (OUTBOX_SCHEMA, OUTBOX_TABLE))
        existed = cur.fetchone() is not None
        for stmt in OUTBOX_STATEMENTS:
            cur.execute(stmt)
        if not existed:
            done.append(f"created {_OUTBOX}")
        cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                    "AND table_name = %s", (OUTBOX_SCHEMA, OUTBOX_TABLE))
        have = {(r[0].decode() if isinstance(r[0], bytes) else r[0]) for r in cur.fetchall()}
        for name, definition in ADDED_COLUMNS:
            if name not in have:
                cur.execute(f"ALTER TABLE {_OUTBOX} ADD COLUMN `{name}` {definition}")
                done.append(f"added {_OUTBOX}.`{name}`")
    return done


def record_installed(conn: Any, source: str, mode: str | None, pk: Sequence[str]) -> None:
    """Remember (``mode`` None: forget) how a table's triggers were installed (gearsync.schema.drift)."""
    with conn.cursor() as cur:
        if mode is None:
            cur.execute(f"DELETE FROM {_INSTALLED} WHERE `source` = %s", (source,))
        else:
            cur.execute(f"REPLACE INTO {_INSTALLED} (`source`, `mode`, `pk`) VALUES (%s, %s, %s)",
                        (source, mode, json.dumps(list(pk))))


def installed(conn: Any) -> dict[str, tuple[str, list[str]]]:
    """source → (mode, primary key columns) of every table whose triggers are installed."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT `source`, `mode`, `pk` FROM {_INSTALLED}")
        return {_text(s): (_text(m), json.loads(_text(p))) for s, m, p in cur.fetchall()}


def _row(r: Sequence[Any]) -> OutboxRow:
    """A claimed row (its age comes as the server's text: see connections.RAW_TYPES)."""
    id_, k, old_k, op, row, source, pk, ver, age = r
    return OutboxRow(id_, k, old_k, op, row, source, pk, ver, float(age or 0))


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, (bytes, bytearray)) else str(v)


_COLUMNS = ("`id`, `k`, `old_k`, `op`, `row`, `source`, `pk`, `ver`, "
            "TIMESTAMPDIFF(MICROSECOND, `created`, NOW(6)) / 1e6")
_LOCK_WAIT_TIMEOUT = 1205
_DEADLOCK = 1213


class OutboxError(Exception):
    """The database could not be reached or refused; nothing was claimed or deleted."""


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
        conn = connect_mysql(self.url, driver=self.driver, autocommit=False, connect_timeout=self.connect_timeout,
                             read_timeout=self.read_timeout, write_timeout=self.read_timeout)
        with conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            cur.execute("SET SESSION innodb_lock_wait_timeout = %s", (int(self.lock_wait_timeout),))
        return conn

    def connection(self) -> Any:
        """The connection (made if needed): source rows are read in the claim's transaction."""
        if self._conn is None:
            try:
                self._conn = self._connect()
            except Exception as e:
                self.errors += 1
                raise OutboxError(f"connect {redact(self.url)}: {type(e).__name__}: {e}") from e
        return self._conn

    def _cursor(self) -> Any:
        return self.connection().cursor()

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
        sql = (f"SELECT {_COLUMNS} FROM {_OUTBOX} FORCE INDEX (PRIMARY) WHERE `id` IN ({marks}) "
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
            return [_row(r) for r in cur.fetchall()]
        except Exception as e:
            raise self._fail(e, "claim") from e
        finally:
            _quietly(cur.close)

    def claim_stale(self, older_than: float, limit: int) -> list[OutboxRow]:
        """Lock and return up to ``limit`` committed rows older than ``older_than`` seconds."""
        sql = (f"SELECT {_COLUMNS} FROM {_OUTBOX} WHERE `created` < NOW(6) - INTERVAL %s "
               f"MICROSECOND ORDER BY `id` LIMIT %s FOR UPDATE SKIP LOCKED")
        cur = self._cursor()
        try:
            cur.execute(sql, (int(older_than * 1e6), int(limit)))
            return [_row(r) for r in cur.fetchall()]
        except Exception as e:
            raise self._fail(e, "sweep") from e
        finally:
            _quietly(cur.close)

    def finish(self, ids: Sequence[int]) -> int:
        """Delete ``ids`` (applied) in one statement and commit; the number deleted.

        A deadlock (error 1213: InnoDB rolled the transaction back) is retried up to 3 times;
        the rows were applied, so deleting them in a new transaction is right.
        """
        sql = (f"DELETE {_OUTBOX} FROM {_OUTBOX} FORCE INDEX (PRIMARY) "
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
            cur.execute(f"SELECT TIMESTAMPDIFF(MICROSECOND, `created`, NOW(6)) FROM {_OUTBOX} "
                        "ORDER BY `id` LIMIT 1")
            row = cur.fetchone()
            self._conn.commit()
            return None if row is None else max(0.0, int(row[0]) / 1e6)
        except Exception as e:
            raise self._fail(e, "lag") from e
        finally:
            _quietly(cur.close)

    def stats(self) -> tuple[int, float | None]:
        """(rows in the outbox, age in seconds of the oldest one or None). Consistent read, no locks.
        Fails (OutboxError) when the outbox lacks a column the triggers and the worker use."""
        cur = self._cursor()
        try:
            cur.execute(f"SELECT {_COLUMNS} FROM {_OUTBOX} LIMIT 0")
            cur.execute("SELECT COUNT(*), TIMESTAMPDIFF(MICROSECOND, MIN(`created`), NOW(6)) "
                        f"FROM {_OUTBOX}")
            count, age = cur.fetchone()
            self._conn.commit()
            return int(count), (None if age is None else max(0.0, int(age) / 1e6))
        except Exception as e:
            raise self._fail(e, "stats") from e
        finally:
            _quietly(cur.close)


def _quietly(fn: Any) -> None:
    """Call ``fn()`` ignoring errors (closing what a failure already broke)."""
    try:
        fn()
    except Exception:
        pass


def _errno(e: BaseException) -> int | None:
    args = getattr(e, "args", ())
    return args[0] if args and isinstance(args[0], int) else None

"""The configured tables as the worker reads them: one :class:`gearsync.scan.TableReader` each,
what no longer fits (schema drift), and the refresh of a table whose columns changed.

All reads run in the caller's database thread on the connection it hands in; a refresh runs
in a thread of its own with its own connections.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Mapping, Sequence

from .changes import OutboxRow
from .config import ConfigError, TableConfig
from .keys import lock_key
from .mapping import Read
from .redis_clients import endpoints
from .scan import TableReader
from .schema import resolve_table
from .verify import verify_table

__all__ = ["ConfiguredTables", "RowsBusy", "ReadFailed"]

log = logging.getLogger(__name__)

#: Seconds a worker holds the lock of a table's refresh (one worker of many refreshes a table).
REFRESH_LOCK_TTL = 600
#: Errors of a read that mean the table changed under its config: no such table, no such column.
_SCHEMA_ERRORS = (1146, 1054)
#: A locking read that waited too long (a long transaction) or was chosen as a deadlock's victim.
_BUSY_ERRORS = (1205, 1213)


class RowsBusy(Exception):
    """A writer still holds rows a locking read waited for: try again a moment later."""


class ReadFailed(Exception):
    """The read failed for another reason (the connection broke): its transaction is unknown."""


def _errno(e: BaseException) -> int | None:
    args = getattr(e, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


class ConfiguredTables:
    """``tables`` (source → config) read through ``connection()``; ``mysql_url`` and
    ``redis_url`` for the refreshes."""

    def __init__(self, tables: Mapping[str, TableConfig], connection: Callable[[], Any],
                 mysql_url: str | None, redis_url: str) -> None:
        self.tables = dict(tables)
        self._connection = connection
        self.readers = {name: TableReader(t, connection) for name, t in tables.items()}
        self.mysql_url, self.redis_url = mysql_url, redis_url
        #: source → why its changes cannot be mapped now (for status and metrics)
        self.drift: dict[str, str] = {}
        #: tables whose keys are being rewritten after their columns changed
        self.refreshing: dict[str, threading.Thread] = {}
        self.refreshes = 0

    def update(self, tables: Mapping[str, TableConfig], changed: Sequence[str]) -> None:
        """New mappings (a reload): ``changed`` tables get a new reader and their keys refreshed."""
        for name in changed:
            if name in tables:
                self.readers[name] = TableReader(tables[name], self._connection)
                self.drift.pop(name, None)
            else:
                self.readers.pop(name, None)
        self.tables = dict(tables)
        for name in changed:
            if name in tables:
                self.refresh(name)

    def read(self, rows: Sequence[OutboxRow], lock: bool = False) -> Read:
        """The committed rows the changes name, per configured table (``lock``: a locking read,
        see :meth:`gearsync.scan.TableReader.by_keys`). A table that no longer fits its config
        is left out and reported in :attr:`drift`. Raises :class:`RowsBusy` or
        :class:`ReadFailed`."""
        wanted: dict[str, list[list[Any]]] = {}
        for r in rows:
            if r.pk is not None and r.op != "delete" and r.source in self.readers:
                wanted.setdefault(r.source, []).append(json.loads(r.pk, parse_float=str))
        read: dict[str, Any] = {}
        for source, pks in wanted.items():
            reader = self.readers[source]
            try:
                read[source] = reader.by_keys(pks, lock)
                self.drift.pop(source, None)
                if reader.changed:
                    reader.changed = False
                    self.refresh(source)
            except ConfigError as e:  # a configured column is gone: report; its changes are skipped
                self.drift[source] = str(e)
            except Exception as e:
                if _errno(e) in _BUSY_ERRORS:
                    raise RowsBusy(f"{source}: {e}") from e
                if _errno(e) in _SCHEMA_ERRORS:  # the table or a key column is gone
                    self.drift[source] = f"{type(e).__name__}: {e}"
                    reader.forget()
                    continue
                raise ReadFailed(f"read {source}: {type(e).__name__}: {e}") from e
        return read

    def refresh(self, source: str) -> None:
        """A table's columns changed: rewrite its keys that no longer hold what its rows map to
        (``verify --repair`` in a thread of its own, with its own connections; versioned, so a
        live change is never overwritten). Rows changed from now on are written right anyway;
        this brings the others along without an operator having to remember it."""
        running = self.refreshing.get(source)
        if running is not None and running.is_alive():
            return
        cfg = self.tables[source]

        def refresh() -> None:
            try:
                with endpoints(self.mysql_url, self.redis_url, "refresh") as (conn, client):
                    # workers on many hosts all notice the change: one of them refreshes
                    lock = client.lock(lock_key("refresh:" + source), timeout=REFRESH_LOCK_TTL, blocking=False)
                    if not lock.acquire(blocking=False):
                        log.info("%s: another worker is refreshing its keys", source)
                        return
                    try:
                        rep = verify_table(resolve_table(conn, cfg), conn, client, repair=True, progress=False)
                    finally:
                        try:
                            lock.release()
                        except Exception as e:  # it outlived the lock's expiry
                            log.info("%s: refresh lock already gone: %s", source, e)
                self.refreshes += 1
                log.info("%s: its columns changed; refreshed its keys: %d rows, %d rewritten",
                         source, rep.rows, rep.repaired)
            except Exception as e:  # reported; `gearsync verify --repair` does the same by hand
                log.error("%s: its columns changed, and refreshing its keys failed: %s: %s (run "
                          "`gearsync verify --repair --table %s`)", source, type(e).__name__, e, source)

        log.info("%s: its columns changed; refreshing its keys in the background", source)
        t = threading.Thread(target=refresh, name=f"gearsync-refresh-{source}", daemon=True)
        self.refreshing[source] = t
        t.start()

"""``gearsync backfill``: load configured tables' existing rows into Redis.

Rows come from :meth:`gearsync.scan.TableReader.chunks` (primary-key chunks, keys computed by
the database with the triggers' own expression) and are mapped by
:func:`gearsync.mapping.row_changes`, so a backfilled value is byte-identical to what the
worker writes for the same row. One pipeline per chunk; a reader thread fetches the next
chunk while the current one is written.

Writes use ``versioned.lua`` in mode ``nx``: a key is written only if no version is stored for
it, and no version is stored. So a live change (safe mode stores its version) always wins
over the snapshot, whichever lands first, and a deleted row's tombstone keeps the snapshot
from resurrecting it.

Resumable: after each chunk the last primary key is stored in Redis under
:func:`gearsync.keys.checkpoint_key` (a JSON list, written once the chunk's writes are
answered). A later run continues after it; a finished run deletes it.

One backfill of a table at a time, wherever it runs: a run holds the lock
``gearsync:lock:backfill:<table>`` (a redis-py lock with a 120 s expiry, renewed as chunks
are written), and a second run, on this host or another, refuses to start while it is held.

``jobs`` > 1 splits a table's primary-key range over that many processes (a backfill is
CPU-bound in Python): the range is cut at the primary keys found at offsets total·i/N;
partition *i* covers (bound[i-1], bound[i]] and is an ordinary :func:`backfill_table` run
with its own checkpoint (``…#<i>``, ``[]`` before its first chunk), deleted when the
partition is done. The plan (``…#plan``, the bounds) stays until every partition is done, so
an interrupted run resumes with the same partitions: those whose checkpoint is gone are done.
The checkpoints are written before the plan (no MULTI: in a Redis Cluster they live in
different slots), so a plan that exists has all its checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from .config import Config
from .connections import connect_mysql
from .constants import DEFAULT_CHUNK, DEFAULT_REDIS_URL
from .keys import checkpoint_key, glob_escape, lock_key
from .mapping import row_changes, target_changes
from .modules import require_modules
from .progress import Progress
from .redis_clients import endpoints, sync_client
from .scan import TableReader, count_rows, plan_bounds
from .schema import ResolvedTable, resolve
from .versioned import APPLIED, ScriptRunner

__all__ = ["backfill", "backfill_table", "backfill_parallel", "BackfillResult", "BackfillRunning"]

log = logging.getLogger(__name__)


@dataclass
class BackfillResult:
    table: str
    rows: int
    written: int          # keys written (the others had a version: a live change won)
    seconds: float
    resumed_from: list[Any] | None

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


# -- checkpoints: primary keys as JSON (bytes as {"hex": …}) ---------------------------------------
def _pk_json(pk: Sequence[Any]) -> list[Any]:
    return [{"hex": bytes(v).hex()} if isinstance(v, (bytes, bytearray))
            else v if isinstance(v, (int, str)) or v is None else str(v) for v in pk]


def _pk_of(values: Sequence[Any]) -> list[Any]:
    return [bytes.fromhex(v["hex"]) if isinstance(v, dict) and "hex" in v else v for v in values]


def snapshot(rt: ResolvedTable, batch: Any) -> list[Any]:
    """A chunk's writes: each row's key, and its placements in the table's extra targets (a
    stream gets an "upsert" event per row it has no record of; a row that places nothing, or
    a stream's "delete", has nothing to snapshot)."""
    placed = [c for c in target_changes(rt.cfg, batch) if c.args and c.args[1:2] != (b"delete",)]
    return row_changes(rt.cfg, batch) + placed


# -- one process ---------------------------------------------------------------------------------
def _reader(conn: Any, rt: ResolvedTable, after: Any, chunk: int, out: "queue.Queue[Any]",
            stop: threading.Event, upto: Any = None) -> None:
    try:
        for item in TableReader(rt.cfg, lambda: conn, rt).chunks(after, chunk, upto):
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
        out.put(None)
    except BaseException as e:  # handed to the writer, which raises it
        out.put(e)


#: Seconds a backfill's lock lives unless renewed; it is renewed every LOCK_RENEW s.
LOCK_TTL, LOCK_RENEW = 120, 10


class BackfillRunning(RuntimeError):
    """Another run (here or on another host) holds the table's backfill lock."""


@contextlib.contextmanager
def _lock(client: Any, table: str) -> Iterator[Callable[[], None]]:
    """Hold the backfill lock of ``table``; yields ``renew()`` (cheap: it renews at most every
    LOCK_RENEW s). Raises BackfillRunning when another run holds it."""
    name = lock_key("backfill:" + table)
    lock = client.lock(name, timeout=LOCK_TTL, blocking=False)
    if not lock.acquire(blocking=False):
        raise BackfillRunning(f"a backfill of {table} is running elsewhere (its lock {name.decode(errors='replace')} "
                              f"expires in {client.ttl(name)} s unless renewed); wait for it, or delete the key "
                              "if that run is gone")
    last = [time.monotonic()]

    def renew() -> None:
        if time.monotonic() - last[0] >= LOCK_RENEW:
            lock.reacquire()
            last[0] = time.monotonic()

    try:
        yield renew
    finally:
        try:
            lock.release()
        except Exception as e:  # expired meanwhile: nothing to release
            log.warning("backfill %s: its lock was gone at the end (%s)", table, e)


def backfill_table(rt: ResolvedTable, conn: Any, client: Any, *, chunk: int = DEFAULT_CHUNK,
                   restart: bool = False, progress: bool = True, runner: ScriptRunner | None = None,
                   max_chunks: int | None = None, ck: bytes | None = None, upto: Sequence[Any] | None = None,
                   total: int | None = None, on_rows: Callable[[int], None] | None = None,
                   renew: Callable[[], None] | None = None) -> BackfillResult:
    """Backfill one resolved table; ``max_chunks`` stops early (the checkpoint stays).

    For one partition of a parallel backfill: ``ck`` is its checkpoint key, ``upto`` its last
    primary key, ``on_rows`` is told each chunk's rows. ``renew`` is called after each chunk
    (to keep the table's backfill lock)."""
    runner = runner or ScriptRunner(client)
    ck = ck or checkpoint_key(rt.name)
    after = None
    if restart:
        client.delete(ck)
    else:
        raw = client.get(ck)
        if raw:
            after = _pk_of(json.loads(raw)) or None
            if after:
                log.info("%s: resuming after primary key %s", rt.name, after)
    if total is None:
        total = count_rows(conn, rt)
    bar = Progress(f"backfill {rt.name}", total, enabled=progress)
    start = time.monotonic()
    rows = written = chunks = 0
    q: "queue.Queue[Any]" = queue.Queue(maxsize=2)
    stop = threading.Event()
    reader = threading.Thread(target=_reader, args=(conn, rt, after, chunk, q, stop, upto), daemon=True,
                              name="gearsync-backfill-reader")
    reader.start()
    finished = False
    pending: Any = None   # the chunk Redis is running while the next one is mapped
    pending_rows = 0
    try:
        while True:
            item = q.get()
            if isinstance(item, BaseException):
                raise item
            if item is not None:
                last, batch = item
                changes = snapshot(rt, batch)
            if pending is not None:
                written += runner.collect(pending).count(APPLIED)
                rows += pending_rows
                bar.add(pending_rows)
                if on_rows is not None:
                    on_rows(pending_rows)
                if renew is not None:
                    renew()
                chunks += 1
                pending = None
            if item is None:
                finished = True
                break
            if max_chunks is not None and chunks >= max_chunks:
                break
            pending = runner.send(changes, "nx", [("SET", ck, json.dumps(_pk_json(last)))])
            pending_rows = len(batch.rows)
    finally:
        if pending is not None:  # an error elsewhere: read the answers so the connection is clean
            try:
                runner.collect(pending)
            except Exception:
                pass
        stop.set()
        reader.join()
    if finished:
        client.delete(ck)
    bar.close()
    res = BackfillResult(rt.name, rows, written, time.monotonic() - start, after)
    log.info("backfill %s: %d rows, %d keys written, %.1f s (%.0f rows/s)%s", rt.name, rows, written,
             res.seconds, res.rate, "" if finished else "; interrupted, the checkpoint stays")
    return res


# -- several processes ---------------------------------------------------------------------------
def _part(rt: ResolvedTable, mysql_url: str, redis_url: str, ck: bytes, upto: Any, chunk: int,
          out: Any) -> None:
    conn = connect_mysql(mysql_url)
    client = sync_client(redis_url)
    try:
        res = backfill_table(rt, conn, client, chunk=chunk, progress=False, ck=ck, upto=upto, total=0,
                             on_rows=lambda n: out.put(("rows", n)))
        out.put(("done", res.rows, res.written))
    except BaseException as e:
        out.put(("error", f"{type(e).__name__}: {e}"))
        raise
    finally:
        conn.close()
        client.close()


def _plan(rt: ResolvedTable, conn: Any, client: Any, jobs: int, restart: bool
          ) -> tuple[int, bool, list[tuple[int, bytes, Any]]]:
    """(rows, resumed?, partitions still to do as (index, checkpoint key, last pk or None))."""
    plan_key = checkpoint_key(rt.name, "plan")
    if restart or client.get(plan_key) is None:  # a plan never written leaves its partitions behind
        old = list(client.scan_iter(match=glob_escape(checkpoint_key(rt.name)) + b"#*", count=1000))
        for key in [plan_key, *old] + ([checkpoint_key(rt.name)] if restart else []):
            client.delete(key)  # one key per DEL: in a cluster they live in different slots
    total = count_rows(conn, rt)
    raw = client.get(plan_key)
    if raw is None:
        bounds = plan_bounds(conn, rt, total, jobs)
        for i in range(len(bounds) + 1):  # the checkpoints first, the plan last
            client.set(checkpoint_key(rt.name, str(i)), json.dumps(_pk_json(bounds[i - 1])) if i else "[]")
        client.set(plan_key, json.dumps([_pk_json(b) for b in bounds]))
    else:
        bounds = [_pk_of(b) for b in json.loads(raw)]
        log.info("%s: resuming a backfill of %d partitions", rt.name, len(bounds) + 1)
    parts = [(i, checkpoint_key(rt.name, str(i)), bounds[i] if i < len(bounds) else None)
             for i in range(len(bounds) + 1)]
    return total, raw is not None, [p for p in parts if client.exists(p[1])]


def backfill_parallel(rt: ResolvedTable, mysql_url: str, redis_url: str, jobs: int, *,
                      chunk: int = DEFAULT_CHUNK, restart: bool = False, progress: bool = True,
                      renew: Callable[[], None] = lambda: None) -> BackfillResult:
    """One table's primary-key range split over ``jobs`` processes; ``renew`` is called while
    they run (the table's backfill lock)."""
    start = time.monotonic()
    with endpoints(mysql_url, redis_url, "backfill") as (conn, client):
        total, resumed, parts = _plan(rt, conn, client, jobs, restart)
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_part, args=(rt, mysql_url, redis_url, ck, upto, chunk, out), daemon=True,
                         name=f"gearsync-backfill-{i}") for i, ck, upto in parts]
    for p in procs:
        p.start()
    bar = Progress(f"backfill {rt.name} ({len(procs)} processes)", total, enabled=progress)
    rows = written = done = 0
    errors: list[str] = []
    try:
        while done + len(errors) < len(procs):
            renew()
            try:
                msg = out.get(timeout=0.5)
            except queue.Empty:
                if not any(p.is_alive() for p in procs) and out.empty():
                    errors.append("a backfill process died")
                    break
                continue
            if msg[0] == "rows":
                bar.add(msg[1])
            elif msg[0] == "done":
                done += 1
                rows += msg[1]
                written += msg[2]
            else:
                errors.append(msg[1])
    finally:
        for p in procs:
            p.join(timeout=30)
        bar.close()
    if errors:
        raise RuntimeError(f"backfill {rt.name}: {errors[0]} (the checkpoints stay: run it again to resume)")
    client = sync_client(redis_url)
    try:
        client.delete(checkpoint_key(rt.name, "plan"))
    finally:
        client.close()
    res = BackfillResult(rt.name, rows, written, time.monotonic() - start, ["partitions"] if resumed else None)
    log.info("backfill %s: %d rows in %d processes, %.1f s (%.0f rows/s)", rt.name, rows, len(procs),
             res.seconds, res.rate)
    return res


def backfill(cfg: Config, tables: Sequence[str] | None = None, *, mysql_url: str | None = None,
             redis_url: str | None = None, chunk: int = DEFAULT_CHUNK, restart: bool = False,
             progress: bool = True, jobs: int = 1) -> list[BackfillResult]:
    """``gearsync backfill``: every configured table (or ``tables``), one after the other;
    ``jobs`` > 1 splits each table's primary-key range over that many processes."""
    url = mysql_url or cfg.mysql_url
    redis_url = redis_url or cfg.redis_url or DEFAULT_REDIS_URL
    with endpoints(url, redis_url, "backfill") as (conn, client):
        resolved = resolve(cfg, conn, tables)
        require_modules(cfg.subset(rt.cfg for rt in resolved), client)
        out = []
        if jobs > 1:
            for rt in resolved:
                with _lock(client, rt.name) as renew:
                    out.append(backfill_parallel(rt, url, redis_url, jobs, chunk=chunk,  # type: ignore[arg-type]
                                                 restart=restart, progress=progress, renew=renew))
            return out
        runner = ScriptRunner(client)
        for rt in resolved:
            try:
                with _lock(client, rt.name) as renew:
                    out.append(backfill_table(rt, conn, client, chunk=chunk, restart=restart, progress=progress,
                                              runner=runner, renew=renew))
            except BackfillRunning:
                raise
            except Exception as e:
                raise RuntimeError(f"backfill {rt.name}: {type(e).__name__}: {e} (the checkpoint stays: "
                                   "run it again to resume)") from e
        return out

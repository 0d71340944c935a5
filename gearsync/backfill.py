"""``gearsync backfill``: load a configured table's existing rows into Redis.

Rows are read in primary-key order, ``chunk`` at a time, with keyset pagination
(``WHERE pk > last ORDER BY pk LIMIT n``: every chunk is an index range, however far in).
Each row's key and value columns are computed by MariaDB with the very expressions the
triggers use (the key template's ``CONCAT``, ``JSON_OBJECT`` of the value columns) and mapped
by :func:`gearsync.mapped.mapped_change`, so a backfilled value is byte-identical to what the
worker writes for the same row. One pipeline per chunk; a reader thread fetches the next
chunk while the current one is written.

Writes use ``versioned.lua`` in mode ``nx``: a key is written only if no version is stored for
it, and no version is stored. So a live change (safe mode stores its version) always wins
over the snapshot, whichever lands first, and a deleted row's tombstone keeps the snapshot
from resurrecting it.

Resumable: after each chunk the last primary key is stored in Redis under
``gearsync:backfill:<schema.table>`` (a JSON list, written in the same pipeline, after the
chunk's writes). A later run continues after it; a finished run deletes it.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import redis as redis_lib
from redis.exceptions import NoScriptError

from .config import Config
from .install import ResolvedTable, connect, resolve
from .mapped import mapped_changes
from .outbox import VersionedChange
from .progress import Progress
from .redis_sink import DEFAULT_TOMBSTONE_TTL, SCRIPT_CHUNK, VERSION_PREFIX, VERSIONED_LUA
from .triggers import quote_ident, quote_string

__all__ = ["backfill", "backfill_table", "BackfillResult", "checkpoint_key", "scan_rows", "ScriptRunner"]

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "gearsync:backfill:"
DEFAULT_CHUNK = 10000
_ALIAS = "_gs"


def checkpoint_key(table: str) -> str:
    return CHECKPOINT_PREFIX + table


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


_P = "\x00P"  # a placeholder while identifiers are spliced in; their % are doubled after


def _after(pk: Sequence[str]) -> str:
    """``(a, b) > (?, ?)`` spelled so that the optimizer makes it a range."""
    cols = [f"{_ALIAS}.{quote_ident(c)}" for c in pk]
    ors = []
    for i in range(len(cols)):
        eqs = [f"{cols[j]} = {_P}" for j in range(i)] + [f"{cols[i]} > {_P}"]
        ors.append("(" + " AND ".join(eqs) + ")")
    return "(" + " OR ".join(ors) + ")"


def _after_args(last: Sequence[Any]) -> list[Any]:
    args: list[Any] = []
    for i in range(len(last)):
        args += list(last[:i]) + [last[i]]
    return args


def select_sql(rt: ResolvedTable, resume: bool, upto: bool = False) -> str:
    """pk columns…, key, JSON_OBJECT(value columns) of the next chunk (DB-API ``%s`` params:
    the pk values to resume after, the last pk to include (``upto``), then the limit)."""
    t = rt.cfg
    pk = ", ".join(f"{_ALIAS}.{quote_ident(c)}" for c in rt.primary_key)
    members = ", ".join(f"{quote_string(c)}, {_ALIAS}.{quote_ident(c)}" for c in rt.value_columns)
    conds = ([_after(rt.primary_key)] if resume else []) + ([f"NOT {_after(rt.primary_key)}"] if upto else [])
    where = f" WHERE {' AND '.join(conds)}" if conds else ""
    sql = (f"SELECT {pk}, {rt.key_sql(_ALIAS)}, JSON_OBJECT({members}) "
           f"FROM {quote_ident(t.schema)}.{quote_ident(t.table)} AS {_ALIAS}{where} "
           f"ORDER BY {pk} LIMIT {_P}")
    return sql.replace("%", "%%").replace(_P, "%s")


def scan_rows(conn: Any, rt: ResolvedTable, after: Sequence[Any] | None = None,
              chunk: int = DEFAULT_CHUNK, upto: Sequence[Any] | None = None
              ) -> Iterator[tuple[list[Any], list[tuple[bytes, str | None]]]]:
    """Yield (last primary key, [(key, row JSON), …]) per chunk, in primary-key order, from
    after ``after`` (None: the first row) up to and including ``upto`` (None: the last)."""
    npk = len(rt.primary_key)
    bound = _after_args(upto) if upto else []
    sql_first, sql_next = select_sql(rt, False, bool(upto)), select_sql(rt, True, bool(upto))
    last = list(after) if after else None
    while True:
        with conn.cursor() as cur:
            if last is None:
                cur.execute(sql_first, (*bound, chunk))
            else:
                cur.execute(sql_next, (*_after_args(last), *bound, chunk))
            rows = cur.fetchall()
        if not rows:
            return
        last = list(rows[-1][:npk])
        yield last, [(_bytes(r[npk]), _text(r[npk + 1])) for r in rows]
        if len(rows) < chunk:
            return


def _bytes(v: Any) -> bytes:
    return v if isinstance(v, bytes) else str(v).encode("utf-8", "surrogatepass")


def _text(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    return bytes(v).decode("utf-8")


def _jsonable(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray)):
        return {"hex": bytes(v).hex()}
    if isinstance(v, (int, str)) or v is None:
        return v
    return str(v)


def _unjson(v: Any) -> Any:
    if isinstance(v, dict) and "hex" in v:
        return bytes.fromhex(v["hex"])
    return v


def _bulk(a: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(a), a)


def pack_call(sha: bytes, changes: Sequence[VersionedChange], tombstone_ttl: int, mode: str) -> bytes:
    """One ``EVALSHA`` of ``versioned.lua`` as RESP bytes: the arguments of
    :func:`gearsync.redis_sink.script_args`, packed without redis-py's per-argument cost
    (which was half of a backfill's time)."""
    keys: list[bytes] = []
    argv: list[bytes] = [_bulk(b"%d" % tombstone_ttl), _bulk(mode.encode())]
    nargs = 2
    for c in changes:
        k = bytes(c.key)
        keys.append(_bulk(k))
        keys.append(_bulk(VERSION_PREFIX + k))
        ver = b"" if mode == "cas" and not c.version else b"%d" % c.version
        ttl = b"%d" % (c.ttl or 0)
        if c.hash is not None:
            argv.append(_bulk(ver) + b"$1\r\nh\r\n" + _bulk(ttl) + _bulk(b"%d" % (2 * len(c.hash))))
            argv += [_bulk(f) + _bulk(v) for f, v in c.hash.items()]
            nargs += 4 + 2 * len(c.hash)
        elif c.value is None:
            argv.append(_bulk(ver) + b"$1\r\nd\r\n" + _bulk(ttl) + b"$1\r\n0\r\n")
            nargs += 4
        else:
            argv.append(_bulk(ver) + b"$1\r\ns\r\n" + _bulk(ttl) + b"$1\r\n1\r\n" + _bulk(c.value))
            nargs += 5
    nkeys = len(keys)
    head = b"*%d\r\n$7\r\nEVALSHA\r\n%s%s" % (3 + nkeys + nargs, _bulk(sha), _bulk(b"%d" % nkeys))
    return head + b"".join(keys) + b"".join(argv)


class ScriptRunner:
    """``versioned.lua`` through a synchronous Redis client (backfill and repair): one pipeline
    of pre-packed EVALSHA calls per chunk."""

    def __init__(self, client: "redis_lib.Redis", tombstone_ttl: int = DEFAULT_TOMBSTONE_TTL) -> None:
        self.redis = client
        self.ttl = tombstone_ttl
        self.sha = str(client.script_load(VERSIONED_LUA))

    def send(self, changes: Sequence[VersionedChange], mode: str, extra: Sequence[Sequence[Any]] = ()
             ) -> tuple[Any, Sequence[VersionedChange], str, Sequence[Sequence[Any]], int]:
        """Send the calls for ``changes`` (then ``extra`` commands such as ``("SET", k, v)``)
        without waiting; :meth:`collect` reads the answers. Meanwhile the caller can prepare
        the next chunk while Redis runs this one."""
        sha = self.sha.encode()
        packed = [pack_call(sha, changes[i:i + SCRIPT_CHUNK], self.ttl, mode)
                  for i in range(0, len(changes), SCRIPT_CHUNK)]
        conn = self.redis.connection_pool.get_connection()
        try:
            conn.send_packed_command(packed + [conn.pack_command(*cmd)[0] for cmd in extra])
        except BaseException:
            conn.disconnect()
            self.redis.connection_pool.release(conn)
            raise
        return conn, changes, mode, extra, len(packed)

    def collect(self, handle: tuple[Any, Sequence[VersionedChange], str, Sequence[Sequence[Any]], int],
                retry: bool = True) -> list[bool]:
        """Per change True if written; raises the first error Redis answered (a script
        forgotten by a restarted Redis is loaded again and the calls re-sent once)."""
        conn, changes, mode, extra, n = handle
        replies: list[Any] = []
        try:
            for _ in range(n + len(extra)):
                try:
                    replies.append(conn.read_response())
                except redis_lib.ResponseError as e:
                    replies.append(e)
        except BaseException:
            conn.disconnect()
            raise
        finally:
            self.redis.connection_pool.release(conn)
        errors = [r for r in replies if isinstance(r, Exception)]
        if errors:
            if retry and all(isinstance(e, NoScriptError) for e in errors):
                self.sha = str(self.redis.script_load(VERSIONED_LUA))
                return self.collect(self.send(changes, mode, extra), retry=False)
            raise errors[0]
        return [bool(x) for reply in replies[:n] for x in reply]

    def run(self, changes: Sequence[VersionedChange], mode: str, extra: Sequence[Sequence[Any]] = ()
            ) -> list[bool]:
        """:meth:`send` then :meth:`collect`."""
        return self.collect(self.send(changes, mode, extra))


def _reader(conn: Any, rt: ResolvedTable, after: Any, chunk: int, out: "queue.Queue[Any]",
            stop: threading.Event, upto: Any = None) -> None:
    try:
        for item in scan_rows(conn, rt, after, chunk, upto):
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


def count_rows(conn: Any, rt: ResolvedTable) -> int:
    with conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {quote_ident(rt.cfg.schema)}.{quote_ident(rt.cfg.table)}")
        return int(cur.fetchone()[0])


def backfill_table(rt: ResolvedTable, conn: Any, client: "redis_lib.Redis", *, chunk: int = DEFAULT_CHUNK,
                   restart: bool = False, progress: bool = True, runner: ScriptRunner | None = None,
                   max_chunks: int | None = None, ck: str | None = None, upto: Sequence[Any] | None = None,
                   total: int | None = None, on_rows: Callable[[int], None] | None = None) -> BackfillResult:
    """Backfill one resolved table; ``max_chunks`` stops early (the checkpoint stays).

    For one partition of a parallel backfill (:mod:`gearsync.backfill_parallel`): ``ck`` is
    its checkpoint key, ``upto`` its last primary key, ``on_rows`` is told each chunk's rows."""
    runner = runner or ScriptRunner(client)
    ck = ck or checkpoint_key(rt.name)
    after = None
    if restart:
        client.delete(ck)
    else:
        raw = client.get(ck)
        if raw:
            after = [_unjson(v) for v in json.loads(raw)] or None
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
                changes = mapped_changes(rt.cfg, batch)
            if pending is not None:
                written += sum(runner.collect(pending))
                rows += pending_rows
                bar.add(pending_rows)
                if on_rows is not None:
                    on_rows(pending_rows)
                chunks += 1
                pending = None
            if item is None:
                finished = True
                break
            if max_chunks is not None and chunks >= max_chunks:
                break
            checkpoint = json.dumps([_jsonable(v) for v in last])
            pending = runner.send(changes, "nx", [("SET", ck, checkpoint)])
            pending_rows = len(batch)
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


def backfill(cfg: Config, tables: Sequence[str] | None = None, *, mysql_url: str | None = None,
             redis_url: str | None = None, chunk: int = DEFAULT_CHUNK, restart: bool = False,
             progress: bool = True, jobs: int = 1) -> list[BackfillResult]:
    """``gearsync backfill``: every configured table (or ``tables``), one after the other;
    ``jobs`` > 1 splits each table's primary-key range over that many processes."""
    url = mysql_url or cfg.mysql_url
    if not url:
        raise ValueError("backfill needs a MySQL URL ([mysql] url in the config, or --mysql)")
    conn = connect(url)
    client = redis_lib.Redis.from_url(redis_url or cfg.redis_url)
    try:
        resolved = resolve(cfg, conn, tables)
        runner = ScriptRunner(client)
        if jobs > 1:
            from .backfill_parallel import backfill_parallel

            return [backfill_parallel(rt, url, redis_url or cfg.redis_url, jobs, chunk=chunk, restart=restart,
                                      progress=progress) for rt in resolved]
        return [backfill_table(rt, conn, client, chunk=chunk, restart=restart, progress=progress, runner=runner)
                for rt in resolved]
    finally:
        conn.close()
        client.close()

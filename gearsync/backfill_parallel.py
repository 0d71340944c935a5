"""``gearsync backfill --jobs N``: one table's primary-key range split over N processes.

A backfill is CPU-bound in Python (decoding and re-encoding each row's JSON so that it is
byte-identical to the worker's); N processes use N cores. The range is cut at the primary keys
found at offsets total·i/N (``ORDER BY pk LIMIT 1 OFFSET k``); partition *i* covers
(bound[i-1], bound[i]]. Each partition is an ordinary :func:`gearsync.backfill.backfill_table`
run with its own checkpoint ``gearsync:backfill:<table>#<i>`` (the last primary key written,
``[]`` before its first chunk), deleted when the partition is done. The plan
``gearsync:backfill:<table>#plan`` (the bounds) is kept until every partition is done, so an
interrupted run resumes with the same partitions: the ones whose checkpoint is gone are done.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import queue
import time
from typing import Any

import redis as redis_lib

from .backfill import (BackfillResult, _jsonable, _unjson, backfill_table, checkpoint_key,
                       count_rows)
from .install import ResolvedTable, connect
from .progress import Progress
from .triggers import quote_ident

__all__ = ["backfill_parallel", "plan_bounds"]

log = logging.getLogger(__name__)


def plan_bounds(conn: Any, rt: ResolvedTable, total: int, jobs: int) -> list[list[Any]]:
    """The primary keys that end partitions 0 … jobs-2 (fewer for a small table)."""
    pk = ", ".join(quote_ident(c) for c in rt.primary_key)
    sql = (f"SELECT {pk} FROM {quote_ident(rt.cfg.schema)}.{quote_ident(rt.cfg.table)} "
           f"ORDER BY {pk} LIMIT 1 OFFSET \x00P").replace("%", "%%").replace("\x00P", "%s")
    bounds: list[list[Any]] = []
    with conn.cursor() as cur:
        for i in range(1, jobs):
            off = total * i // jobs - 1
            if off < 0:
                continue
            cur.execute(sql, (off,))
            row = cur.fetchone()
            if row is not None and (not bounds or list(row) != bounds[-1]):
                bounds.append(list(row))
    return bounds


def _part(rt: ResolvedTable, mysql_url: str, redis_url: str, ck: str, upto: Any, chunk: int,
          out: Any) -> None:
    conn = connect(mysql_url)
    client = redis_lib.Redis.from_url(redis_url)
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


def backfill_parallel(rt: ResolvedTable, mysql_url: str, redis_url: str, jobs: int, *, chunk: int = 10000,
                      restart: bool = False, progress: bool = True) -> BackfillResult:
    conn = connect(mysql_url)
    client = redis_lib.Redis.from_url(redis_url)
    base = checkpoint_key(rt.name)
    plan_key = base + "#plan"
    start = time.monotonic()
    try:
        if restart:
            glob = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in base) + "#*"
            client.delete(plan_key, base, *client.keys(glob))
        total = count_rows(conn, rt)
        raw = client.get(plan_key)
        resumed = raw is not None
        if raw is None:
            bounds = plan_bounds(conn, rt, total, jobs)
            pipe = client.pipeline(transaction=True)
            pipe.set(plan_key, json.dumps([[_jsonable(v) for v in b] for b in bounds]))
            for i in range(len(bounds) + 1):
                pipe.set(f"{base}#{i}", json.dumps([_jsonable(v) for v in bounds[i - 1]]) if i else "[]")
            pipe.execute()
        else:
            bounds = [[_unjson(v) for v in b] for b in json.loads(raw)]
            log.info("%s: resuming a backfill of %d partitions", rt.name, len(bounds) + 1)
        parts = [(i, f"{base}#{i}", bounds[i] if i < len(bounds) else None) for i in range(len(bounds) + 1)]
        parts = [p for p in parts if client.exists(p[1])]
    finally:
        conn.close()
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
        client_done = not errors
        bar.close()
    try:
        if client_done:
            client.delete(plan_key)
    finally:
        client.close()
    if errors:
        raise RuntimeError(f"backfill {rt.name}: {errors[0]} (the checkpoints stay: run it again to resume)")
    res = BackfillResult(rt.name, rows, written, time.monotonic() - start, ["partitions"] if resumed else None)
    log.info("backfill %s: %d rows in %d processes, %.1f s (%.0f rows/s)", rt.name, rows, len(procs),
             res.seconds, res.rate)
    return res

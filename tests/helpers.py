"""Helpers shared by the tests (not tests themselves): waiting, running coroutines with a hard
timeout, and reading the safe-mode demo table and Redis side by side."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

from gearsync.testing.processes import wait_for
from gearsync.testing.sqlserver import server_name

R = TypeVar("R")

#: The checkout the tests run from.
REPO_ROOT = Path(__file__).resolve().parents[1]
#: The database server the suite runs against: "mariadb" or "mysql" (GEARSYNC_TEST_SERVER).
SERVER = server_name()


def run(coro: Awaitable[R], timeout: float = 30.0) -> R:
    """Run a coroutine with a hard timeout so a hang fails the test instead of the suite."""
    async def bounded() -> R:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


async def until(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def execute(conn: Any, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def redis_state(r: Any, match: bytes = b"test_safe:*") -> dict[bytes, bytes]:
    """Every key of Redis matching ``match`` with its value (a Redis Cluster client scans every
    primary; one GET per key, so keys of any slot)."""
    keys = sorted(set(r.scan_iter(match=match, count=1000)))
    if not keys:
        return {}
    pipe = r.pipeline(transaction=False)
    for k in keys:
        pipe.get(k)
    return {k: v for k, v in zip(keys, pipe.execute()) if v is not None}


def table_state(conn: Any) -> dict[bytes, bytes]:
    """What Redis must hold for test.test_safe: a key per row whose name is not NULL."""
    rows = execute(conn, "SELECT id, name FROM test.test_safe")
    return {f"test_safe:{i}".encode(): n.encode() for i, n in rows if n is not None}


def outbox_size(conn: Any) -> int:
    return int(execute(conn, "SELECT COUNT(*) FROM gearsync.outbox")[0][0])


def converge(conn: Any, r: Any, timeout: float = 30.0) -> float:
    """Wait until the outbox is empty and Redis equals the table; the seconds it took."""
    t0 = time.monotonic()
    try:
        wait_for(lambda: outbox_size(conn) == 0 and redis_state(r) == table_state(conn), timeout, 0.05,
                 "Redis to equal test.test_safe with an empty outbox")
    except AssertionError:
        want, got = table_state(conn), redis_state(r)
        missing = {k: v for k, v in want.items() if k not in got}
        phantom = {k: v for k, v in got.items() if k not in want}
        stale = {k: (got[k], v) for k, v in want.items() if k in got and got[k] != v}
        raise AssertionError(f"outbox {outbox_size(conn)} rows; {len(missing)} missing {list(missing)[:5]}, "
                             f"{len(phantom)} phantom {list(phantom)[:5]}, {len(stale)} stale "
                             f"{list(stale.items())[:5]}") from None
    return time.monotonic() - t0

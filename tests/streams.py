"""A stream of writes to both demo tables (test.test: direct mode, test.test_safe: safe mode)
for the scale-out fault tests, and the comparison of a table with Redis afterwards."""

from __future__ import annotations

import random
import threading
import time
from typing import Any, Callable

from helpers import execute, redis_state

#: What a worker's log must never say: the writes of one call span slots, or something crashed.
NEVER = ("CROSSSLOT", "CrossSlot", "don't hash to the same slot", "Traceback")


class Stream(threading.Thread):
    """Random autocommit writes (upsert 60%, update 25%, delete 15%) over ``keys`` ids, each done
    to test.test and test.test_safe alike, until stopped. ``writes`` counts them."""

    def __init__(self, connect: Callable[[], Any], keys: int, seed: int, pause: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.connect, self.keys, self.rng, self.pause = connect, keys, random.Random(seed), pause
        self.stop = threading.Event()
        #: cleared: the stream waits (set again to go on)
        self.going = threading.Event()
        self.going.set()
        self.writes = self.errors = 0

    def run(self) -> None:
        conn = self.connect()
        try:
            while not self.stop.is_set():
                if not self.going.wait(0.1):
                    continue
                k, name, op = self.rng.randrange(self.keys), f"n{self.rng.randrange(10**9)}", self.rng.random()
                try:
                    with conn.cursor() as cur:
                        for table in ("test.test", "test.test_safe"):
                            if op < 0.6:
                                cur.execute(f"INSERT INTO {table} VALUES (%s, %s) "
                                            "ON DUPLICATE KEY UPDATE name = VALUES(name)", (k, name))
                            elif op < 0.85:
                                cur.execute(f"UPDATE {table} SET name = %s WHERE id = %s", (name, k))
                            else:
                                cur.execute(f"DELETE FROM {table} WHERE id = %s", (k,))
                    self.writes += 1
                except Exception:
                    self.errors += 1
                    time.sleep(0.05)
                if self.pause:
                    time.sleep(self.pause)
        finally:
            conn.close()

    def until(self, n: int, timeout: float = 120.0) -> None:
        """Wait until ``n`` more writes were made."""
        target = self.writes + n
        deadline = time.monotonic() + timeout
        while self.writes < target:
            if time.monotonic() > deadline or not self.is_alive():
                raise AssertionError(f"the stream made {self.writes} of {target} writes")
            time.sleep(0.01)

    def finish(self) -> None:
        self.going.set()
        self.stop.set()
        self.join(30)


def table(conn: Any, name: str, prefix: str) -> dict[bytes, bytes]:
    """What Redis must hold for ``name`` (test.test: key ``<id>``; test.test_safe: ``test_safe:<id>``)."""
    return {f"{prefix}{i}".encode(): n.encode() for i, n in execute(conn, f"SELECT id, name FROM {name}")
            if n is not None}


def drift(want: dict[bytes, bytes], got: dict[bytes, bytes]) -> dict[str, list[bytes]]:
    """Keys missing from Redis, holding another value (stale), or that should not be there."""
    return {"missing": sorted(k for k in want if k not in got),
            "stale": sorted(k for k in want if k in got and got[k] != want[k]),
            "phantom": sorted(k for k in got if k not in want)}


def direct_drift(conn: Any, r: Any) -> dict[str, list[bytes]]:
    return drift(table(conn, "test.test", ""), redis_state(r, b"[0-9]*"))


def safe_drift(conn: Any, r: Any) -> dict[str, list[bytes]]:
    return drift(table(conn, "test.test_safe", "test_safe:"), redis_state(r))


def settle(check: Callable[[], dict[str, list[bytes]]], timeout: float = 60.0,
           ok: Callable[[dict[str, list[bytes]]], bool] = lambda d: not any(d.values())) -> dict[str, list[bytes]]:
    """Poll ``check`` until ``ok`` (by default: no drift at all) or ``timeout`` passes; the last
    drift found."""
    deadline = time.monotonic() + timeout
    while True:
        d = check()
        if ok(d) or time.monotonic() > deadline:
            return d
        time.sleep(0.2)

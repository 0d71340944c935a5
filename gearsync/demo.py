"""`make demo`: the whole pipeline on a throwaway local stack.

Starts MariaDB (UDFs loaded from a checkout's build/, or from an installed package after
`gearsync udf build`), gearmand and Redis on free loopback ports under .run/demo, applies
sql/install.sql, runs a `gearsync worker`, writes rows to the seed's demo
table `test.test` and prints what Redis holds after each statement, then stops everything.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from typing import Any

from .testing.processes import WaitTimeout, WorkerProcess, wait_for
from .testing.stack import Stack

_EMOJI = 'tab\there, quote " and emoji \U0001f680'.encode()
#: Direct mode: the seed's demo table test.test -> SET <id> <name> / DEL <id>.
STEPS: list[tuple[str, dict[bytes, bytes]]] = [
    ("INSERT INTO test.test (id, name) VALUES (1, 'alice'), (2, 'bob')",
     {b"1": b"alice", b"2": b"bob"}),
    ("UPDATE test.test SET name = 'Alice Liddell' WHERE id = 1",
     {b"1": b"Alice Liddell", b"2": b"bob"}),
    ("INSERT INTO test.test VALUES (3, 'tab\\there, quote \" and emoji \U0001f680')",
     {b"1": b"Alice Liddell", b"2": b"bob", b"3": _EMOJI}),
    ("UPDATE test.test SET id = 20 WHERE id = 2",
     {b"1": b"Alice Liddell", b"20": b"bob", b"3": _EMOJI}),
    ("DELETE FROM test.test WHERE id = 1",
     {b"20": b"bob", b"3": _EMOJI}),
]


#: Safe mode: the twin table test.test_safe; only committed changes arrive, as test_safe:<id>.
SAFE_STEPS: list[tuple[list[str], dict[bytes, bytes]]] = [
    (["BEGIN", "INSERT INTO test.test_safe VALUES (1, 'never committed')", "ROLLBACK",
      "INSERT INTO test.test_safe VALUES (2, 'committed')"],
     {b"test_safe:2": b"committed"}),
    (["BEGIN", "UPDATE test.test_safe SET name = 'first' WHERE id = 2",
      "UPDATE test.test_safe SET name = 'second' WHERE id = 2", "COMMIT"],
     {b"test_safe:2": b"second"}),
    (["DELETE FROM test.test_safe WHERE id = 2"], {}),
]


_SERVER_NAMES = {"mariadb": "MariaDB", "mysql": "MySQL"}


def _snapshot(r: Any, pattern: str = "*") -> dict[bytes, bytes]:
    """The keys matching pattern and their values (gearsync's own version keys left out)."""
    keys = sorted(k for k in r.keys(pattern) if not k.startswith(b"gearsync:"))
    return dict(zip(keys, r.mget(keys))) if keys else {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gearsync.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=".run/demo", help="where the daemons keep their data")
    ap.add_argument("--keep", action="store_true", help="leave the data directory in place afterwards")
    opts = ap.parse_args(argv)

    shutil.rmtree(opts.dir, ignore_errors=True)
    stack = Stack(base_dir=opts.dir)  # MariaDB; GEARSYNC_TEST_SERVER=mysql: MySQL in a container
    print(f"gearsync demo: starting {_SERVER_NAMES[stack.server]}, gearmand and Redis under {opts.dir} ...",
          flush=True)
    started = time.monotonic()
    ok = True
    with stack:
        assert stack.mysql is not None
        print(f"  {stack.server:<8} {stack.mysql.address}   (UDFs from {stack.mysql.plugin_dir})")
        print(f"  gearmand {stack.gearmand.address}")
        print(f"  redis    {stack.redis.address}")
        stack.install_sql()
        version = stack.mysql.execute("SELECT gearsync_udf_info()")[0][0].decode()
        print(f"applied sql/install.sql; gearsync_udf_info() = {version}")
        worker = WorkerProcess(stack.env(), log_path=f"{opts.dir}/worker.log", gearmand=stack.gearmand)
        with worker:
            print(f"started: gearsync worker --gearman {stack.gearman_servers} --redis-url {stack.redis_url}\n")
            r = stack.redis.client()
            conn = stack.mysql.connect()
            for sql, expected in STEPS:
                with conn.cursor() as cur:
                    cur.execute(sql)
                t0 = time.monotonic()
                try:
                    wait_for(lambda: _snapshot(r) == expected, 10.0, 0.0005, "Redis to match the table")
                    took = f"{(time.monotonic() - t0) * 1000:.1f} ms"
                except WaitTimeout:
                    ok, took = False, "NOT IN SYNC after 10 s"
                print(f"mysql> {sql}")
                print(f"redis  ({took}):")
                for k, v in _snapshot(r).items():
                    print(f"   GET {k.decode()!s:<4} -> {v.decode(errors='replace')!r}")
                print()
            print("safe mode (outbox; the worker was given a MySQL URL): test.test_safe -> test_safe:<id>\n")
            for statements, expected in SAFE_STEPS:
                with conn.cursor() as cur:
                    for sql in statements:
                        cur.execute(sql)
                        print(f"mysql> {sql}")
                t0 = time.monotonic()
                try:
                    wait_for(lambda: _snapshot(r, "test_safe:*") == expected, 10.0, 0.0005,
                             "Redis to match the committed table")
                    took = f"{(time.monotonic() - t0) * 1000:.1f} ms"
                except WaitTimeout:
                    ok, took = False, "NOT IN SYNC after 10 s"
                print(f"redis  ({took}):")
                for k, v in _snapshot(r, "test_safe:*").items():
                    print(f"   GET {k.decode()!s:<12} -> {v.decode(errors='replace')!r}")
                if not expected:
                    print("   (no test_safe key)")
                print()
            conn.close()
        if not ok:
            print(worker.output()[-3000:], file=sys.stderr)
    if not opts.keep:
        shutil.rmtree(opts.dir, ignore_errors=True)
    print(f"gearsync demo: {'OK' if ok else 'FAILED'}; stopped everything ({time.monotonic() - started:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

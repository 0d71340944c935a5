"""A custom gearsync worker for a safe-mode table: it receives each commit-confirmed change of
test.test_safe and decides what Redis holds, through the same versioned write as the built-in
mapping (so order, replays and rollbacks are handled for it).

    GEARSYNC_MYSQL_URL=mysql://root@127.0.0.1:3306/ GEARSYNC_GEARMAN=127.0.0.1:4730 \
    GEARSYNC_REDIS_URL=redis://127.0.0.1:6379/0 python examples/table_handler.py
"""

import logging
import sys

import gearsync

worker = gearsync.Worker(gearsync.Settings.from_env())


@worker.table("test.test_safe")
def profile(change: gearsync.TableChange) -> "gearsync.Value | None":
    if change.row is None or change.row.get("name") is None:
        return None  # deleted row or NULL name: the key goes away
    name = change.row["name"]
    return gearsync.Value("hash", {b"name": name.encode(), b"shout": name.upper().encode()})


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(worker.run_forever())

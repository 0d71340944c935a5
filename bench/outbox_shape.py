"""What the outbox row carries: the row's value columns as JSON (gearsync 0.1) or only the
changed row's primary key, the worker reading the committed row back (since 0.2).

On a film-like table of ten columns (titles, a TEXT description, DECIMAL, YEAR, ENUM, SET, a
TIMESTAMP), with the database started at ``innodb_flush_log_at_trx_commit=1`` (MariaDB's
default, set at server start), in one run, interleaved:

* write cost: single-row autocommit INSERTs and UPDATEs through the `mariadb` C client with no
  trigger, the row-carrying safe trigger and the keys-only safe trigger (no worker running, so
  the database side alone is measured);
* drain: the outbox rows those writes left, applied by one `gearsync worker` (started after the
  writes), from its start until the outbox is empty.
"""

from __future__ import annotations

import time
from pathlib import Path

from common import QUICK, ROOT, Report, Stack, WorkerProcess, mysql_client, repeats, wait_for

from gearsync.triggers import safe_triggers

N = 2_000 if QUICK else 6_000
COLUMNS = ("id INT NOT NULL PRIMARY KEY, title VARCHAR(128) NOT NULL, description TEXT, release_year YEAR, "
           "language_id TINYINT UNSIGNED NOT NULL, rental_duration TINYINT UNSIGNED NOT NULL DEFAULT 3, "
           "rental_rate DECIMAL(4,2) NOT NULL DEFAULT 4.99, length SMALLINT UNSIGNED, "
           "rating ENUM('G','PG','PG-13','R','NC-17') DEFAULT 'G', "
           "special_features SET('Trailers','Commentaries','Deleted Scenes','Behind the Scenes'), "
           "last_update TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP")
VALUES = ("film:", ["id"], ["title", "description", "release_year", "language_id", "rental_duration",
                            "rental_rate", "length", "rating", "special_features", "last_update"])
DESIGNS = {"no trigger": "plain", "row as JSON (0.1)": "carry", "primary key only (0.2)": "keys"}


def _config(stack: Stack, path: Path) -> Path:
    path.write_text(f'[mysql]\nurl = "{stack.mysql_url}"\n[tables."bench.keys"]\nkey = "film:{{id}}"\n')
    return path


def main() -> None:
    report = Report("outbox_shape", f"Outbox rows: row as JSON vs primary key only; {N:,} rows, flush=1")
    base_dir = ROOT / ".run" / "bench-outbox-shape"
    stack = Stack(base_dir=base_dir, durable=True).start()
    try:
        stack.install_sql()
        m = stack.mysql
        assert m is not None
        report.note("innodb_flush_log_at_trx_commit = " + str(m.execute("SELECT @@innodb_flush_log_at_trx_commit")[0][0])
                    + " (set when the server started)")
        m.execute("CREATE DATABASE IF NOT EXISTS bench")
        for table in DESIGNS.values():
            m.execute(f"CREATE TABLE IF NOT EXISTS bench.{table} ({COLUMNS}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
        prefix, keys, values = VALUES
        for stmt in safe_triggers("bench", "carry", keys, values, prefix):
            m.execute(stmt)
        for stmt in safe_triggers("bench", "keys", keys, key_template="film:{id}", pk=[("id", "int")]):
            m.execute(stmt)
        insert = {t: "".join(
            f"INSERT INTO bench.{t} (id, title, description, release_year, language_id, length, rating, "
            f"special_features) VALUES ({i}, 'TITLE {i}', 'A Fateful Reflection of a Moose And a Husband who "
            f"must Overcome a Monkey in Nigeria {i}', 2006, 1, {i % 180}, 'PG', 'Trailers,Deleted Scenes');\n"
            for i in range(N)) for t in DESIGNS.values()}
        update = {t: "".join(f"UPDATE bench.{t} SET rental_rate = {i % 5}.99, length = {i % 200} WHERE id = {i};\n"
                             for i in range(N)) for t in DESIGNS.values()}
        for _ in range(repeats(3)):
            for work, sql in (("INSERT", insert), ("UPDATE", update)):
                for label, table in DESIGNS.items():
                    if work == "INSERT":
                        mysql_client(stack, f"TRUNCATE bench.{table}")
                    took = mysql_client(stack, sql[table])
                    base = f"{work}, no trigger"
                    name = f"{work}, {label}"
                    report.add(name, N / took, "rows/s", baseline=None if name == base else base)
        env = stack.env()
        env.update(GEARSYNC_SWEEP_AGE="5", GEARSYNC_LOG_LEVEL="WARNING")
        for _ in range(repeats(3)):
            for label, table in list(DESIGNS.items())[1:]:
                # 2N changes (N inserts, N updates) with their doorbells queued, no worker yet
                m.execute("TRUNCATE gearsync.outbox")
                stack.gearmand.restart()  # its queue is in memory: the doorbells of earlier runs go
                mysql_client(stack, f"TRUNCATE bench.{table}")
                mysql_client(stack, insert[table] + update[table])
                rows = m.execute("SELECT COUNT(*) FROM gearsync.outbox")[0][0]
                args = ["--config", str(_config(stack, base_dir / "g.toml"))] if table == "keys" else []
                t0 = time.perf_counter()
                w = WorkerProcess(env, args, gearmand=stack.gearmand, function="gearsync").start()
                try:
                    wait_for(lambda: m.execute("SELECT COUNT(*) FROM gearsync.outbox")[0][0] == 0, 300, 0.02)
                    took = time.perf_counter() - t0
                finally:
                    w.stop()
                report.add(f"drain, {label}", rows / took, "rows/s",
                           baseline=None if table == "carry" else "drain, row as JSON (0.1)")
        report.note("drain: outbox rows/s from one worker's start (start-up included) until the outbox is "
                    "empty, each row's doorbell queued in gearmand")
    finally:
        stack.stop()
    report.finish()


if __name__ == "__main__":
    main()

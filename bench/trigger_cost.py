"""What a writer pays for the trigger: rows/s without a trigger [baseline], with the direct-mode
trigger and (where installed) the safe-mode trigger.

Three workloads over one connection of the `mariadb` C client: N single-row autocommit INSERTs,
N single-row UPDATEs, and one N-row INSERT. No worker runs: jobs queue in gearmand, so the
number is the database side only.
"""

from __future__ import annotations

from common import CLIENT, QUICK, Report, mysql_client, repeats, rss_kb, start_stack

N = 2_000 if QUICK else 20_000
TABLES = {
    "no trigger": "bench.plain",
    "direct, gman_do_background (waits for ack)": "bench.sync",
    "direct trigger (gearsync_send)": "test.test",
    "safe trigger (outbox + gearsync_send)": "test.test_safe",
}
SYNC_TRIGGERS = [
    "CREATE TRIGGER bench.sync_ai AFTER INSERT ON bench.sync FOR EACH ROW "
    "DO gman_do_background('syncToRedis', udf_json_object(NEW.id AS id, NEW.name AS name))",
    "CREATE TRIGGER bench.sync_au AFTER UPDATE ON bench.sync FOR EACH ROW "
    "DO gman_do_background('syncToRedis', udf_json_object(NEW.id AS id, NEW.name AS name, OLD.id AS old_id))",
]


def statements(table: str) -> dict[str, str]:
    single = "".join(f"INSERT INTO {table} VALUES ({i}, 'name {i}');\n" for i in range(N))
    update = "".join(f"UPDATE {table} SET name = 'updated {i}' WHERE id = {i};\n" for i in range(N))
    bulk = f"INSERT INTO {table} VALUES " + ", ".join(f"({i}, 'name {i}')" for i in range(N)) + ";\n"
    return {"single-row INSERT": single, "UPDATE": update, f"{N:,}-row INSERT": bulk}


def main() -> None:
    report = Report("trigger_cost", f"Write cost of the trigger ({N:,} rows, rows/s, {CLIENT} C client)")
    stack = start_stack("trigger-cost")
    try:
        assert stack.mysql is not None
        stack.mysql.execute("CREATE DATABASE IF NOT EXISTS bench")
        for t in ("plain", "sync"):
            stack.mysql.execute(f"CREATE TABLE IF NOT EXISTS bench.{t} (id INT PRIMARY KEY, name VARCHAR(255))")
        for sql in SYNC_TRIGGERS:
            stack.mysql.execute(sql)
        present = {f"{s}.{t}" for s, t in stack.mysql.execute(
            "SELECT table_schema, table_name FROM information_schema.tables")}
        tables = {k: v for k, v in TABLES.items() if v in present}
        if "test.test_safe" not in present:
            report.note("safe-mode trigger not measured: test.test_safe is not installed")
        rss0 = rss_kb(stack.mysql.pid)  # type: ignore[arg-type]
        for _ in range(repeats(3)):
            for label, table in tables.items():
                work = statements(table)
                for phase, sql in work.items():
                    if phase != "UPDATE":
                        mysql_client(stack, f"TRUNCATE {table}")
                    took = mysql_client(stack, sql)
                    base = f"{phase}, no trigger"
                    report.add(f"{phase}, {label}", N / took, "rows/s",
                               baseline=None if label == "no trigger" else base)
        rss1 = rss_kb(stack.mysql.pid)  # type: ignore[arg-type]
        report.note(f"mariadbd RSS {rss0 / 1024:.0f} MiB before, {rss1 / 1024:.0f} MiB after "
                    f"(+{(rss1 - rss0) / 1024:.0f} MiB)")
        report.row("mariadbd RSS growth", "MiB", higher_is_better=False).samples.append((rss1 - rss0) / 1024)
        queued = stack.gearmand.status().get("syncToRedis", (0, 0, 0))[0]
        report.note(f"{queued:,} direct-mode jobs were queued in gearmand (no worker ran)")
    finally:
        stack.stop()
    report.finish()


if __name__ == "__main__":
    main()

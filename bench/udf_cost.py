"""UDF cost without the network: udf_json_object over a table's rows via SELECT [native
JSON_OBJECT in the same run], and the per-call cost through the cffi harness."""

from __future__ import annotations

import sys
import time

from common import QUICK, ROOT, Report, repeats, start_stack
from gearsync.testing.sqlserver import numbers

ROWS = 100_000 if QUICK else 1_000_000
CALLS = 20_000 if QUICK else 200_000


def per_call(report: Report) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "udf"))
    from harness import Arg, Udf, STRING_RESULT, INT_RESULT  # type: ignore[import-not-found]

    args = [Arg(12345, INT_RESULT, const=False, name="id"),
            Arg(b"some name with \"quotes\" and \t tab", STRING_RESULT, const=False, name="name")]
    for _ in range(repeats(3)):
        with Udf("udf_json_object", args) as u:
            values = [12345, b"some name with \"quotes\" and \t tab"]
            u.call(values)
            t0 = time.perf_counter()
            for _ in range(CALLS):
                u.call(values)
            report.add("udf_json_object via cffi harness", (time.perf_counter() - t0) / CALLS * 1e6, "us/call",
                       higher_is_better=False)
        with Udf("gearsync_udf_info", []) as u:
            u.call()
            t0 = time.perf_counter()
            for _ in range(CALLS):
                u.call()
            report.add("gearsync_udf_info via cffi (harness floor)", (time.perf_counter() - t0) / CALLS * 1e6,
                       "us/call", higher_is_better=False)


def main() -> None:
    report = Report("udf_cost", f"UDF cost without the network ({ROWS:,} rows)")
    stack = start_stack("udf-cost")
    try:
        m = stack.mysql
        assert m is not None
        m.execute("CREATE DATABASE IF NOT EXISTS bench")
        m.execute("CREATE TABLE bench.rows (id INT PRIMARY KEY, name VARCHAR(255), score DOUBLE)")
        m.execute(f"INSERT INTO bench.rows SELECT seq, CONCAT('name \"', seq, '\"\t'), seq / 7 "
                  f"FROM {numbers(ROWS)}")
        native = "SELECT SUM(LENGTH(JSON_OBJECT('id', id, 'name', name, 'score', score))) FROM bench.rows"
        ours = "SELECT SUM(LENGTH(udf_json_object(id, name, score))) FROM bench.rows"
        baseline = "SELECT SUM(LENGTH(CONCAT(id, name, score))) FROM bench.rows"
        for _ in range(repeats(3)):
            for label, sql, base in (("CONCAT (no JSON)", baseline, None),
                                     ("native JSON_OBJECT", native, None),
                                     ("udf_json_object", ours, "native JSON_OBJECT")):
                t0 = time.perf_counter()
                m.execute(sql)
                report.add(f"{label}, SELECT over the table", ROWS / (time.perf_counter() - t0), "rows/s",
                           baseline=f"{base}, SELECT over the table" if base else None)
        per_call(report)
    finally:
        stack.stop()
    report.finish()


if __name__ == "__main__":
    main()

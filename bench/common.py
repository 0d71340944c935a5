"""Shared machinery for the benches: a throwaway stack, repeated runs, one table, JSON results.

Every benchmark measures its baseline in the same run and reports ratios against it; wall-clock
numbers from different runs or machines are not compared. Benches are not tests: nothing here
asserts a speed.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gearsync.testing.processes import WorkerProcess, wait_for  # noqa: E402
from gearsync.testing.sqlserver import server_name  # noqa: E402
from gearsync.testing.stack import Stack  # noqa: E402

RESULTS = ROOT / "bench" / "results"
QUICK = os.environ.get("QUICK", "") not in ("", "0")
#: The database server the benches run (GEARSYNC_TEST_SERVER: mariadb, the default, or mysql;
#: `make bench-mysql`), and its command-line client.
SERVER = server_name()
CLIENT = {"mariadb": "mariadb", "mysql": "mysql"}[SERVER]


@dataclass
class Row:
    """One measured quantity: its samples, and the row it is compared with."""

    name: str
    unit: str
    samples: list[float] = field(default_factory=list)
    baseline: str | None = None
    higher_is_better: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")


class Report:
    """Collects rows, prints one table, writes bench/results/<name>.json."""

    def __init__(self, name: str, title: str) -> None:
        # results of another server go to a file of their own: bench/results/<name>_mysql.json
        self.name = name if SERVER == "mariadb" else f"{name}_{SERVER}"
        self.title = title if SERVER == "mariadb" else f"{title} [{SERVER}]"
        self.rows: dict[str, Row] = {}
        self.notes: list[str] = []
        self.started = time.time()

    def row(self, name: str, unit: str, baseline: str | None = None, higher_is_better: bool = True) -> Row:
        if name not in self.rows:
            self.rows[name] = Row(name, unit, baseline=baseline, higher_is_better=higher_is_better)
        return self.rows[name]

    def add(self, name: str, value: float, unit: str, baseline: str | None = None,
            higher_is_better: bool = True) -> None:
        self.row(name, unit, baseline, higher_is_better).samples.append(value)

    def ratio(self, row: Row) -> float | None:
        if not row.baseline or row.baseline not in self.rows:
            return None
        base = self.rows[row.baseline].median
        return row.median / base if base else None

    def note(self, text: str) -> None:
        self.notes.append(text)

    def print(self) -> None:
        print(f"\n## {self.title}")
        w = max([44] + [len(r.name) for r in self.rows.values()])
        head = f"{'benchmark':<{w}} {'median':>12} {'min':>12} {'max':>12} {'unit':<8} {'ratio':>7}  baseline"
        print(head)
        print("-" * len(head))
        for r in self.rows.values():
            ratio = self.ratio(r)
            lo, hi = (min(r.samples), max(r.samples)) if r.samples else (float("nan"),) * 2
            print(f"{r.name:<{w}} {_fmt(r.median):>12} {_fmt(lo):>12} {_fmt(hi):>12} {r.unit:<8} "
                  f"{(f'{ratio:.2f}x' if ratio is not None else ''):>7}  {r.baseline or ''}")
        for n in self.notes:
            print(f"  note: {n}")
        sys.stdout.flush()

    def save(self) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.name}.json"
        data = {
            "name": self.name, "title": self.title, "quick": QUICK, "server": SERVER,
            "started": self.started, "seconds": round(time.time() - self.started, 1),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "rows": [
                {"name": r.name, "unit": r.unit, "median": r.median, "min": min(r.samples, default=None),
                 "max": max(r.samples, default=None), "samples": r.samples, "baseline": r.baseline,
                 "ratio": self.ratio(r), **r.extra}
                for r in self.rows.values()
            ],
            "notes": self.notes,
        }
        path.write_text(json.dumps(data, indent=2))
        return path

    def finish(self) -> None:
        self.print()
        print(f"  results: {self.save().relative_to(ROOT)}")


def _fmt(v: float) -> str:
    if v != v:  # nan
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def repeats(default: int) -> int:
    return int(os.environ.get("REPEATS", 1 if QUICK else default))


def start_stack(name: str, *, durable: bool = False, mysqld_args: Sequence[str] = ()) -> Stack:
    """A stack under .run/bench-<name> with sql/install.sql applied (UDFs from build/), its
    server started with ``mysqld_args``. Settings to compare run against run, from the
    environment: LINGER_US (the library's linger_us) and GEARMAND_THREADS (gearmand --threads)."""
    base = ROOT / ".run" / f"bench-{name}"
    subprocess.run(["rm", "-rf", str(base)], check=True)
    stack = Stack(base_dir=base, durable=durable)
    assert stack.mysql is not None and stack.mysql.udf_config is not None
    stack.mysql.extra_args = list(mysqld_args)
    if os.environ.get("LINGER_US"):
        stack.mysql.udf_config["linger_us"] = os.environ["LINGER_US"]
    if os.environ.get("GEARMAND_THREADS"):
        stack.gearmand.threads = int(os.environ["GEARMAND_THREADS"])
    stack.start()
    stack.install_sql()
    return stack


def mysql_client(stack: Stack, sql: str | bytes, database: str | None = None) -> float:
    """Feed SQL to the server's command-line client (`mariadb`, or MySQL's `mysql` in its
    container: C clients, so Python's per-query cost does not dilute the server-side cost);
    returns the seconds from its first statement to the end of its last, as the server's clock
    (SYSDATE(6)) tells, so starting the client (`podman exec`: about 0.1 s) is not counted."""
    assert stack.mysql is not None
    data = (sql.encode() if isinstance(sql, str) else sql).rstrip()
    data = (b"SET @gs_bench_t0 = SYSDATE(6);\n" + data + (b"\n" if data.endswith(b";") else b";\n")
            + b"SELECT TIMESTAMPDIFF(MICROSECOND, @gs_bench_t0, SYSDATE(6));\n")
    res = subprocess.run(stack.mysql.client_argv(database) + ["--batch", "--silent"], input=data,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if res.returncode != 0:
        raise RuntimeError(f"{CLIENT} client failed: {res.stderr.decode(errors='replace')[:500]}")
    return int(res.stdout.split()[-1]) / 1e6


def rss_kb(pid: int, field_name: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


__all__ = ["Report", "Row", "QUICK", "ROOT", "SERVER", "CLIENT", "repeats", "start_stack", "mysql_client", "rss_kb", "timed",
           "WorkerProcess", "wait_for", "Stack", "Sequence"]

"""`make bench`: every benchmark in turn, each on its own throwaway stack.

QUICK=1 shrinks every size (under 2 minutes); REPEATS=N overrides the repetitions. Each bench
prints its table and writes bench/results/<name>.json; ratios are against a baseline measured
in the same run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ["trigger_cost", "write_cost", "write_drain", "flush_switch", "udf_cost", "drain", "latency",
           "backfill", "outbox_shape"]


def main(argv: list[str]) -> int:
    names = argv or BENCHES
    unknown = [n for n in names if not (HERE / f"{n}.py").exists()]
    if unknown:
        print(f"unknown bench {', '.join(unknown)}; choose from {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    started = time.monotonic()
    failed = []
    for name in names:
        t0 = time.monotonic()
        res = subprocess.run([sys.executable, str(HERE / f"{name}.py")], cwd=HERE, env=os.environ)
        print(f"  ({name}: {time.monotonic() - t0:.0f} s)")
        if res.returncode:
            failed.append(name)
    print(f"\nbench: {len(names) - len(failed)} of {len(names)} ran in {time.monotonic() - started:.0f} s"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

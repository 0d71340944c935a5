"""The library keeps no memory per row: RSS of this process stays flat over tens of
thousands of trigger-like calls from several threads, with server-list changes (client
rebuilds), JSON buffers of every size and failed submits."""
from __future__ import annotations

import os
import threading

from conftest import Gearmand, free_port
from harness import Arg, Udf, call_once


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError


def test_rss_flat(gearmand_factory) -> None:
    a, b = gearmand_factory(), gearmand_factory()
    dead = f"127.0.0.1:{free_port()}"
    lists = [f"{a.address},{b.address}".encode(), a.address.encode(),
             f"{dead},{a.address}".encode()]
    call_once("gearsync_timeout_set", 250)

    def work(n: int) -> None:
        for i in range(n):
            if i % 7 == 0:
                call_once("gman_servers_set", Arg(lists[i % 3], const=True))
            with Udf("udf_json_object", [Arg(i, name="id"), Arg(b"x" * (i % 5000), name="name"),
                                         Arg(b"[1,2]", name="json_v")]) as f:
                w = f()
            call_once("gman_do_background", b"leak", w)
            call_once("gman_do_high_background", b"", w)  # invalid: NULL, no allocation kept

    rss = []
    for _ in range(5):
        ts = [threading.Thread(target=work, args=(1500,)) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        rss.append(rss_kb())
    call_once("gman_servers_set", Arg(a.address.encode(), const=True))
    print("RSS per round (kB):", rss)
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        # `make fuzz`: ASan's quarantine and shadow memory move RSS by megabytes on their own
        # (this failed there on a library that passes without ASan); the calls above still
        # ran under ASan, and leaks are LeakSanitizer's and valgrind's job there
        return
    # after the first round (allocator warm-up), 4 x 6000 more calls: < 1 MiB
    assert max(rss[1:]) - rss[1] < 1024, rss

"""gearsync_seq(): strictly increasing, at least the clock in microseconds, from any thread."""
from __future__ import annotations

import threading
import time

import harness
from harness import Udf


def test_values_grow_and_follow_the_clock() -> None:
    before = time.time_ns() // 1000
    with Udf("gearsync_seq", []) as f:
        values = [f() for _ in range(10000)]
    after = time.time_ns() // 1000
    assert values == sorted(set(values)), "strictly increasing"
    assert before <= values[0] and values[-1] <= after + len(values)
    assert values[-1] < 2 ** 53


def test_threads_never_share_a_value() -> None:
    got: list[list[int]] = [[] for _ in range(4)]

    def take(i: int) -> None:
        with Udf("gearsync_seq", []) as f:
            got[i].extend(f() for _ in range(5000))

    threads = [threading.Thread(target=take, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [v for g in got for v in g]
    assert len(set(every)) == len(every)
    assert all(g == sorted(g) for g in got)


def test_arguments_are_refused() -> None:
    assert harness.init_error("gearsync_seq", 1) == "gearsync_seq: expects no arguments"

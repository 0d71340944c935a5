"""gearsync_send / gearsync_send_flush (pipelined SUBMIT_JOB_BG) against real gearmand.

The pipe is per OS thread and lives as long as the thread: every test here runs in pytest's
main thread and so shares one pipe, which follows the server list each test sets."""
from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

from gearman_peers import grab_all
from gearsync.testing.processes import wait_for
from gearsync.testing.stack import Gearmand, free_port
from harness import Arg, Udf, call_once, init_error

UNIQUE_RE = re.compile(rb"^gs-[0-9a-f]{16}-[0-9a-f]+-[0-9a-f]+$")


# ------------------------------------------------------------------ helpers

def set_servers(servers: str) -> None:
    assert call_once("gman_servers_set", Arg(servers.encode(), const=True)) is not None
    # the pipe re-reads the list when the coarse clock has moved (a few ms)
    time.sleep(0.012)


def send(function: bytes = b"f", workload: Optional[bytes] = b"w", *unique) -> Optional[bytes]:
    """One trigger row: init, call, deinit (non-constant arguments, like NEW.x)."""
    return call_once("gearsync_send", function, workload, *unique)


def flush() -> int:
    return call_once("gearsync_send_flush")


@pytest.fixture
def gm(tmp_path: Path) -> Iterator[Gearmand]:
    g = Gearmand(tmp_path / "gm", threads=1)
    with g:
        set_servers(g.address)
        yield g
        flush()


@pytest.fixture(autouse=True)
def default_timeout():
    call_once("gearsync_timeout_set", 250)
    yield
    call_once("gearsync_timeout_set", 250)


# ------------------------------------------------------------------ init

@pytest.mark.parametrize("args", [(), (b"f",), (b"f", b"w", b"u", b"x")])
def test_send_arity(args) -> None:
    msg = init_error("gearsync_send", *args)
    assert msg is not None and msg.startswith("gearsync_send") and len(msg) < 80


def test_flush_arity() -> None:
    msg = init_error("gearsync_send_flush", b"x")
    assert msg is not None and msg.startswith("gearsync_send_flush")


def test_send_init_metadata() -> None:
    with Udf("gearsync_send", [Arg(1), Arg(2.5), Arg(3)]) as f:
        assert f.initid.maybe_null == 1
        assert f.initid.max_length == 63
        assert list(f.arg_type[0:3]) == [0, 0, 0]  # STRING_RESULT


# ------------------------------------------------------------------ delivery

def test_jobs_arrive_byte_exact(gm: Gearmand) -> None:
    workloads = [b'{"id":1,"name":"x"}', b"", b"\x00", b"a\x00b\x00\x00c", bytes(range(256)),
                 "é€😀".encode(), b"\xff\xfe invalid utf-8", b"x" * 200_000, b"\x00RES\x00REQ"]
    refs = [send(b"exact", w) for w in workloads]
    assert all(r is not None and UNIQUE_RE.match(r) for r in refs)
    assert send(b"exact", None) is not None  # NULL workload: an empty job
    assert flush() == 0
    jobs = grab_all(gm, b"exact")
    assert jobs == list(zip(refs, workloads)) + [(jobs[-1][0], b"")]


def test_10000_sends_one_connection(gm: Gearmand) -> None:
    with Udf("gearsync_send", [Arg(b"many"), Arg(b"w")]) as f:
        results = [f([b"many", b"payload %d" % i]) for i in range(10_000)]
    assert None not in results
    assert len(set(results)) == 10_000  # generated uniques are distinct
    assert flush() == 0
    assert gm.queued("many") == 10_000
    assert gm.connections() == 1
    jobs = grab_all(gm, b"many")
    assert [w for _, w in jobs] == [b"payload %d" % i for i in range(10_000)]
    assert [u for u, _ in jobs] == results


def test_big_jobs_partial_sends_byte_exact(gm: Gearmand) -> None:
    """Workloads far larger than the socket buffer: partial sends, buffered tails, compaction."""
    workloads = [bytes([i % 251]) * (150_000 + i * 1_013) for i in range(120)]  # ~24 MB
    with Udf("gearsync_send", [Arg(b"big"), Arg(b"w")]) as f:
        refs = [f([b"big", w]) for w in workloads]
    assert None not in refs
    assert flush() == 0
    jobs = grab_all(gm, b"big")
    assert [u for u, _ in jobs] == refs
    assert [w for _, w in jobs] == workloads


def test_paused_gearmand_send_buffer_cap(gm: Gearmand) -> None:
    """gearmand stopped, 64 KiB jobs: kernel buffers fill, then the 1 MiB send buffer; a call
    then waits at most the timeout and returns NULL."""
    assert send(b"cap", b"x") is not None
    assert flush() == 0
    gm.pause()
    try:
        durations, results = [], []
        with Udf("gearsync_send", [Arg(b"cap"), Arg(b"w")]) as f:
            for _ in range(400):  # 25 MiB
                t0 = time.perf_counter()
                results.append(f([b"cap", b"z" * 65536]))
                durations.append(time.perf_counter() - t0)
                if results[-1] is None:
                    break
        assert results[-1] is None and len(results) < 400
        assert max(durations) < 0.25 + 0.25  # one timeout, plus scheduling slack
        assert flush() == 0  # the connection was dropped: nothing pending on it
    finally:
        gm.resume()
    assert wait_for(lambda: send(b"cap", b"after") is not None, 5)
    assert flush() == 0


def test_caller_unique(gm: Gearmand) -> None:
    assert send(b"u", b"a", b"key-1") == b"key-1"
    assert send(b"u", b"b", b"key-1") == b"key-1"  # gearmand coalesces
    assert send(b"u", b"c", b"k" * 63) == b"k" * 63
    assert send(b"u", b"d", b"k" * 64) is None  # too long
    assert send(b"u", b"d", b"a\x00b") is None  # NUL in unique
    g1 = send(b"u", b"e", None)
    g2 = send(b"u", b"f", b"")
    assert UNIQUE_RE.match(g1) and UNIQUE_RE.match(g2) and g1 != g2
    assert flush() == 0
    assert gm.queued("u") == 4


def test_bad_function_is_null(gm: Gearmand) -> None:
    assert send(None, b"w") is None
    assert send(b"", b"w") is None
    assert send(b"a\x00b", b"w") is None
    assert send(b"f" * 512, b"w") is None
    assert send(b"f" * 511, b"w") is not None
    assert flush() == 0


def test_flush_without_connection_is_zero() -> None:
    assert flush() == 0


# ------------------------------------------------------------------ faults

def test_gearmand_down_is_null_and_cheap(tmp_path: Path) -> None:
    set_servers(f"127.0.0.1:{free_port()}")
    t0 = time.perf_counter()
    assert send(b"down", b"w") is None
    first = time.perf_counter() - t0
    with Udf("gearsync_send", [Arg(b"down"), Arg(b"w")]) as f:
        t0 = time.perf_counter()
        results = [f() for _ in range(1000)]
        took = time.perf_counter() - t0
    assert results == [None] * 1000
    print(f"\ngearmand down: first call {first * 1e3:.2f} ms, 1000 calls {took * 1e3:.2f} ms")
    assert first < 0.3
    assert took < 0.05


def test_blackholed_server_costs_one_timeout_then_backoff(tmp_path: Path) -> None:
    """A listening socket nobody accepts from: connect works (backlog), acks never come."""
    call_once("gearsync_timeout_set", 100)
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        set_servers(f"127.0.0.1:{lst.getsockname()[1]}")
        with Udf("gearsync_send", [Arg(b"bh"), Arg(b"w" * 100)]) as f:
            durations, results = [], []
            for _ in range(3000):
                t0 = time.perf_counter()
                results.append(f())
                durations.append(time.perf_counter() - t0)
    assert max(durations) < 0.5
    assert None not in results[:1024]
    assert results[1024] is None  # window full, timed out
    assert sum(durations) < 1.5


def test_paused_gearmand_no_hang_then_recovers(gm: Gearmand) -> None:
    assert send(b"p", b"before") is not None
    assert flush() == 0
    gm.pause()
    try:
        durations, results = [], []
        with Udf("gearsync_send", [Arg(b"p"), Arg(b"w")]) as f:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 1.0:
                t1 = time.perf_counter()
                results.append(f([b"p", b"during"]))
                durations.append(time.perf_counter() - t1)
        print(f"\npaused: {len(results)} calls in 1 s, {results.count(None)} NULL, "
              f"slowest {max(durations) * 1e3:.0f} ms")
        assert max(durations) < 0.25 + 0.25  # one timeout, plus scheduling slack
        assert None in results
    finally:
        gm.resume()
    # recovers within the backoff (<= 2 s)
    assert wait_for(lambda: send(b"p", b"after") is not None, 5)
    for _ in range(99):
        assert send(b"p", b"after") is not None
    assert flush() == 0
    # the ones sent while paused may or may not be queued ("possibly lost"); 100 after are
    assert wait_for(lambda: gm.queued("p") >= 101)
    assert [w for _, w in grab_all(gm, b"p")].count(b"after") == 100


def test_gearmand_restart_recovers(gm: Gearmand) -> None:
    for _ in range(100):
        assert send(b"r", b"x") is not None
    assert flush() == 0
    gm.restart()  # same port; the in-memory queue is gone
    assert send(b"r", b"y") is not None  # EOF seen, reconnected at once
    for _ in range(99):
        assert send(b"r", b"y") is not None
    assert flush() == 0
    assert gm.queued("r") == 100
    assert gm.connections() == 1


def test_server_list_change_moves_connection(tmp_path: Path) -> None:
    with Gearmand(tmp_path / "a", threads=1) as a, Gearmand(tmp_path / "b", threads=1) as b:
        set_servers(a.address)
        for _ in range(10):
            assert send(b"mv", b"1") is not None
        set_servers(b.address)
        for _ in range(20):
            assert send(b"mv", b"2") is not None
        assert flush() == 0
        assert a.queued("mv") == 10 and b.queued("mv") == 20
        assert wait_for(lambda: a.connections() == 0)
        assert b.connections() == 1
        # first reachable server of a list
        set_servers(f"127.0.0.1:{free_port()},{a.address}")
        assert send(b"mv", b"3") is not None
        assert flush() == 0
        assert a.queued("mv") == 11


def test_connection_per_thread_closed_at_thread_exit(gm: Gearmand) -> None:
    out: List[List[Optional[bytes]]] = []
    lock = threading.Lock()
    gate = threading.Barrier(4)

    def run() -> None:
        with Udf("gearsync_send", [Arg(b"th"), Arg(b"w")]) as f:
            res = [f() for _ in range(500)]
        gate.wait()  # all four threads alive together
        with lock:
            out.append(res)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results = [r for res in out for r in res]
    assert None not in results and len(set(results)) == 2000
    # thread exit: each thread's key destructor waited for its acks and closed the socket
    assert wait_for(lambda: gm.connections() == 0)
    assert gm.queued("th") == 2000


# ------------------------------------------------------------------ cost

def test_per_call_cost(gm: Gearmand) -> None:
    n = 10_000
    times = {}
    for name in ("gearsync_send", "gman_do_background"):
        with Udf(name, [Arg(b"cost"), Arg(b'{"id":12345,"name":"some name"}')]) as f:
            f()
            t0 = time.perf_counter()
            for _ in range(n):
                f()
            times[name] = (time.perf_counter() - t0) / n * 1e6
        assert flush() == 0
    with Udf("gearsync_udf_info", []) as f:
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        floor = (time.perf_counter() - t0) / n * 1e6
    print(f"\nper call via cffi harness ({n:,} calls): gearsync_send {times['gearsync_send']:.1f} us, "
          f"gman_do_background {times['gman_do_background']:.1f} us, harness floor {floor:.1f} us")
    assert gm.queued("cost") == 2 * n + 2
    assert times["gearsync_send"] < times["gman_do_background"]


# ------------------------------------------------------------------ unload

DLCLOSE_SCRIPT = r'''
import sys, threading, time
sys.path.insert(0, sys.argv[3])
import harness
lib = harness.ffi.dlopen(sys.argv[1])

def call(name, *args, const=False):
    with harness.Udf(name, [harness.Arg(a, const=const) for a in args], lib=lib) as f:
        return f()

assert call("gman_servers_set", sys.argv[2].encode(), const=True)
time.sleep(0.02)
go, sent = threading.Event(), []

def run():
    for i in range(100):
        sent.append(call("gearsync_send", b"dl", b"w%d" % i))
    go.wait()  # the thread and its pipe outlive the library

t = threading.Thread(target=run)
t.start()
while len(sent) < 100:
    time.sleep(0.01)
harness.ffi.dlclose(lib)  # what DROP FUNCTION of the last UDF does in mysqld
print("unloaded", "gearsync_udf" not in open("/proc/self/maps").read())
go.set()
t.join()  # thread exit: no key destructor may point into the unmapped library
print("sent", sum(1 for s in sent if s))
'''


def test_unload_with_live_thread_then_thread_exit(gm: Gearmand, tmp_path: Path) -> None:
    import subprocess
    import sys

    import harness as h

    script = tmp_path / "dlclose.py"
    script.write_text(DLCLOSE_SCRIPT)
    res = subprocess.run([sys.executable, str(script), str(h.so_path()), gm.address,
                          str(Path(h.__file__).parent)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert "unloaded True" in res.stdout and "sent 100" in res.stdout
    # the library destructor waited for the acks and closed the connection
    assert gm.queued("dl") == 100
    assert wait_for(lambda: gm.connections() == 0)

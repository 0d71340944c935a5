"""gman_do* (foreground), priorities, gman_sum, per-function server lists, failover and the
circuit breaker -- through the cffi harness against real gearmand."""
from __future__ import annotations

import shutil
import subprocess
import time
from typing import Iterator, List

import pytest

import harness
from conftest import Gearmand, free_port
from harness import Arg, Udf, call_once, init_error
from gearsync.testing.processes import wait_for
from gearman_peers import CliWorker

GEARMAN = shutil.which("gearman") or "/usr/bin/gearman"


def set_servers(servers: str, function: str | None = None) -> bytes | None:
    args = [Arg(servers.encode(), const=True)]
    if function is not None:
        args.append(Arg(function.encode(), const=True))
    return call_once("gman_servers_set", *args)


@pytest.fixture
def workers() -> Iterator[List[CliWorker]]:
    started: List[CliWorker] = []
    yield started
    for w in started:
        w.stop()


@pytest.fixture(autouse=True)
def timeouts():
    call_once("gearsync_timeout_set", 250)
    call_once("gearsync_do_timeout_set", 2000)
    yield
    call_once("gearsync_timeout_set", 250)
    call_once("gearsync_do_timeout_set", 5000)


FOREGROUND = ["gman_do", "gman_do_high", "gman_do_low"]
BACKGROUND = ["gman_do_background", "gman_do_high_background", "gman_do_low_background"]


# ------------------------------------------------------------------ foreground

@pytest.mark.parametrize("name", FOREGROUND)
def test_do_returns_worker_result(name: str, gearmand: Gearmand, workers) -> None:
    workers.append(CliWorker(gearmand, "upper", "tr", "a-z", "A-Z"))
    set_servers(gearmand.address)
    assert call_once(name, b"upper", b"hello") == b"HELLO"
    assert call_once(name, b"upper", b"with unique", b"u-1") == b"WITH UNIQUE"
    big = b"x" * 60_000  # longer than the 255-byte result buffer (gearman -w deadlocks on >64 KB)
    assert call_once(name, b"upper", big) == b"X" * 60_000


def test_do_many_rows_one_statement(gearmand: Gearmand, workers) -> None:
    workers.append(CliWorker(gearmand, "upper", "tr", "a-z", "A-Z"))
    set_servers(gearmand.address)
    with Udf("gman_do", [Arg(b"upper"), Arg(b"")]) as f:
        for i in range(20):
            assert f([b"upper", f"row{i}".encode()]) == f"ROW{i}".encode()


@pytest.mark.parametrize("name", FOREGROUND)
def test_do_without_worker_times_out(name: str, gearmand: Gearmand) -> None:
    set_servers(gearmand.address)
    call_once("gearsync_do_timeout_set", 400)
    t = time.monotonic()
    assert call_once(name, b"nobody", b"w") is None
    assert 0.35 <= time.monotonic() - t < 2.0
    # a missing worker is not a broken server: the breaker stays closed
    t = time.monotonic()
    assert call_once(name, b"nobody", b"w") is None
    assert time.monotonic() - t >= 0.35


def test_do_worker_failure_is_null(gearmand: Gearmand, workers) -> None:
    workers.append(CliWorker(gearmand, "fail", "false"))
    set_servers(gearmand.address)
    # `gearman -w` reports a failing command as WORK_FAIL (or an empty result)
    assert call_once("gman_do", b"fail", b"w") in (None, b"")


@pytest.mark.parametrize("args", [(), (b"f",), (b"f", b"w", b"u", b"x")])
@pytest.mark.parametrize("name", FOREGROUND + BACKGROUND)
def test_do_arity(name: str, args) -> None:
    msg = init_error(name, *args)
    assert msg is not None and msg.startswith(name) and len(msg) < 80


@pytest.mark.parametrize("name", FOREGROUND + BACKGROUND)
def test_do_bad_function_or_unique_is_null(name: str) -> None:
    set_servers(f"127.0.0.1:{free_port()}")
    assert call_once(name, None, b"w") is None
    assert call_once(name, b"", b"w") is None
    assert call_once(name, b"a\0b", b"w") is None
    assert call_once(name, b"f" * 600, b"w") is None
    assert call_once(name, b"f", b"w", b"u" * 64) is None


# ------------------------------------------------------------------ priorities

def test_background_priorities(gearmand: Gearmand) -> None:
    set_servers(gearmand.address)
    for name in BACKGROUND:
        h = call_once(name, b"prio", name.encode())
        assert h is not None and h.startswith(b"H:")
    assert gearmand.queued("prio") == 3
    # the high-priority job is handed out first, the low one last
    out = subprocess.run([GEARMAN, "-w", "-c", "3", "-h", "127.0.0.1", "-p", str(gearmand.port),
                          "-f", "prio"], capture_output=True, timeout=20).stdout
    assert out == b"gman_do_high_backgroundgman_do_backgroundgman_do_low_background"


# ------------------------------------------------------------------ gman_sum

def test_sum(gearmand: Gearmand, workers) -> None:
    workers.append(CliWorker(gearmand, "len", "wc", "-c"))
    set_servers(gearmand.address)
    with Udf("gman_sum", [Arg(b"len"), Arg(b"")]) as f:
        assert f.group([[b"len", b"abc"], [b"len", b"hello"], [b"len", None]]) == 8
        assert f.group([[b"len", b"x" * 1000]]) == 1000  # _clear resets
        assert f.group([]) is None  # empty group: NULL like SUM()


def test_sum_failure_is_null_and_stops_submitting(gearmand: Gearmand, workers) -> None:
    workers.append(CliWorker(gearmand, "echo", "cat"))
    set_servers(gearmand.address)
    call_once("gearsync_do_timeout_set", 300)
    with Udf("gman_sum", [Arg(b"echo"), Arg(b"")]) as f:
        assert f.group([[b"echo", b"1"], [b"echo", b" 41\n"]]) == 42
        assert f.group([[b"echo", b"1"], [b"echo", b"x"]]) is None  # not an integer
        assert f.group([[b"echo", b"9223372036854775807"], [b"echo", b"1"]]) is None  # overflow
        t = time.monotonic()
        assert f.group([[b"nobody", b"1"]] * 10) is None  # one timeout, not ten
        assert time.monotonic() - t < 2.0


def test_sum_arity() -> None:
    for args in [(), (b"f",), (b"f", b"w", b"x")]:
        msg = init_error("gman_sum", *args)
        assert msg is not None and msg.startswith("gman_sum")


# ------------------------------------------------------------------ server lists

def test_servers_set_per_function(gearmand_factory) -> None:
    a, b = gearmand_factory(), gearmand_factory()
    assert set_servers(a.address) == a.address.encode()
    assert set_servers(b.address, "special") == b.address.encode()
    assert call_once("gman_do_background", b"special", b"w") is not None
    assert call_once("gman_do_background", b"other", b"w") is not None
    assert b.queued("special") == 1 and a.queued("special") == 0
    assert a.queued("other") == 1 and b.queued("other") == 0
    # NULL / empty function: the default list
    assert call_once("gman_servers_set", Arg(a.address.encode()), Arg(None)) == a.address.encode()


def test_servers_set_function_too_long_is_null() -> None:
    assert call_once("gman_servers_set", Arg(b"h"), Arg(b"f" * 200)) is None


def test_failover_to_next_server(gearmand_factory) -> None:
    a, b = gearmand_factory(), gearmand_factory()
    set_servers(f"{a.address},{b.address}")
    assert call_once("gman_do_background", b"fo", b"1") is not None
    assert a.queued("fo") == 1  # the first server is the primary
    a.stop()
    for i in range(20):
        assert call_once("gman_do_background", b"fo", str(i).encode()) is not None
    assert b.queued("fo") == 20


def test_failover_from_hung_server(gearmand_factory) -> None:
    a, b = gearmand_factory(), gearmand_factory()
    set_servers(f"{a.address},{b.address}")
    a.pause()
    try:
        t = time.monotonic()
        assert call_once("gman_do_background", b"fh", b"w") is not None  # after one timeout
        first = time.monotonic() - t
        t = time.monotonic()
        for _ in range(50):
            assert call_once("gman_do_background", b"fh", b"w") is not None
        rest = time.monotonic() - t
    finally:
        a.resume()
    assert b.queued("fh") == 51
    assert 0.2 <= first < 1.5
    assert rest < 1.0, rest  # the breaker skips the hung primary


def test_breaker_makes_calls_cheap_while_down(gearmand: Gearmand) -> None:
    """Hung gearmand: the first call pays the timeout, the next ones microseconds."""
    set_servers(gearmand.address)
    assert call_once("gman_do_background", b"cb", b"w") is not None
    gearmand.pause()
    try:
        t = time.monotonic()
        assert call_once("gman_do_background", b"cb", b"w") is None
        first = time.monotonic() - t
        times = []
        for _ in range(200):
            t = time.perf_counter()
            assert call_once("gman_do_background", b"cb", b"w") is None
            times.append(time.perf_counter() - t)
    finally:
        gearmand.resume()
    times.sort()
    assert first >= 0.2
    # median well under a millisecond (harness overhead included); a probe now and
    # then may pay the timeout, so the bound on the total is loose
    assert times[len(times) // 2] < 0.002, times[len(times) // 2]
    assert sum(times) < 2.0
    assert wait_for(lambda: call_once("gman_do_background", b"cb", b"w") is not None, 5)

"""gman_servers_set / gman_do_background / gearsync_timeout_set against real gearmand."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import pytest

import harness
from conftest import Gearmand, free_port
from harness import INT_RESULT, STRING_RESULT, Arg, Udf, call_once, init_error, run_child
from gearsync.testing.processes import wait_for


def set_servers(servers: str) -> bytes:
    return call_once("gman_servers_set", Arg(servers.encode(), const=True))


def submit(function: str = "f", workload: bytes = b"w", *unique) -> bytes | None:
    """One trigger row: init, call, deinit (non-constant args, like NEW.x)."""
    return call_once("gman_do_background", function.encode(), workload, *unique)


@pytest.fixture(autouse=True)
def default_timeout():
    call_once("gearsync_timeout_set", 250)
    yield
    call_once("gearsync_timeout_set", 250)


# ---------------------------------------------------------------- servers_set

@pytest.mark.parametrize("given,normalised", [
    ("127.0.0.1", "127.0.0.1:4730"),
    ("gm1, gm2:4731", "gm1:4730,gm2:4731"),
    ("[::1]:4740,::1", "[::1]:4740,[::1]:4730"),
    (" host-a.example.com:1 ", "host-a.example.com:1"),
])
def test_servers_set_returns_what_it_set(given: str, normalised: str) -> None:
    assert set_servers(given) == normalised.encode()


@pytest.mark.parametrize("bad", ["", " ", "a,", ",a", "a:0", "a:65536", "a:x", "a b",
                                 "[::1", "a:", ",".join(["h"] * 33)])
def test_servers_set_constant_invalid_is_init_error(bad: str) -> None:
    msg = init_error("gman_servers_set", Arg(bad.encode(), const=True))
    assert msg is not None and msg.startswith("gman_servers_set: ") and len(msg) < 80


def test_servers_set_non_constant_invalid_or_null_returns_null(gearmand: Gearmand) -> None:
    set_servers(gearmand.address)
    assert call_once("gman_servers_set", Arg(b"a:0")) is None
    assert call_once("gman_servers_set", Arg(None)) is None
    assert call_once("gman_servers_set", Arg(None, const=True)) is None
    assert submit("unchanged", b"x").startswith(b"H:")  # list unchanged
    assert gearmand.queued("unchanged") == 1


@pytest.mark.parametrize("args", [(), (b"a", b"b", b"c")])
def test_servers_set_arity(args) -> None:
    msg = init_error("gman_servers_set", *args)
    assert msg is not None and msg.startswith("gman_servers_set")


# ---------------------------------------------------------- do_background

@pytest.mark.parametrize("args", [(), (b"f",), (b"f", b"w", b"u", b"x")])
def test_do_background_arity(args) -> None:
    msg = init_error("gman_do_background", *args)
    assert msg is not None and msg.startswith("gman_do_background") and len(msg) < 80


def test_do_background_init_metadata() -> None:
    with Udf("gman_do_background", [Arg(1), Arg(2.5)]) as f:
        assert f.initid.maybe_null == 1
        assert f.initid.ptr == harness.ffi.NULL
        assert list(f.arg_type[0:2]) == [STRING_RESULT, STRING_RESULT]


def test_do_background_queues_job(gearmand: Gearmand) -> None:
    set_servers(gearmand.address)
    handle = submit("syncToRedis", b'{"id":1,"name":"x"}')
    assert handle is not None and handle.startswith(b"H:")
    assert gearmand.status()["syncToRedis"] == (1, 0, 0)


def test_do_background_generated_uniques_differ(gearmand: Gearmand) -> None:
    set_servers(gearmand.address)
    handles = {submit("u", b"same") for _ in range(20)}
    assert None not in handles and len(handles) == 20
    assert gearmand.queued("u") == 20


def test_do_background_caller_unique_coalesces(gearmand: Gearmand) -> None:
    set_servers(gearmand.address)
    h1 = submit("c", b"a", b"key-1")
    h2 = submit("c", b"b", b"key-1")
    assert h1 is not None and h1 == h2
    assert gearmand.queued("c") == 1
    assert submit("c", b"a", None) is not None  # NULL unique: generated
    assert submit("c", b"a", b"") is not None   # empty unique: generated
    assert submit("c", b"a", b"u" * 64) is None  # too long
    assert gearmand.queued("c") == 3


def test_do_background_null_arguments(gearmand: Gearmand) -> None:
    set_servers(gearmand.address)
    assert call_once("gman_do_background", Arg(None), Arg(b"w")) is None
    assert call_once("gman_do_background", Arg(b""), Arg(b"w")) is None
    assert call_once("gman_do_background", Arg(b"nullwl"), Arg(None)) is not None
    assert gearmand.queued("nullwl") == 1


def test_do_background_coerces_numbers(gearmand: Gearmand) -> None:
    set_servers(gearmand.address)
    assert call_once("gman_do_background", Arg(b"num"), Arg(42, type=INT_RESULT)) is not None
    assert gearmand.queued("num") == 1


def test_one_connection_per_thread_reused(gearmand: Gearmand) -> None:
    set_servers(gearmand.address)
    assert submit("reuse", b"0") is not None
    # this thread's connection, plus maybe gearsync_send's sender thread, which follows the
    # server list with what earlier tests left it: delivered first (the flush waits until
    # nothing is unacknowledged; the sender keeps its connection), then counted once steady
    assert wait_for(lambda: call_once("gearsync_send_flush") == 0, 30)
    counts = [gearmand.connections()]
    wait_for(lambda: counts.append(gearmand.connections()) or counts[-1] == counts[-2], 5, 0.2,
             "a steady number of connections")
    base = counts[-1]
    assert base >= 1
    for i in range(1, 200):  # 200 trigger rows: 200 init/deinit pairs
        assert submit("reuse", b"%d" % i) is not None
    assert gearmand.queued("reuse") == 200
    assert gearmand.connections() == base
    with Udf("gman_do_background", [Arg(b"reuse"), Arg(b"")]) as f:  # one statement
        for i in range(100):
            assert f([b"reuse", b"%d" % i]) is not None
    assert gearmand.connections() == base


def test_connection_per_thread_and_freed_at_thread_exit(gearmand: Gearmand) -> None:
    set_servers(gearmand.address)
    assert submit("t", b"main") is not None
    results = []
    barrier = threading.Barrier(4)

    def work() -> None:
        for i in range(20):
            results.append(submit("t", b"%d" % i))
        barrier.wait(5)  # all threads connected at once
        barrier.wait(5)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    barrier.wait(5)
    assert gearmand.connections() == 4  # main + 3 threads
    barrier.wait(5)
    for t in threads:
        t.join()
    assert None not in results and len(results) == 60
    assert wait_for(lambda: gearmand.connections() == 1)  # thread-exit destructor


def test_server_list_change_rebuilds(gearmand_factory) -> None:
    a, b = gearmand_factory(), gearmand_factory()
    set_servers(a.address)
    assert submit("chg") is not None
    assert a.connections() == 1
    set_servers(b.address)
    assert submit("chg") is not None
    assert a.queued("chg") == 1 and b.queued("chg") == 1
    assert wait_for(lambda: a.connections() == 0)
    assert b.connections() == 1


def test_gearmand_down_returns_null_quickly() -> None:
    set_servers(f"127.0.0.1:{free_port()}")
    t = time.monotonic()
    assert submit("down") is None
    assert submit("down") is None
    assert time.monotonic() - t < 0.5


def test_gearmand_restart_reconnects(gearmand_factory, tmp_path) -> None:
    g = gearmand_factory()
    set_servers(g.address)
    assert submit("r") is not None
    g.stop()
    assert submit("r") is None  # down: NULL, the statement goes on
    g.start()  # same port again (the old client must notice and reconnect)
    try:
        assert wait_for(lambda: _can_connect(g.port), 10)
        # the breaker opened when the submit failed: it lets a probe through
        # after at most breaker_max_ms (2 s)
        assert wait_for(lambda: submit("r") is not None, 5)
        assert g.queued("r") == 1
    finally:
        g.stop()


def test_stale_connection_retried_once(gearmand_factory, tmp_path) -> None:
    """gearmand restarted between two rows: the second row still gets a handle."""
    g = gearmand_factory()
    set_servers(g.address)
    assert submit("s") is not None
    g.stop()
    g.start()  # same port again: the client's connection is stale
    try:
        assert wait_for(lambda: _can_connect(g.port), 10)
        assert submit("s") is not None
        assert g.queued("s") == 1
    finally:
        g.stop()


def _can_connect(port: int) -> bool:
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize("warm", [True, False], ids=["reused-connection", "fresh-connection"])
def test_hung_gearmand_returns_null_within_timeout(gearmand: Gearmand, warm: bool) -> None:
    set_servers(gearmand.address)
    if warm:
        assert submit("hung") is not None
    gearmand.pause()
    try:
        t = time.monotonic()
        assert submit("hung") is None
        elapsed = time.monotonic() - t
        assert 0.2 <= elapsed < 1.0, elapsed
        t = time.monotonic()
        assert submit("hung") is None
        assert time.monotonic() - t < 1.0
    finally:
        gearmand.resume()
    assert wait_for(lambda: submit("hung") is not None, 5)  # recovers (breaker probe)


def test_timeout_set(gearmand: Gearmand) -> None:
    assert call_once("gearsync_timeout_set", 700) == 700
    set_servers(gearmand.address)
    assert submit("ts") is not None
    gearmand.pause()
    try:
        t = time.monotonic()
        assert submit("ts") is None
        elapsed = time.monotonic() - t
        assert 0.6 <= elapsed < 1.5, elapsed
    finally:
        gearmand.resume()


@pytest.mark.parametrize("bad", [0, -1])
def test_timeout_set_invalid(bad: int) -> None:
    msg = init_error("gearsync_timeout_set", Arg(bad, const=True))
    assert msg is not None and msg.startswith("gearsync_timeout_set") and len(msg) < 80
    assert call_once("gearsync_timeout_set", Arg(bad)) is None
    assert call_once("gearsync_timeout_set", Arg(None)) is None
    assert init_error("gearsync_timeout_set") is not None
    assert call_once("gearsync_timeout_set", Arg(b"300", type=STRING_RESULT)) == 300


@pytest.mark.parametrize("const", [True, False])
def test_timeouts_above_the_maximum_are_clamped(const: bool) -> None:
    """Whatever is asked, a hung gearmand holds a writer at most 10 s (background) / 60 s
    (foreground)."""
    try:
        assert call_once("gearsync_timeout_set", Arg(3_600_000, const=const)) == 10_000
        assert call_once("gearsync_timeout_set", Arg(10_001, const=const)) == 10_000
        assert call_once("gearsync_timeout_set", Arg(10_000, const=const)) == 10_000
        assert call_once("gearsync_do_timeout_set", Arg(2 ** 62, const=const)) == 60_000
        assert call_once("gearsync_do_timeout_set", Arg(59_999, const=const)) == 59_999
    finally:
        call_once("gearsync_timeout_set", 250)
        call_once("gearsync_do_timeout_set", 5000)


def test_timeout_from_environment(gearmand: Gearmand) -> None:
    r = run_child(f"""
        import os, signal, time, harness
        from harness import Arg, call_once
        call_once("gman_servers_set", Arg(b"{gearmand.address}", const=True))
        assert call_once("gman_do_background", b"env", b"w") is not None
        os.kill({gearmand.proc.pid}, signal.SIGSTOP)
        while open("/proc/{gearmand.proc.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "T":
            time.sleep(0.005)
        try:
            t = time.monotonic()
            assert call_once("gman_do_background", b"env", b"w") is None
            print(time.monotonic() - t)
        finally:
            os.kill({gearmand.proc.pid}, signal.SIGCONT)
        """, GEARSYNC_UDF_TIMEOUT_MS="600")
    assert r.returncode == 0, r.stderr
    assert 0.55 <= float(r.stdout) < 1.4


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_no_uuid_generation_per_job(gearmand: Gearmand) -> None:
    code = f"""
        import harness
        from harness import Arg, call_once
        call_once("gman_servers_set", Arg(b"{gearmand.address}", const=True))
        for i in range(5):
            assert call_once("gman_do_background", b"uu", b"w") is not None
        """
    r = subprocess.run(
        ["strace", "-f", "-e", "trace=connect,setsockopt", sys.executable, "-c",
         textwrap.dedent(code)], cwd=os.path.dirname(__file__), capture_output=True,
        text=True, timeout=60, env={**os.environ, "GEARSYNC_UDF_SO": str(harness.so_path())})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "uuidd" not in r.stderr
    assert r.stderr.count(f"htons({gearmand.port})") == 1  # one connection
    assert "TCP_NODELAY" in r.stderr  # libgearman sets it by itself
    assert gearmand.queued("uu") == 5


def test_dlclose_with_live_thread_clients(gearmand: Gearmand) -> None:
    """DROP FUNCTION unloads the .so; threads that used it exit afterwards."""
    r = run_child(f"""
        import threading, harness
        from harness import Arg, call_once
        lib = harness.load()
        call_once("gman_servers_set", Arg(b"{gearmand.address}", const=True))
        go, done = threading.Event(), threading.Event()
        def work():
            assert call_once("gman_do_background", b"dl", b"w") is not None
            done.set()
            go.wait()          # exits after the library is gone
        t = threading.Thread(target=work)
        t.start()
        done.wait()
        assert call_once("gman_do_background", b"dl", b"main") is not None
        harness.ffi.dlclose(lib)
        go.set()
        t.join()
        print("ok")
        """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
    assert gearmand.queued("dl") == 2
    assert wait_for(lambda: gearmand.connections() == 0)

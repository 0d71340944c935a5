"""gearsync_send with ``spread = on`` in gearsync_udf.cnf, through the cffi harness against real
gearmand: one connection per server of the default list, each record to server (FNV-1a of its
route % N), the next live server in ring order when that one is down, and the unacknowledged
batches of a dead connection queued again for the live one.

spread is read from the config file once per process, so each case runs in a child process."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable, Sequence

from gearman_peers import grab_all
from gearsync.envelope import decode
from gearsync.testing.stack import Gearmand, free_port
from harness import run_child, so_path


def fnv1a(route: bytes) -> int:
    """The route hash of udf/send.c (0 is "no route", so it becomes 1)."""
    h = 2166136261
    for c in route:
        h = ((h ^ c) * 16777619) & 0xFFFFFFFF
    return h or 1


def cnf(tmp_path: Path, servers: str, spread: str = "on") -> str:
    path = tmp_path / "spread.cnf"
    path.write_text(f"servers = {servers}\nspread = {spread}\n")
    return str(path)


def payloads(g: Gearmand, function: bytes) -> list[tuple[int, bytes]]:
    """(version, payload) of every record queued on g for function, in queue order."""
    return [rec for _, w in grab_all(g, function) for rec in decode(function, w, None)]


def run_steps(code: str, steps: Sequence[Callable[[], object]], **env: str) -> tuple[int, str]:
    """run_child, but each line the child prints runs the next step here, then the child
    reads a line on stdin to go on.  (returncode, stderr)."""
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=Path(__file__).parent,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "GEARSYNC_UDF_SO": str(so_path()), **env})
    assert p.stdin is not None and p.stdout is not None
    try:
        for step in steps:
            if not p.stdout.readline():
                break
            step()
            p.stdin.write("\n")
            p.stdin.flush()
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode, err


SEND = """\
    from harness import Udf, Arg, call_once
    def send(fn, n, route_of, payload_of):
        with Udf("gearsync_send", [Arg(fn), Arg(b"w"), Arg(b"r")]) as f:
            out = [f([fn, payload_of(i), route_of(i)]) for i in range(n)]
        assert None not in out
        return out
    """


def child(code: str) -> str:
    """The child's program: send() above, then code."""
    return textwrap.dedent(SEND) + textwrap.dedent(code)


def test_each_route_keeps_the_server_its_hash_picks(gearmand_factory, tmp_path: Path) -> None:
    a, b = gearmand_factory(), gearmand_factory()
    r = run_child(child("""
        send(b"sp", 3000, lambda i: b"key%d" % (i % 60), lambda i: b"key%d:%d" % (i % 60, i))
        assert call_once("gearsync_send_flush") == 0
        """), GEARSYNC_UDF_CONFIG=cnf(tmp_path, f"{a.address},{b.address}"))
    assert r.returncode == 0, r.stderr
    assert "gearsync_send spreads over the list (spread on)" in r.stderr
    got = {0: payloads(a, b"sp"), 1: payloads(b, b"sp")}
    print(f"\n3,000 records over 60 routes: {len(got[0])} on the first server, {len(got[1])} on the second")
    assert len(got[0]) + len(got[1]) == 3000
    assert got[0] and got[1]  # spreading really happens
    for server, recs in got.items():
        for version, p in recs:
            route = p.split(b":")[0]
            assert fnv1a(route) % 2 == server, (route, server)  # route % N, always
        for k in range(60):  # one route's records in the order they were sent
            mine = [int(p.split(b":")[1]) for _, p in recs if p.split(b":")[0] == b"key%d" % k]
            assert mine == sorted(mine)
        assert [v for v, _ in recs] == sorted(v for v, _ in recs)  # one connection: in order


def test_send_change_is_routed_by_its_key(gearmand_factory, tmp_path: Path) -> None:
    """A generated direct trigger's gearsync_send_change keeps one key on the server its hash
    picks, the same server gearsync_send(..., key) picks."""
    a, b = gearmand_factory(), gearmand_factory()
    r = run_child(child("""
        with Udf("gearsync_send_change", [Arg(b"ch")] + [Arg(b"x")] * 5) as f:
            out = [f([b"ch", b"db.t", b"update", b"key%d" % (i % 40), None, b"[%d]" % i]) for i in range(800)]
        assert None not in out
        assert call_once("gearsync_send_flush") == 0
        """), GEARSYNC_UDF_CONFIG=cnf(tmp_path, f"{a.address},{b.address}"))
    assert r.returncode == 0, r.stderr
    got = {0: payloads(a, b"ch"), 1: payloads(b, b"ch")}
    assert got[0] and got[1] and len(got[0]) + len(got[1]) == 800
    for server, recs in got.items():
        for _, p in recs:
            key = bytes.fromhex(json.loads(p)["k"])
            assert fnv1a(key) % 2 == server, (key, server)


def test_records_without_a_route_go_to_both(gearmand_factory, tmp_path: Path) -> None:
    """No route: whichever connection has room takes them (a burst fills both windows)."""
    a, b = gearmand_factory(), gearmand_factory()
    r = run_child("""
        from harness import Udf, Arg, call_once
        with Udf("gearsync_send", [Arg(b"nr"), Arg(b"w")]) as f:
            out = [f([b"nr", b"%d" % i]) for i in range(20000)]
        assert None not in out
        assert call_once("gearsync_send_flush") == 0
        """, GEARSYNC_UDF_CONFIG=cnf(tmp_path, f"{a.address},{b.address}"))
    assert r.returncode == 0, r.stderr
    ra, rb = payloads(a, b"nr"), payloads(b, b"nr")
    print(f"\n20,000 records without a route: {len(ra)} / {len(rb)}")
    assert sorted(int(p) for _, p in ra + rb) == list(range(20000))
    assert ra and rb


def test_a_server_down_its_routes_go_to_the_next_live_one(gearmand_factory, tmp_path: Path) -> None:
    a = gearmand_factory()
    dead = f"127.0.0.1:{free_port()}"
    r = run_child(child("""
        send(b"dn", 500, lambda i: b"k%d" % i, lambda i: b"%d" % i)
        assert call_once("gearsync_send_flush") == 0
        """), GEARSYNC_UDF_CONFIG=cnf(tmp_path, f"{dead},{a.address}"))
    assert r.returncode == 0, r.stderr
    assert f"gearsync_send: cannot connect to {dead}; its routes go to the next live server" in r.stderr
    assert sorted(int(p) for _, p in payloads(a, b"dn")) == list(range(500))


def test_hung_server_batches_move_to_the_live_one_then_routes_come_back(gearmand_factory,
                                                                        tmp_path: Path) -> None:
    """The second server is SIGSTOPped with records in flight and queued for it: after the
    timeout its unacknowledged batch and its routes go to the first server (nothing waits for
    it, nothing is lost); once it is back (restarted) its routes return to it."""
    a, b = gearmand_factory(), gearmand_factory()
    routes = [b"k%d" % i for i in range(40)]
    on_b = {rt for rt in routes if fnv1a(rt) % 2 == 1}
    assert on_b and len(on_b) < len(routes)
    r = run_child(child(f"""
        import os, signal, time
        from gearsync.testing.processes import wait_for
        R = {routes!r}
        send(b"hg", 400, lambda i: R[i % 40], lambda i: b"before %d" % i)
        assert call_once("gearsync_send_flush") == 0
        os.kill({b.pid}, signal.SIGSTOP)
        t = time.monotonic()
        send(b"hg", 2000, lambda i: R[i % 40], lambda i: b"during %d" % i)
        took = time.monotonic() - t
        assert wait_for(lambda: call_once("gearsync_send_flush") == 0, 20)
        print(took)
        """), GEARSYNC_UDF_CONFIG=cnf(tmp_path, f"{a.address},{b.address}"))
    os.kill(b.pid, signal.SIGCONT)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.split()[-1]) < 1.0  # no call waited for the hung server
    assert "timed out (no answer in 250 ms)" in r.stderr
    assert "to be re-sent to the server that now owns their route" in r.stderr
    during = {p for _, p in payloads(a, b"hg") if p.startswith(b"during")}
    assert during == {b"during %d" % i for i in range(2000)}  # all of them, on the live server
    before_b = [p for _, p in payloads(b, b"hg") if p.startswith(b"before")]
    assert sorted(before_b) == sorted(b"before %d" % i for i in range(400) if routes[i % 40] in on_b)


def test_a_killed_server_restarted_gets_its_routes_back(gearmand_factory, tmp_path: Path) -> None:
    a, b = gearmand_factory(), gearmand_factory()
    routes = [b"k%d" % i for i in range(40)]
    on_b = {rt for rt in routes if fnv1a(rt) % 2 == 1}
    rc, err = run_steps(child(f"""
        import sys, time
        from gearsync.testing.processes import wait_for
        R = {routes!r}
        send(b"rb", 200, lambda i: R[i % 40], lambda i: b"one %d" % i)
        assert call_once("gearsync_send_flush") == 0
        print("kill", flush=True)
        sys.stdin.readline()  # the parent killed b
        send(b"rb", 400, lambda i: R[i % 40], lambda i: b"two %d" % i)
        assert wait_for(lambda: call_once("gearsync_send_flush") == 0, 20)
        print("restart", flush=True)
        sys.stdin.readline()  # the parent restarted b on its port
        time.sleep(0.6)  # b's breaker lets a probe through (and it succeeds)
        send(b"rb", 400, lambda i: R[i % 40], lambda i: b"three %d" % i)
        assert wait_for(lambda: call_once("gearsync_send_flush") == 0, 20)
        """), [b.kill, b.start], GEARSYNC_UDF_CONFIG=cnf(tmp_path, f"{a.address},{b.address}"))
    assert rc == 0, err
    ra = [p for _, p in payloads(a, b"rb")]
    rb = [p for _, p in payloads(b, b"rb")]
    assert {p for p in ra if p.startswith(b"two")} == {b"two %d" % i for i in range(400)}
    assert sorted(p for p in rb if p.startswith(b"three")) == \
        sorted(b"three %d" % i for i in range(400) if routes[i % 40] in on_b)
    assert sorted(p for p in ra if p.startswith(b"three")) == \
        sorted(b"three %d" % i for i in range(400) if routes[i % 40] not in on_b)


def test_spread_off_by_default_and_bad_values_logged(gearmand_factory, tmp_path: Path) -> None:
    a, b = gearmand_factory(), gearmand_factory()
    r = run_child(child("""
        send(b"off", 300, lambda i: b"k%d" % i, lambda i: b"%d" % i)
        assert call_once("gearsync_send_flush") == 0
        """), GEARSYNC_UDF_CONFIG=cnf(tmp_path, f"{a.address},{b.address}", spread="maybe"))
    assert r.returncode == 0, r.stderr
    assert "bad setting spread" in r.stderr
    assert "gearsync_send uses the first reachable server" in r.stderr
    assert len(payloads(a, b"off")) == 300 and payloads(b, b"off") == []

"""gearsync_send / gearsync_send_flush / gearsync_seq through the cffi harness against real
gearmand: one sender thread per process, records batched into envelope jobs, kept until
gearmand acknowledged them and re-sent after a lost connection.

The sender is process-wide and follows the default server list, which each test sets."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, List, Optional

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import harness
from gearman_peers import grab_all
from gearsync.envelope import BadSignature, decode
from gearsync.testing.processes import wait_for
from gearsync.testing.stack import Gearmand, free_port
from harness import Arg, Udf, call_once, init_error, run_child

UNIQUE_RE = re.compile(rb"^gs-[0-9a-f]{16}-[0-9a-f]+$")
QUEUE_BYTES = 16 << 20


# ------------------------------------------------------------------ helpers

def set_servers(servers: str) -> None:
    assert call_once("gman_servers_set", Arg(servers.encode(), const=True)) is not None


def send(function: bytes = b"f", workload: Optional[bytes] = b"w", *route) -> Optional[bytes]:
    """One trigger row: init, call, deinit (non-constant arguments, like NEW.x)."""
    return call_once("gearsync_send", function, workload, *route)


def flush() -> int:
    return call_once("gearsync_send_flush")


def records(g: Gearmand, function: bytes, secret: bytes | None = None) -> tuple[list, list]:
    """(jobs as (unique, records), every (version, payload) in order) of the queued jobs."""
    jobs = [(u, decode(function, w, secret)) for u, w in grab_all(g, function)]
    return jobs, [r for _, recs in jobs for r in recs]


def threads_now() -> int:
    return len(list(Path("/proc/self/task").iterdir()))


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

@pytest.mark.parametrize("args", [(), (b"f",), (b"f", b"w", b"r", b"x")])
def test_send_arity(args) -> None:
    msg = init_error("gearsync_send", *args)
    assert msg is not None and msg.startswith("gearsync_send") and len(msg) < 80


def test_flush_arity() -> None:
    assert init_error("gearsync_send_flush", b"x") == "gearsync_send_flush: expects no arguments"


def test_send_init_metadata() -> None:
    with Udf("gearsync_send", [Arg(1), Arg(2.5), Arg(3)]) as f:
        assert f.initid.maybe_null == 1
        assert f.initid.max_length == 20
        assert list(f.arg_type[0:3]) == [0, 0, 0]  # STRING_RESULT


# ------------------------------------------------------------------ versions

def test_seq_strictly_increasing_across_threads_and_send(gm: Gearmand) -> None:
    got: List[int] = []
    lock = threading.Lock()

    def run() -> None:
        mine = []
        with Udf("gearsync_seq", []) as s, Udf("gearsync_send", [Arg(b"seq"), Arg(b"w")]) as f:
            for i in range(2000):
                mine.append(s() if i % 2 else int(f()))
        with lock:
            got.extend(mine)
        assert all(b > a for a, b in zip(mine, mine[1:]))

    ts = [threading.Thread(target=run) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(set(got)) == len(got) == 8000  # never the same value twice
    assert flush() == 0


# ------------------------------------------------------------------ delivery

def test_records_arrive_byte_exact_in_order_with_their_versions(gm: Gearmand) -> None:
    workloads = [b'{"id":1,"name":"x"}', b"", b"\x00", b"a\x00b\x00\x00c", bytes(range(256)),
                 "é€😀".encode(), b"\xff\xfe invalid utf-8", b"x" * 200_000, b"GS1\x00RES\x00REQ"]
    versions = [send(b"exact", w) for w in workloads]
    versions.append(send(b"exact", None))  # NULL workload: an empty record
    assert all(v is not None and v.isdigit() for v in versions)
    assert flush() == 0
    jobs, recs = records(gm, b"exact")
    assert recs == [(int(v), w) for v, w in zip(versions, workloads + [b""])]
    assert all(UNIQUE_RE.match(u) for u, _ in jobs)
    assert len({u for u, _ in jobs}) == len(jobs)


def _change(s: bytes | None, o: bytes | None, k: bytes | None, ok: bytes | None, pk: object) -> dict:
    """The job gearsync_send_change sends for these arguments, decoded: text fields as UTF-8
    (U+FFFD for ill-formed bytes), keys as upper-case hex, ``pk`` already parsed."""
    def text(b: bytes | None) -> str | None:
        return None if b is None else b.decode("utf-8", "replace")
    return {"s": text(s), "o": text(o), "k": None if k is None else k.hex().upper(),
            "ok": None if ok is None else ok.hex().upper(), "pk": pk}


def test_send_change_builds_the_direct_job(gm: Gearmand) -> None:
    """gearsync_send_change's record is the JSON of JSON_OBJECT('s', source, 'o', op, 'k',
    HEX(key), 'ok', HEX(old), 'pk', pk): any bytes of the keys as hex, source and op escaped
    (ill-formed UTF-8 as U+FFFD), pk nested as given, NULLs as null."""
    cases = [
        (b"shop.users", b"insert", b"u:1", None, b"[1]"),
        (b'q"uo\\te\n\x00', b"update", bytes(range(256)), b"old\x00\xff", b' [1, "a\\"b", null] '),
        ("é€😀".encode(), b"delete", b"", None, None),
        (b"\xff\xfe bad", None, None, b"", b"{}"),
    ]
    versions = [call_once("gearsync_send_change", b"chg", *c) for c in cases]
    assert all(v is not None and v.isdigit() for v in versions)
    assert flush() == 0
    _, recs = records(gm, b"chg")
    assert [v for v, _ in recs] == [int(v) for v in versions]
    got = [json.loads(p) for _, p in recs]
    assert got == [_change(s, o, k, ok, None if pk is None else json.loads(pk)) for s, o, k, ok, pk in cases]
    assert recs[0][1] == b'{"s":"shop.users","o":"insert","k":"753A31","ok":null,"pk":[1]}'


def _refuse(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


_json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                            lambda inner: st.lists(inner, max_size=3), max_leaves=8)
_bytes_or_null = st.none() | st.binary(max_size=24) | st.text(max_size=8).map(str.encode)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(_bytes_or_null, _bytes_or_null, _bytes_or_null, _bytes_or_null,
                          st.none() | _json_values.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=8)),
                min_size=1, max_size=12))
def test_send_change_property(gm: Gearmand, cases: list) -> None:
    """Any arguments: a record is sent exactly when pk is NULL or valid JSON, and it decodes to
    the fields given (text fields as UTF-8 with U+FFFD for ill-formed bytes, keys as hex)."""
    name = b"chgprop"
    records(gm, name)  # what an earlier example left
    sent = []
    for s, o, k, ok, pk in cases:
        v = call_once("gearsync_send_change", name, s, o, k, ok, pk)
        try:
            expect_pk, valid = None if pk is None else json.loads(pk.decode("utf-8"), parse_constant=_refuse), True
        except (ValueError, UnicodeDecodeError):
            valid = False
        if not valid:
            assert v is None
            continue
        assert v is not None
        sent.append((int(v), _change(s, o, k, ok, expect_pk)))
    assert flush() == 0
    got = [(ver, json.loads(p)) for ver, p in records(gm, name)[1]]
    assert got == sent


@pytest.mark.parametrize("pk", [b"[1", b"", b"[1] x", b"'a'", b"[\xff]", b"NaN"])
def test_send_change_refuses_a_pk_that_is_not_json(gm: Gearmand, pk: bytes) -> None:
    """Nothing is sent for a pk a trigger's JSON_ARRAY cannot have made: NULL, as for a bad function."""
    assert call_once("gearsync_send_change", b"chgbad", b"s", b"insert", b"k", None, pk) is None
    assert call_once("gearsync_send_change", None, b"s", b"insert", b"k", None, b"[1]") is None
    assert flush() == 0
    assert records(gm, b"chgbad")[1] == []


@pytest.mark.parametrize("n", [0, 5, 7])
def test_send_change_arity(n: int) -> None:
    msg = init_error("gearsync_send_change", *([b"x"] * n))
    assert msg == "gearsync_send_change: expects (function, source, op, key, old_key, pk)"


def test_10000_records_batched_on_one_connection(gm: Gearmand) -> None:
    with Udf("gearsync_send", [Arg(b"many"), Arg(b"w")]) as f:
        versions = [f([b"many", b"payload %d" % i]) for i in range(10_000)]
    assert None not in versions
    assert flush() == 0
    jobs, recs = records(gm, b"many")
    assert [p for _, p in recs] == [b"payload %d" % i for i in range(10_000)]
    assert [v for v, _ in recs] == [int(v) for v in versions]
    print(f"\n10,000 records in {len(jobs)} jobs (largest {max(len(r) for _, r in jobs)} records)")
    assert len(jobs) < 10_000  # rows that arrive while a batch is in flight share a job
    assert max(len(r) for _, r in jobs) <= 256
    assert gm.connections() == 1


def test_batches_hold_one_function_each_in_order(gm: Gearmand) -> None:
    for i in range(3000):
        assert send(b"fa" if i % 3 else b"fb", b"%d" % i) is not None
    assert flush() == 0
    _, a = records(gm, b"fa")
    _, b = records(gm, b"fb")
    assert [int(p) for _, p in a] == [i for i in range(3000) if i % 3]
    assert [int(p) for _, p in b] == [i for i in range(3000) if not i % 3]


def test_big_records_partial_writes_byte_exact(gm: Gearmand) -> None:
    """Records far larger than the socket buffer: partial writes, batches capped at 256 KiB
    (10.8 MB in a burst: within the 16 MiB queue)."""
    workloads = [bytes([i % 251]) * (150_000 + i * 1_013) for i in range(60)]
    with Udf("gearsync_send", [Arg(b"big"), Arg(b"w")]) as f:
        versions = [f([b"big", w]) for w in workloads]
    assert None not in versions
    assert flush() == 0
    jobs, recs = records(gm, b"big")
    assert [p for _, p in recs] == workloads
    for _, r in jobs:  # one record alone, or several within 256 KiB
        assert len(r) == 1 or sum(len(p) for _, p in r) <= 256 * 1024


def test_record_larger_than_a_quarter_of_the_queue_is_null(gm: Gearmand) -> None:
    assert send(b"huge", b"x" * (QUEUE_BYTES // 4)) is None
    assert send(b"huge", b"x" * (QUEUE_BYTES // 4 - 1024)) is not None
    assert flush() == 0
    assert gm.queued("huge") == 1


def test_route_is_accepted_and_changes_nothing(gm: Gearmand) -> None:
    for route in (b"12", None, b"", b"k" * 1000, b"\x00"):
        assert send(b"route", b"w", route) is not None
    assert flush() == 0
    assert len(records(gm, b"route")[1]) == 5


def test_bad_function_is_null(gm: Gearmand) -> None:
    assert send(None, b"w") is None
    assert send(b"", b"w") is None
    assert send(b"a\x00b", b"w") is None
    assert send(b"f" * 512, b"w") is None
    assert send(b"f" * 511, b"w") is not None
    assert flush() == 0


def test_flush_with_nothing_pending_is_zero(gm: Gearmand) -> None:
    assert flush() == 0


# ------------------------------------------------------------------ faults

def test_gearmand_down_records_wait_then_arrive(tmp_path: Path) -> None:
    """Nothing listens: calls still return at once (the queue takes them), flush reports them
    pending; when gearmand comes up on that port every record arrives."""
    g = Gearmand(tmp_path / "late", threads=1)  # port chosen, not started
    set_servers(g.address)
    t0 = time.perf_counter()
    with Udf("gearsync_send", [Arg(b"late"), Arg(b"w")]) as f:
        versions = [f([b"late", b"%d" % i]) for i in range(2000)]
    took = time.perf_counter() - t0
    print(f"\ngearmand down: 2,000 calls in {took * 1e3:.1f} ms")
    assert None not in versions
    assert took < 1.0  # no call waits for the network (~0.1 s through cffi here)
    assert flush() == 2000  # after the 250 ms timeout: all still pending
    with g:
        assert wait_for(lambda: flush() == 0, 10)
        _, recs = records(g, b"late")
    assert [int(p) for _, p in recs] == list(range(2000))


def test_queue_full_is_null_counted_and_logged(tmp_path: Path) -> None:
    """gearmand unreachable long enough: the queue fills (16 MiB), then NULL until there is
    room again; the error log says how many were refused.  Run in a child process: its
    sender's queue is its own."""
    g = Gearmand(tmp_path / "full", threads=1)
    r = run_child(f"""
        import time
        from harness import call_once, Arg, Udf
        call_once("gman_servers_set", Arg(b"{g.address}", const=True))
        big = b"z" * 65536
        with Udf("gearsync_send", [Arg(b"full"), Arg(b"w")]) as f:
            res, slowest = [], 0.0
            for i in range(600):
                t = time.perf_counter()
                res.append(f([b"full", big]))
                slowest = max(slowest, time.perf_counter() - t)
        accepted = sum(1 for x in res if x is not None)
        print(accepted, res.index(None), slowest)
        time.sleep(1.2)  # the sender reports refusals at most once a second
        """)
    assert r.returncode == 0, r.stderr
    accepted, first_null, slowest = r.stdout.split()
    assert int(accepted) == int(first_null)  # NULL from the first refusal on (no room came)
    assert 200 <= int(accepted) < 256  # 16 MiB / 64 KiB, minus headers
    assert float(slowest) < 0.05
    refused = re.findall(r"queue full \(16 MiB queued or unacknowledged\): (\d+) records refused "
                         r"\(NULL returned\)", r.stderr)
    assert refused and len(refused) <= 3  # at most a line a second
    assert sum(map(int, refused)) == 600 - int(accepted), r.stderr


def test_hung_gearmand_never_blocks_a_call_and_loses_nothing(gm: Gearmand) -> None:
    assert send(b"hung", b"before") is not None
    assert flush() == 0
    gm.pause()
    try:
        durations, versions = [], []
        with Udf("gearsync_send", [Arg(b"hung"), Arg(b"w")]) as f:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 1.0:
                t1 = time.perf_counter()
                versions.append(f([b"hung", b"during"]))
                durations.append(time.perf_counter() - t1)
        durations.sort()
        p99 = durations[int(len(durations) * 0.99)]
        print(f"\nhung gearmand: {len(versions)} calls in 1 s, p99 {p99 * 1e6:.0f} us, "
              f"slowest {durations[-1] * 1e3:.2f} ms")
        assert None not in versions
        assert p99 < 0.001  # nothing waits for gearmand ...
        assert durations[-1] < 0.2  # ... not even once the 250 ms timeout (slack: a busy machine)
    finally:
        gm.resume()
    assert wait_for(lambda: flush() == 0, 10)
    _, recs = records(gm, b"hung")
    got = {v for v, p in recs if p == b"during"}
    assert got == {int(v) for v in versions}  # every one, possibly some twice (re-sent)


def test_gearmand_restart_first_record_after_is_not_lost(gm: Gearmand) -> None:
    """Issue 13 item 1 at the library level: the connection was closed by gearmand while idle;
    the next record must not be written into the dead socket and lost."""
    assert send(b"rs", b"before") is not None
    assert flush() == 0
    gm.restart()  # same port; the in-memory queue is gone
    time.sleep(0.3)
    after = [send(b"rs", b"after %d" % i) for i in range(10)]
    assert None not in after
    assert flush() == 0
    _, recs = records(gm, b"rs")
    assert [p for _, p in recs] == [b"after %d" % i for i in range(10)]
    assert gm.connections() == 1


def test_unacknowledged_batches_resent_after_kill_and_restart(gm: Gearmand, tmp_path: Path) -> None:
    """gearmand SIGKILLed with records in flight and queued, back on the same port: what it
    never acknowledged is sent again (its in-memory queue, acknowledged jobs, is gone)."""
    for i in range(100):
        assert send(b"kill", b"acked %d" % i) is not None
    assert flush() == 0
    gm.pause()  # what follows is written but never answered
    sent = [send(b"kill", b"pending %d" % i) for i in range(500)]
    assert None not in sent
    time.sleep(0.05)
    gm.kill()
    gm.start()
    assert wait_for(lambda: flush() == 0, 10)
    _, recs = records(gm, b"kill")
    assert {p for _, p in recs} == {b"pending %d" % i for i in range(500)}
    assert [int(v) for v in sent] == sorted({v for v, _ in recs})


def test_server_list_change_moves_the_connection(tmp_path: Path) -> None:
    with Gearmand(tmp_path / "a", threads=1) as a, Gearmand(tmp_path / "b", threads=1) as b:
        set_servers(a.address)
        for _ in range(10):
            assert send(b"mv", b"1") is not None
        assert flush() == 0
        set_servers(b.address)
        for _ in range(20):
            assert send(b"mv", b"2") is not None
        assert flush() == 0
        assert len(records(a, b"mv")[1]) == 10 and len(records(b, b"mv")[1]) == 20
        assert wait_for(lambda: a.connections() == 0)
        # the first reachable server of a list
        set_servers(f"127.0.0.1:{free_port()},{a.address}")
        assert send(b"mv", b"3") is not None
        assert wait_for(lambda: flush() == 0, 5)
        assert len(records(a, b"mv")[1]) == 1


def test_one_connection_for_all_threads(gm: Gearmand) -> None:
    out: List[List[Optional[bytes]]] = []
    lock = threading.Lock()

    def run(k: int) -> None:
        with Udf("gearsync_send", [Arg(b"th"), Arg(b"w")]) as f:
            res = [f([b"th", b"%d-%d" % (k, i)]) for i in range(500)]
        with lock:
            out.append(res)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert None not in [r for res in out for r in res]
    assert flush() == 0
    assert gm.connections() == 1
    _, recs = records(gm, b"th")
    assert sorted(p for _, p in recs) == sorted(b"%d-%d" % (k, i) for k in range(4) for i in range(500))
    for k in range(4):  # each writer's records in its order
        mine = [p for _, p in recs if p.startswith(b"%d-" % k)]
        assert mine == [b"%d-%d" % (k, i) for i in range(500)]


# ------------------------------------------------------------------ signed jobs

def test_signed_jobs_verify_with_the_secret(gearmand_factory, tmp_path: Path) -> None:
    g = gearmand_factory()
    cnf = tmp_path / "s.cnf"
    cnf.write_text(f"servers = {g.address}\nsecret = correct horse\n")
    cnf.chmod(0o600)
    r = run_child("""
        from harness import call_once
        for i in range(300):
            assert call_once("gearsync_send", b"signed", b"row %d" % i) is not None
        assert call_once("gearsync_send_flush") == 0
        """, GEARSYNC_UDF_CONFIG=str(cnf))
    assert r.returncode == 0, r.stderr
    raw = grab_all(g, b"signed")
    recs = [rec for _, w in raw for rec in decode(b"signed", w, b"correct horse")]
    assert [p for _, p in recs] == [b"row %d" % i for i in range(300)]
    with pytest.raises(BadSignature):
        decode(b"signed", raw[0][1], b"wrong horse")


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
    jobs, recs = records(gm, b"cost")
    print(f"\nper call via cffi harness ({n:,} calls): gearsync_send {times['gearsync_send']:.1f} us, "
          f"gman_do_background {times['gman_do_background']:.1f} us, harness floor {floor:.1f} us; "
          f"{len(recs):,} records in {len(jobs):,} jobs")
    assert len(recs) == 2 * n + 2
    assert times["gearsync_send"] < times["gman_do_background"]


# ------------------------------------------------------------------ unload

DLCLOSE_SCRIPT = r'''
import os, sys, threading, time
sys.path.insert(0, sys.argv[3])
import harness

def tasks():
    return len(os.listdir("/proc/self/task"))

def call(lib, name, *args, const=False):
    with harness.Udf(name, [harness.Arg(a, const=const) for a in args], lib=lib) as f:
        return f()

for cycle in range(3):
    before = tasks()
    lib = harness.ffi.dlopen(sys.argv[1])
    assert call(lib, "gman_servers_set", sys.argv[2].encode(), const=True)
    sent = [call(lib, "gearsync_send", b"dl", b"c%d w%d" % (cycle, i)) for i in range(100)]
    started = tasks()
    harness.ffi.dlclose(lib)  # what DROP FUNCTION of the last UDF does in mysqld
    print("cycle", cycle, "threads", before, started, tasks(),
          "mapped", "gearsync_udf" in open("/proc/self/maps").read(), "sent", sum(1 for s in sent if s))
'''


def test_unload_joins_the_sender_and_delivers_then_loads_again(gm: Gearmand, tmp_path: Path) -> None:
    """dlclose (DROP FUNCTION of every function) stops and joins the sender thread after it
    delivered what was queued; dlopen again starts a fresh one.  Under `make fuzz` (the ASan
    build) the child runs with LeakSanitizer on: no leak may come from the library."""
    script = tmp_path / "dlclose.py"
    script.write_text(DLCLOSE_SCRIPT)
    env = dict(os.environ)
    asan = "libasan" in env.get("LD_PRELOAD", "")
    if asan:
        env["ASAN_OPTIONS"] = "detect_leaks=1:fast_unwind_on_malloc=0:detect_odr_violation=0"
    res = subprocess.run([sys.executable, str(script), str(harness.so_path()), gm.address,
                          str(Path(harness.__file__).parent)], capture_output=True, text=True,
                         timeout=120, env=env)
    if asan:  # Python leaks by design; a leak allocated by the library names it (or an
        # unloaded module) in its stack
        leaks = [blk for blk in res.stderr.split("\n\n") if "leak of" in blk]
        ours = [blk for blk in leaks if "gearsync_udf" in blk or " gs_" in blk or "unknown module" in blk]
        assert not ours, ours[0]
    else:
        assert res.returncode == 0, res.stderr
    assert "cycle 2" in res.stdout, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 3, res.stdout
    for line in lines:
        _, cycle, _, before, started, after, _, mapped, _, sent = line.split()
        assert int(started) == int(before) + 1  # one sender thread
        assert int(after) == int(before)  # joined at unload
        assert mapped == "False" and sent == "100"
    _, recs = records(gm, b"dl")
    assert sorted(p for _, p in recs) == sorted(b"c%d w%d" % (c, i) for c in range(3) for i in range(100))
    assert wait_for(lambda: gm.connections() == 0)

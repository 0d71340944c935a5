"""The asyncio Gearman worker against real gearmand and against malformed fake peers."""

from __future__ import annotations

import asyncio
import itertools
import logging
import struct
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest

from gearsync.gearman import GearmanClient, GearmanWorker, admin
from gearsync.gearman.worker import FIRST_GRABS
from gearsync.gearman.protocol import RES, PacketType, encode
from gearsync.testing.stack import Gearmand, free_port

from helpers import run, until

_names = itertools.count()


def fn_name() -> str:
    return f"fn{next(_names)}_{time.monotonic_ns()}"


def test_jobs_round_trip_and_complete(gearmand: Gearmand) -> None:
    fn = fn_name()
    payloads = [f"job {i}".encode() for i in range(200)]
    with GearmanClient(gearmand.host, gearmand.port) as c:
        handles = c.submit_many(fn, payloads, unique=[f"u{i}" for i in range(200)])
    assert len(set(handles)) == 200

    async def main() -> None:
        async with GearmanWorker([(gearmand.host, gearmand.port)], [fn]) as w:
            got = []
            while len(got) < 200:
                batch = await w.get_batch(64)
                got += batch
                assert w.complete(batch) == len(batch)
            assert [j.workload for j in got] == payloads  # one connection: FIFO
            assert [j.unique for j in got] == [f"u{i}".encode() for i in range(200)]
            assert {j.function for j in got} == {fn.encode()}
            await until(lambda: _total(gearmand, fn) == 0, what="queue drained")
    run(main())


def _total(g: Gearmand, fn: str) -> int:
    for s in admin.status(g.host, g.port):
        if s.function == fn:
            return s.total
    return 0


def test_in_hand_limit_pause_and_resume(gearmand: Gearmand) -> None:
    fn = fn_name()
    with GearmanClient(gearmand.host, gearmand.port) as c:
        c.submit_many(fn, [b"%d" % i for i in range(100)])

    async def main() -> None:
        async with GearmanWorker([(gearmand.host, gearmand.port)], [fn], window=4, max_in_hand=10) as w:
            await until(lambda: w.pending == 10, what="10 jobs in hand")
            await asyncio.sleep(0.2)
            assert w.pending == 10  # never more than max_in_hand without answers
            link = w._servers[0].link
            assert link is not None and link.outstanding == 0 and link.in_hand == 10
            first = await w.get_batch(100)
            w.pause()
            w.complete(first)
            await asyncio.sleep(0.2)
            assert w.pending == 0  # paused: answers sent, no new grabs
            w.resume()
            await until(lambda: w.pending == 10, what="grabbing resumes")
            rest = first
            while len(rest) < 100:
                batch = await w.get_batch(100)
                assert link.outstanding <= 4
                w.complete(batch)
                rest += batch
            assert sorted(int(j.workload) for j in rest) == list(range(100))
    run(main())


def test_sleep_then_noop_wakeup(gearmand: Gearmand) -> None:
    fn = fn_name()

    async def main() -> None:
        async with GearmanWorker([(gearmand.host, gearmand.port)], [fn]) as w:
            await w.wait_connected()
            link = w._servers[0].link
            assert link is not None
            await until(lambda: link.sleeping, what="PRE_SLEEP")
            assert link.outstanding == 0
            t0 = time.monotonic()
            with GearmanClient(gearmand.host, gearmand.port) as c:
                c.submit_bg(fn, b"wake up")
            batch = await asyncio.wait_for(w.get_batch(10), 2)
            assert [j.workload for j in batch] == [b"wake up"]
            assert time.monotonic() - t0 < 1.0
            w.complete(batch)
            await until(lambda: link.sleeping, what="asleep again")
    run(main())


def test_several_servers(tmp_path: Path) -> None:
    fn = fn_name()
    with Gearmand(tmp_path / "a") as a, Gearmand(tmp_path / "b") as b:
        for g, tag in ((a, b"a"), (b, b"b")):
            with GearmanClient(g.host, g.port) as c:
                c.submit_many(fn, [tag + b"%d" % i for i in range(50)])

        async def main() -> None:
            async with GearmanWorker([(a.host, a.port), (b.host, b.port)], [fn]) as w:
                got: list[bytes] = []
                while len(got) < 100:
                    batch = await w.get_batch(1000)
                    w.complete(batch)
                    got += [j.workload for j in batch]
                assert sorted(got) == sorted([b"a%d" % i for i in range(50)] + [b"b%d" % i for i in range(50)])
                assert {j for j in (w._servers[0].name, w._servers[1].name)} == {a.address, b.address}
        run(main())


def test_unanswered_jobs_are_requeued_on_close(gearmand: Gearmand) -> None:
    fn = fn_name()
    with GearmanClient(gearmand.host, gearmand.port) as c:
        c.submit_many(fn, [b"%d" % i for i in range(20)])

    async def main() -> None:
        async with GearmanWorker([(gearmand.host, gearmand.port)], [fn]) as w:
            await until(lambda: w.pending == 20)
            half = await w.get_batch(10)
            w.complete(half)
        async with GearmanWorker([(gearmand.host, gearmand.port)], [fn]) as w2:
            await until(lambda: w2.pending == 10, what="requeued jobs")
            again = await w2.get_batch(100)
            assert sorted(int(j.workload) for j in again) == list(range(10, 20))
            w2.complete(again)
    run(main())


def test_reconnect_after_gearmand_restart(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fn = fn_name()
    g = Gearmand(tmp_path / "g").start()
    try:
        async def main() -> None:
            async with GearmanWorker([(g.host, g.port)], [fn], backoff_max=0.5) as w:
                await w.wait_connected()
                await asyncio.to_thread(g.stop)
                await until(lambda: w.connected == 0, what="disconnect")
                await asyncio.sleep(0.5)  # a few refused connects
                await asyncio.to_thread(g.start)
                await w.wait_connected(timeout=5)
                with GearmanClient(g.host, g.port) as c:
                    c.submit_bg(fn, b"after restart")
                batch = await asyncio.wait_for(w.get_batch(10), 5)
                assert [j.workload for j in batch] == [b"after restart"]
                w.complete(batch)
        with caplog.at_level(logging.WARNING):
            run(main())
        assert f"gearmand {g.address} unreachable (ConnectionRefusedError), retry 2 in 0.2 s" in caplog.text
    finally:
        g.stop()


def test_unreachable_backoff_is_logged_and_bounded(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()

    async def main() -> GearmanWorker:
        w = GearmanWorker([("127.0.0.1", port)], ["x"], backoff_min=0.05, backoff_max=0.2)
        async with w:
            await asyncio.sleep(1.0)
        return w

    with caplog.at_level(logging.WARNING):
        w = run(main())
    assert 4 <= w.connect_failures <= 10  # 0.05, 0.1, 0.2, 0.2, ... not a spin
    assert "retry 3 in 0.2 s" in caplog.text


# -- malformed peers ------------------------------------------------------------------

def _bad_magic(n: int) -> bytes:
    return b"HTTP/1.1 400 Bad Request\r\n\r\n"


def _unknown_type(n: int) -> bytes:
    return b"\0RES" + struct.pack(">II", 77, 0)


def _short_packet(n: int) -> bytes:
    return encode(PacketType.NO_JOB, magic=RES) + b"\0RES\x00\x00"


async def _read_packets(reader: asyncio.StreamReader, want: PacketType, count: int) -> list[PacketType]:
    """Packets from the worker until ``count`` of type ``want`` came (all of them, in order)."""
    got: list[PacketType] = []
    while got.count(want) < count:
        magic, num, size = struct.unpack(">4sII", await reader.readexactly(12))
        assert magic == b"\0REQ"
        await reader.readexactly(size)
        got.append(PacketType(num))
    return got


def test_grab_window_opens_with_jobs_and_closes_on_wakeup() -> None:
    """Slow start: FIRST_GRABS grabs on connect and on each NOOP, one more per job assigned
    (doubling per round trip) up to ``window``; a trickle costs a few NO_JOBs per wakeup."""
    seen: list[list[PacketType]] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handles = itertools.count()

        def assign(n: int) -> bytes:
            return b"".join(encode(PacketType.JOB_ASSIGN_UNIQ, b"H:%d" % next(handles), b"fn", b"", b"w",
                                   magic=RES) for _ in range(n))

        first = await _read_packets(reader, PacketType.GRAB_JOB_UNIQ, FIRST_GRABS)
        seen.append(first)
        grabs = FIRST_GRABS
        for _ in range(4):  # answer every grab with a job: the window doubles up to 20
            writer.write(assign(grabs))
            got = await _read_packets(reader, PacketType.GRAB_JOB_UNIQ, min(2 * grabs, 20))
            seen.append(got)
            grabs = got.count(PacketType.GRAB_JOB_UNIQ)
        # the queue is empty: NO_JOB for every grab out, then the worker sleeps
        writer.write(encode(PacketType.NO_JOB, magic=RES) * grabs)
        seen.append(await _read_packets(reader, PacketType.PRE_SLEEP, 1))
        writer.write(encode(PacketType.NOOP, magic=RES))
        seen.append(await _read_packets(reader, PacketType.GRAB_JOB_UNIQ, FIRST_GRABS))
        try:  # nothing more may come while those grabs are out
            extra = await asyncio.wait_for(reader.read(4096), 0.2)
        except asyncio.TimeoutError:
            extra = b""
        seen.append([PacketType(struct.unpack(">4sII", extra[i:i + 12])[1]) for i in range(0, len(extra), 12)])
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(peer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with GearmanWorker([("127.0.0.1", port)], ["fn"], window=20, max_in_hand=1000):
            await until(lambda: len(seen) == 8, 10, "the exchange")
        server.close()

    run(main())
    grabs = [p.count(PacketType.GRAB_JOB_UNIQ) for p in seen]
    assert grabs == [FIRST_GRABS, 8, 16, 20, 20, 0, FIRST_GRABS, 0], seen
    assert seen[0][0] is PacketType.CAN_DO and seen[5] == [PacketType.PRE_SLEEP]


def test_a_job_then_no_jobs_means_sleep_without_grabbing_again() -> None:
    """gearmand answers grabs in order: a job followed by NO_JOBs (a trickle) says its queue is
    empty, so the worker sleeps at once instead of one more round of grabs first."""
    seen: list[list[PacketType]] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await _read_packets(reader, PacketType.GRAB_JOB_UNIQ, FIRST_GRABS))
        writer.write(encode(PacketType.JOB_ASSIGN_UNIQ, b"H:1", b"fn", b"", b"w", magic=RES)
                     + encode(PacketType.NO_JOB, magic=RES) * (FIRST_GRABS - 1))
        seen.append(await _read_packets(reader, PacketType.PRE_SLEEP, 1))
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(peer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with GearmanWorker([("127.0.0.1", port)], ["fn"]) as w:
            await until(lambda: len(seen) == 2, 10, "the exchange")
            assert [j.handle for j in await w.get_batch(10)] == [b"H:1"]
        server.close()

    run(main())
    assert seen[1] == [PacketType.PRE_SLEEP], seen


def test_a_lost_noop_strands_no_job() -> None:
    """A sleeping connection whose NOOP never comes (gearmand has been seen to lose wakeups)
    grabs once after ``nudge`` seconds, takes the job waiting there, and sleeps again when the
    queue is empty; each nudge is counted."""
    seen: list[tuple[float, list[PacketType]]] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_packets(reader, PacketType.GRAB_JOB_UNIQ, FIRST_GRABS)
        writer.write(encode(PacketType.NO_JOB, magic=RES) * FIRST_GRABS)
        await _read_packets(reader, PacketType.PRE_SLEEP, 1)
        slept = time.monotonic()  # a job comes now, and its NOOP is lost

        async def expect(want: PacketType, count: int) -> None:
            got = await _read_packets(reader, want, count)
            seen.append((time.monotonic() - slept, got))
        await expect(PacketType.GRAB_JOB_UNIQ, 1)
        writer.write(encode(PacketType.JOB_ASSIGN_UNIQ, b"H:9", b"fn", b"", b"w", magic=RES))
        await expect(PacketType.GRAB_JOB_UNIQ, 2)  # the job opened the window by one (slow start)
        writer.write(encode(PacketType.NO_JOB, magic=RES) * 2)
        await expect(PacketType.PRE_SLEEP, 1)
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(peer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with GearmanWorker([("127.0.0.1", port)], ["fn"], nudge=0.3) as w:
            assert [j.handle for j in await asyncio.wait_for(w.get_batch(10), 5)] == [b"H:9"]
            await until(lambda: len(seen) == 3, 10, "the exchange")
            assert w.nudges == 1
        server.close()

    run(main())
    assert 0.25 <= seen[0][0] < 2.0 and seen[0][1] == [PacketType.GRAB_JOB_UNIQ], seen
    assert seen[1][1] == [PacketType.GRAB_JOB_UNIQ] * 2 and seen[2][1] == [PacketType.PRE_SLEEP], seen


def _absurd_length(n: int) -> bytes:
    return b"\0RES" + struct.pack(">II", PacketType.JOB_ASSIGN_UNIQ, 0xFFFFFFF0)


def _extra_assign(n: int) -> bytes:  # a job nobody asked for
    return encode(PacketType.JOB_ASSIGN_UNIQ, b"H:x", b"f", b"", b"d", magic=RES) * (n + 1)


@pytest.mark.parametrize("reply", [_bad_magic, _unknown_type, _short_packet, _absurd_length, _extra_assign])
def test_malformed_peer_reconnects_without_spinning(reply: Callable[[int], bytes],
                                                    caplog: pytest.LogCaptureFixture) -> None:
    accepted = 0

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await reader.read(4096)  # the CAN_DO + grabs
        writer.write(reply(32))
        await writer.drain()
        writer.close()

    async def main() -> GearmanWorker:
        server = await asyncio.start_server(peer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        w = GearmanWorker([("127.0.0.1", port)], ["fn"], backoff_min=0.05, backoff_max=0.4)
        t0 = time.monotonic()
        async with w:
            await asyncio.sleep(1.0)
        assert time.monotonic() - t0 < 2.5
        server.close()
        return w

    with caplog.at_level(logging.WARNING):
        w = run(main(), timeout=10)
    # 0.05 + 0.1 + 0.2 + 0.4 + 0.4 ... -> about 4 connections in 1 s; a spin would be thousands
    assert 2 <= accepted <= 7, accepted
    assert w.protocol_errors >= 1 and w.pending == 0
    assert "protocol error" in caplog.text or "mid-packet" in caplog.text


def test_peer_that_only_closes_backs_off() -> None:
    accepted = 0

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(peer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with GearmanWorker([("127.0.0.1", port)], ["fn"], backoff_min=0.05, backoff_max=0.4):
            await asyncio.sleep(1.0)
        server.close()

    run(main(), timeout=10)
    assert 2 <= accepted <= 7, accepted


# -- interop -----------------------------------------------------------------------------

BINARY = bytes(range(256)) + b'\0{"id": 1}\0\xff'


def _collect(g: Gearmand, fn: str, count: int) -> list[bytes]:
    async def main() -> list[bytes]:
        async with GearmanWorker([(g.host, g.port)], [fn]) as w:
            got: list[bytes] = []
            while len(got) < count:
                batch = await asyncio.wait_for(w.get_batch(100), 5)
                w.complete(batch)
                got += [j.workload for j in batch]
            return got
    return run(main())


def test_interop_pygearman_client(gearmand: Gearmand) -> None:
    import gearman  # the pygearman distribution installs the `gearman` package

    fn = fn_name()
    client = gearman.GearmanClient([gearmand.address])
    for data in (BINARY, b"plain", '{"id": 5, "name": "\u00e9"}'.encode()):
        client.submit_job(fn, data, background=True, wait_until_complete=False)
    client.shutdown()
    assert _collect(gearmand, fn, 3) == [BINARY, b"plain", '{"id": 5, "name": "\u00e9"}'.encode()]


def test_interop_gearman_cli(gearmand: Gearmand) -> None:
    fn = fn_name()
    argv = ["gearman", "-h", gearmand.host, "-p", str(gearmand.port), "-f", fn, "-b"]
    subprocess.run(argv + ["--", '{"id": 1, "name": "a b"}'], check=True, timeout=10)
    subprocess.run(argv, input=b"line1\nline2\0\xff", check=True, timeout=10)
    got = _collect(gearmand, fn, 2)
    assert got == [b'{"id": 1, "name": "a b"}', b"line1\nline2\0\xff"]


# -- admin protocol ----------------------------------------------------------------------

def test_admin_status_workers_version(gearmand: Gearmand) -> None:
    fn = fn_name()
    with GearmanClient(gearmand.host, gearmand.port) as c:
        c.submit_many(fn, [b"1", b"2", b"3"])

    async def main() -> None:
        async with GearmanWorker([(gearmand.host, gearmand.port)], [fn], window=1, max_in_hand=1) as w:
            await until(lambda: w.pending == 1)
            st = {s.function: s for s in await admin.async_status(gearmand.host, gearmand.port)}
            assert st[fn] == admin.FunctionStatus(fn, 3, 1, 1)
            ws = await asyncio.to_thread(admin.workers, gearmand.host, gearmand.port)
            assert any(fn in x.functions and x.ip == "127.0.0.1" for x in ws)
    run(main())
    assert admin.version(gearmand.host, gearmand.port)[0].isdigit()
    with pytest.raises(admin.AdminError):
        admin.command(gearmand.host, gearmand.port, "nonsense")


def test_admin_parsers() -> None:
    assert admin.parse_status(["f\t3\t1\t2"]) == [admin.FunctionStatus("f", 3, 1, 2)]
    assert admin.parse_workers(["12 127.0.0.1 - : a b", "13 ::1 id :"]) == [
        admin.WorkerInfo(12, "127.0.0.1", "-", ("a", "b")), admin.WorkerInfo(13, "::1", "id", ())]
    with pytest.raises(admin.AdminError):
        admin.parse_status(["f\tx\t1\t2"])

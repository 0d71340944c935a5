"""Pipelined asyncio Gearman worker: one connection per server, jobs merged into one queue.

Each connection keeps up to ``window`` GRAB_JOB_UNIQ requests outstanding and at most
``max_in_hand`` jobs delivered but not yet completed. gearmand answers grabs in order: once all
are answered and the last was NO_JOB, its queue is empty, so the connection sends PRE_SLEEP and
grabs again on NOOP, or after ``nudge`` s without one (gearmand can lose a wakeup: jobs must not
wait for a reconnect). The window opens like TCP's slow start: a connection woken grabs
:data:`FIRST_GRABS`, every job assigned lets one more grab out, up to ``window`` (a trickle
costs gearmand a few NO_JOBs a wakeup; a backlog drains ``window`` jobs a round trip).
The caller takes jobs with :meth:`GearmanWorker.get_batch` and answers them with
:meth:`complete` / :meth:`fail`, which write one buffer per connection (the answers plus the
grabs they make room for). :meth:`pause` stops grabbing without touching jobs in hand. A
dropped connection loses no job: gearmand requeues the background jobs not completed.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import ssl as ssl_lib
import struct
import time
from typing import Iterable, Sequence

from .job import Job
from .protocol import DEFAULT_MAX_PACKET, REQ, RES, Decoder, PacketType, ProtocolError, encode

__all__ = ["Job", "GearmanWorker"]

log = logging.getLogger(__name__)

T = PacketType
_header = struct.Struct(">4sII").pack
_GRAB = encode(T.GRAB_JOB_UNIQ)
_PRE_SLEEP = encode(T.PRE_SLEEP)
_WORK_COMPLETE = T.WORK_COMPLETE
_WORK_FAIL = T.WORK_FAIL
_JOB_ASSIGN_UNIQ = T.JOB_ASSIGN_UNIQ
_NO_JOB = T.NO_JOB
#: Grabs a connection sends when it wakes (or connects) before jobs open its window further.
FIRST_GRABS = 4


class _Server:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.name = f"{host}:{port}"
        self.link: _Link | None = None
        self.task: asyncio.Task[None] | None = None


class _Link(asyncio.Protocol):
    """One live connection's state: outstanding grabs, jobs in hand, sleep state."""

    def __init__(self, owner: "GearmanWorker", server: _Server) -> None:
        self.owner = owner
        self.server = server
        self.decoder = Decoder(owner.max_packet, expect=RES)
        self.transport: asyncio.Transport | None = None
        self.outstanding = 0
        self.in_hand = 0
        self.cwnd = min(FIRST_GRABS, owner.window)  # grabs allowed out now (see the module doc)
        self.sleeping = False
        self.slept_at = 0.0
        self.empty = False
        self.alive = False
        self.error = False
        self.opened = time.monotonic()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.alive = True
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - not TCP
                pass
        out = [encode(T.CAN_DO, f) for f in self.owner.functions]
        self._pump(out)
        transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        try:
            packets = self.decoder.feed(data)
        except ProtocolError as e:
            self._protocol_error(str(e))
            return
        owner = self.owner
        jobs: list[Job] = []
        # the last answer says whether gearmand's queue is empty (a job, then NO_JOBs: sleep now)
        for p in packets:
            ptype = p.type
            if ptype is _JOB_ASSIGN_UNIQ:
                a = p.args
                jobs.append(Job(a[0], a[1], a[2], a[3], self))
                self.empty = False
            elif ptype is _NO_JOB:
                self.outstanding -= 1
                self.empty = True
            elif ptype is T.NOOP:
                self.sleeping = False
                self.empty = False
                self.cwnd = min(FIRST_GRABS, owner.window)
            elif ptype is T.JOB_ASSIGN:
                a = p.args
                jobs.append(Job(a[0], a[1], b"", a[2], self))
                self.empty = False
            elif ptype is T.ERROR:
                log.warning("gearmand %s sent ERROR %r: %r", self.server.name, p.args[0], p.args[1])
            else:
                log.debug("gearmand %s sent unexpected %s", self.server.name, ptype.name)
        if self.outstanding < 0:
            self._protocol_error("more grab replies than grabs")
            return
        if jobs:
            got = len(jobs)
            self.outstanding -= got
            self.in_hand += got
            self.cwnd = min(owner.window, self.cwnd + got)
            if self.outstanding < 0:
                self._protocol_error("more jobs assigned than grabs sent")
                return
            owner._jobs.extend(jobs)
            owner._ready.set()
        out: list[bytes] = []
        self._pump(out)
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        if not self.error and self.decoder.pending:
            self.error = True
            log.error("gearmand %s closed the connection mid-packet (%d bytes pending)",
                      self.server.name, self.decoder.pending)
        self.owner._purge(self)
        if not self.closed.done():
            self.closed.set_result(None)

    # -- flow --------------------------------------------------------------------------
    def _pump(self, out: list[bytes]) -> None:
        """Append the grabs (or the PRE_SLEEP) this connection may send now."""
        if self.sleeping or self.owner._paused or not self.alive:
            return
        if self.empty:
            if self.outstanding == 0:
                out.append(_PRE_SLEEP)
                self.sleeping = True  # the NOOP that wakes it clears empty
                self.slept_at = time.monotonic()
            return
        room = min(self.cwnd - self.outstanding, self.owner.max_in_hand - self.in_hand - self.outstanding)
        if room > 0:
            out.append(_GRAB * room)
            self.outstanding += room

    def nudge(self) -> None:
        """Asleep for ``owner.nudge`` s: grab once as if woken (gearmand answers NO_JOB, or a job its
        lost NOOP should have announced; a NOOP that still comes is harmless)."""
        if self.sleeping and self.alive and time.monotonic() - self.slept_at >= self.owner.nudge:
            self.sleeping = self.empty = False
            self.cwnd = 1
            self.owner.nudges += 1
            self.answer([], 0)

    def answer(self, packets: list[bytes], count: int) -> None:
        """Send answers for ``count`` jobs in hand, plus the grabs they make room for."""
        self.in_hand -= count
        self._pump(packets)
        if packets and self.transport is not None:
            self.transport.write(b"".join(packets))

    def _protocol_error(self, message: str) -> None:
        self.error = True
        log.error("gearmand %s protocol error: %s; dropping the connection", self.server.name, message)
        if self.transport is not None:
            self.transport.abort()


class GearmanWorker:
    """Take jobs for ``functions`` from every server in ``servers``."""

    def __init__(
        self,
        servers: Sequence[tuple[str, int]],
        functions: Iterable[str | bytes],
        *,
        window: int = 256,
        max_in_hand: int = 2048,
        max_packet: int = DEFAULT_MAX_PACKET,
        backoff_min: float = 0.1,
        backoff_max: float = 5.0,
        connect_timeout: float = 5.0,
        stable_after: float = 1.0,
        nudge: float = 1.0,
        ssl: "ssl_lib.SSLContext | None" = None,
    ) -> None:
        if not servers:
            raise ValueError("at least one gearmand server is needed")
        self.functions = [f.encode() if isinstance(f, str) else bytes(f) for f in functions]
        if not self.functions:
            raise ValueError("at least one function is needed")
        if window < 1 or max_in_hand < window:
            raise ValueError("need 1 <= window <= max_in_hand")
        if not nudge > 0:
            raise ValueError("nudge must be > 0 seconds")
        self.nudge = nudge  # a sleeping connection grabs once after this long without NOOP
        self.window = window
        self.max_in_hand = max_in_hand
        self.max_packet = max_packet
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.connect_timeout = connect_timeout
        self.stable_after = stable_after
        #: TLS to every gearmand (gearmand --ssl, or a TLS terminator in front of it)
        self.ssl = ssl
        self._servers = [_Server(h, int(p)) for h, p in servers]
        self._jobs: collections.deque[Job] = collections.deque()
        self._ready = asyncio.Event()
        self._paused = False
        self._closed = False
        self.connects = 0
        self.connect_failures = 0
        self.protocol_errors = 0
        self.stale_answers = 0
        self.nudges = 0

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        for s in self._servers:
            if s.task is None:
                s.task = asyncio.create_task(self._run_server(s), name=f"gearman {s.name}")

    async def close(self) -> None:
        """Drop every connection (gearmand requeues jobs not answered). Idempotent."""
        self._closed = True
        tasks = [s.task for s in self._servers if s.task is not None]
        for s in self._servers:
            if s.task is not None:
                s.task.cancel()
            if s.link is not None and s.link.transport is not None:
                s.link.transport.close()
            s.task = None
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._ready.set()

    async def __aenter__(self) -> "GearmanWorker":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> int:
        """How many servers have a live connection."""
        return sum(1 for s in self._servers if s.link is not None and s.link.alive)

    async def wait_connected(self, count: int | None = None, timeout: float = 10.0) -> None:
        want = len(self._servers) if count is None else count
        deadline = time.monotonic() + timeout
        while self.connected < want:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.connected}/{want} gearmand connections after {timeout} s")
            await asyncio.sleep(0.01)

    def _delay(self, attempt: int) -> float:
        return min(self.backoff_max, self.backoff_min * 2 ** max(0, attempt - 1))

    async def _run_server(self, server: _Server) -> None:
        loop = asyncio.get_running_loop()
        attempt = 0
        while not self._closed:
            link = _Link(self, server)
            try:
                await asyncio.wait_for(
                    loop.create_connection(lambda: link, server.host, server.port, ssl=self.ssl),
                    self.connect_timeout
                )
            except (OSError, asyncio.TimeoutError, ssl_lib.SSLError) as e:
                self.connect_failures += 1
                attempt += 1
                delay = self._delay(attempt)
                log.warning("gearmand %s unreachable (%s), retry %d in %.1f s",
                            server.name, type(e).__name__, attempt, delay)
                await asyncio.sleep(delay)
                continue
            self.connects += 1
            server.link = link
            log.info("connected to gearmand %s (functions: %s)", server.name,
                     ", ".join(f.decode(errors="replace") for f in self.functions))
            try:
                while not link.closed.done():
                    await asyncio.wait((link.closed,), timeout=self.nudge)
                    link.nudge()
            finally:
                server.link = None
                if link.transport is not None:
                    link.transport.abort()
            if self._closed:
                break
            lived = time.monotonic() - link.opened
            if link.error:
                self.protocol_errors += 1
                attempt += 1
            elif lived < self.stable_after:
                attempt += 1
            else:
                attempt = 1
            delay = self._delay(attempt)
            log.warning("gearmand %s connection lost (%d jobs in hand requeued by gearmand), retry %d in %.1f s",
                        server.name, link.in_hand, attempt, delay)
            await asyncio.sleep(delay)

    # -- jobs --------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Jobs received and not yet taken by :meth:`get_batch`."""
        return len(self._jobs)

    async def get_batch(self, max_jobs: int, timeout: float | None = None) -> list[Job]:
        """Up to ``max_jobs`` jobs; waits for at least one unless :meth:`wakeup` or ``timeout``."""
        jobs = self._jobs
        if not jobs and not self._closed:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except asyncio.TimeoutError:
                return []
        n = min(max_jobs, len(jobs))
        popleft = jobs.popleft
        return [popleft() for _ in range(n)]

    def _purge(self, link: _Link) -> None:
        """Forget the not-yet-taken jobs of a dead connection (gearmand requeues them)."""
        if any(j._link is link for j in self._jobs):
            kept = [j for j in self._jobs if j._link is not link]
            self._jobs.clear()
            self._jobs.extend(kept)

    def wakeup(self) -> None:
        """Make a waiting :meth:`get_batch` return (possibly with no job)."""
        self._ready.set()

    def complete(self, jobs: Iterable[Job], data: bytes = b"") -> int:
        """WORK_COMPLETE each job; returns how many were sent (jobs of dead links are skipped)."""
        return self._answer(jobs, _WORK_COMPLETE, data)

    def fail(self, jobs: Iterable[Job]) -> int:
        """WORK_FAIL each job (gearmand drops a failed background job)."""
        return self._answer(jobs, _WORK_FAIL, None)

    def _answer(self, jobs: Iterable[Job], ptype: PacketType, data: bytes | None) -> int:
        by_link: dict[_Link, list[bytes]] = {}
        sent = 0
        for job in jobs:
            link = job._link
            if not link.alive:
                self.stale_answers += 1
                continue
            packets = by_link.get(link)
            if packets is None:
                packets = by_link[link] = []
            h = job.handle
            if data is None:
                packets.append(_header(REQ, ptype, len(h)) + h)
            else:
                packets.append(_header(REQ, ptype, len(h) + 1 + len(data)) + h + b"\0" + data)
            sent += 1
        for link, packets in by_link.items():
            link.answer(packets, len(packets))
        return sent

    # -- flow control --------------------------------------------------------------------
    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        """Stop sending grabs; jobs in hand and grabs already sent are kept."""
        self._paused = True

    def resume(self) -> None:
        if not self._paused:
            return
        self._paused = False
        for s in self._servers:
            link = s.link
            if link is not None and link.alive:
                out: list[bytes] = []
                link._pump(out)
                if out and link.transport is not None:
                    link.transport.write(b"".join(out))

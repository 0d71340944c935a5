"""Gearman peers nobody on the team wrote the hot path of, for tests: a minimal blocking worker
that takes every queued job, and the `gearman -w` command-line worker."""

from __future__ import annotations

import shutil
import socket
import subprocess

from gearsync.gearman.protocol import Decoder, PacketType, encode
from gearsync.testing.processes import WaitTimeout, wait_for
from gearsync.testing.stack import Gearmand

__all__ = ["grab_all", "CliWorker"]


def grab_all(g: Gearmand, function: bytes, limit: int = 100_000) -> list[tuple[bytes, bytes]]:
    """(unique, workload) of every job queued for ``function``, in queue order, each completed."""
    out: list[tuple[bytes, bytes]] = []
    dec = Decoder()
    with socket.create_connection((g.host, g.port), 5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        done = b""
        s.sendall(encode(PacketType.CAN_DO, function))
        while len(out) < limit:
            # WORK_COMPLETE of the last job and the next grab in one write (no Nagle stall)
            s.sendall(done + encode(PacketType.GRAB_JOB_UNIQ))
            pkt = None
            while pkt is None:
                for p in dec.feed(s.recv(1 << 20)):
                    if p.type in (PacketType.NO_JOB, PacketType.JOB_ASSIGN_UNIQ):
                        pkt = p
            if pkt.type == PacketType.NO_JOB:
                break
            handle, _fn, unique, workload = pkt.args
            out.append((unique, workload))
            done = encode(PacketType.WORK_COMPLETE, handle, b"")
    return out


class CliWorker:
    """`gearman -w` running a command per job (workload on stdin, result on stdout)."""

    def __init__(self, g: Gearmand, function: str, *cmd: str) -> None:
        gearman = shutil.which("gearman") or "/usr/bin/gearman"
        self.proc = subprocess.Popen(
            [gearman, "-w", "-h", g.host, "-p", str(g.port), "-f", function, "--", *cmd],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: g.status().get(function, (0, 0, 0))[2] >= 1, 10, 0.05)
        except WaitTimeout:
            self.stop()
            raise RuntimeError(f"gearman -w {function} did not register") from None

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()

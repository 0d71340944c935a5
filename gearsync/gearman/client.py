"""A tiny blocking Gearman client for tests and tools: background submits, pipelined."""

from __future__ import annotations

import socket
import ssl as ssl_lib
from typing import Iterable

from .protocol import RES, Decoder, Packet, PacketType, ProtocolError, encode

__all__ = ["GearmanClient", "SubmitError"]

_PRIORITY = {
    "normal": PacketType.SUBMIT_JOB_BG,
    "high": PacketType.SUBMIT_JOB_HIGH_BG,
    "low": PacketType.SUBMIT_JOB_LOW_BG,
}


class SubmitError(Exception):
    """gearmand refused a job (ERROR packet) or the connection broke."""


def _b(x: str | bytes) -> bytes:
    return x.encode() if isinstance(x, str) else x


class GearmanClient:
    """One connection to one gearmand. ``with GearmanClient(host, port) as c: c.submit_bg(...)``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 4730, timeout: float = 10.0,
                 ssl: "ssl_lib.SSLContext | None" = None) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        self.sock = ssl.wrap_socket(sock, server_hostname=host) if ssl is not None else sock
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._decoder = Decoder(expect=RES)
        self._packets: list[Packet] = []

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "GearmanClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, count: int) -> list[Packet]:
        out = self._packets
        while len(out) < count:
            data = self.sock.recv(262144)
            if not data:
                raise SubmitError("gearmand closed the connection")
            try:
                out.extend(self._decoder.feed(data))
            except ProtocolError as e:
                raise SubmitError(str(e)) from e
        self._packets = out[count:]
        return out[:count]

    def submit_bg(self, function: str | bytes, data: bytes | str, unique: str | bytes = b"",
                  priority: str = "normal") -> bytes:
        """Submit one background job; its handle."""
        return self.submit_many(function, [data], unique=[unique], priority=priority)[0]

    def submit_many(self, function: str | bytes, payloads: Iterable[bytes | str],
                    unique: Iterable[str | bytes] | None = None, priority: str = "normal",
                    chunk: int = 1000) -> list[bytes]:
        """Pipelined background submits (``chunk`` packets per write); the handles in order."""
        ptype = _PRIORITY[priority]
        fn = _b(function)
        handles: list[bytes] = []
        uniques = iter(unique) if unique is not None else None
        buf: list[bytes] = []
        for payload in payloads:
            u = _b(next(uniques)) if uniques is not None else b""
            buf.append(encode(ptype, fn, u, _b(payload)))
            if len(buf) >= chunk:
                handles += self._flush(buf)
                buf = []
        if buf:
            handles += self._flush(buf)
        return handles

    def _flush(self, packets: list[bytes]) -> list[bytes]:
        self.sock.sendall(b"".join(packets))
        out = []
        for p in self._read(len(packets)):
            if p.type is PacketType.JOB_CREATED:
                out.append(p.args[0])
            elif p.type is PacketType.ERROR:
                raise SubmitError(f"gearmand ERROR {p.args[0]!r}: {p.args[1]!r}")
            else:
                raise SubmitError(f"unexpected {p.type.name} after a submit")
        return out

"""Gearman admin text protocol (``status``, ``workers``, ``version``), sync and async."""

from __future__ import annotations

import asyncio
import socket
import ssl as ssl_lib
from dataclasses import dataclass

__all__ = [
    "FunctionStatus", "WorkerInfo", "AdminError", "parse_status", "parse_workers",
    "status", "workers", "version", "async_status", "async_workers", "async_version",
]

_MULTILINE = {"status", "workers"}


class AdminError(Exception):
    """gearmand answered an admin command with ERR or something unparsable."""


@dataclass(frozen=True)
class FunctionStatus:
    function: str
    total: int  # queued + running
    running: int
    available_workers: int


@dataclass(frozen=True)
class WorkerInfo:
    fd: int
    ip: str
    client_id: str
    functions: tuple[str, ...]


def parse_status(lines: list[str]) -> list[FunctionStatus]:
    out = []
    for line in lines:
        parts = line.split("\t")
        if len(parts) != 4:
            raise AdminError(f"bad status line {line!r}")
        try:
            out.append(FunctionStatus(parts[0], int(parts[1]), int(parts[2]), int(parts[3])))
        except ValueError:
            raise AdminError(f"bad status line {line!r}") from None
    return out


def parse_workers(lines: list[str]) -> list[WorkerInfo]:
    """Lines look like ``FD IP-ADDRESS CLIENT-ID : FUNCTION ...``."""
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) < 4 or parts[3] != ":" or not parts[0].isdigit():
            raise AdminError(f"bad workers line {line!r}")
        out.append(WorkerInfo(int(parts[0]), parts[1], parts[2], tuple(parts[4:])))
    return out


def _complete(command: str, buf: bytes) -> bool:
    if buf.startswith(b"ERR "):
        return buf.endswith(b"\n")
    if command in _MULTILINE:
        return buf == b".\n" or buf.endswith(b"\n.\n")
    return buf.endswith(b"\n")


def _lines(command: str, buf: bytes) -> list[str]:
    text = buf.decode("utf-8", errors="replace")
    if text.startswith("ERR "):
        raise AdminError(f"gearmand: {text.strip()}")
    lines = text.split("\n")
    if command in _MULTILINE:
        return lines[: lines.index(".")] if "." in lines else [x for x in lines if x]
    return [x for x in lines if x]


def command(host: str, port: int, cmd: str, timeout: float = 5.0,
            ssl: "ssl_lib.SSLContext | None" = None) -> list[str]:
    """Send one admin command; the reply's lines (without the closing '.')."""
    name = cmd.split()[0] if cmd.split() else cmd
    sock = socket.create_connection((host, port), timeout=timeout)
    with (ssl.wrap_socket(sock, server_hostname=host) if ssl is not None else sock) as s:
        s.sendall(cmd.encode() + b"\n")
        buf = b""
        while not _complete(name, buf):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return _lines(name, buf)


async def async_command(host: str, port: int, cmd: str, timeout: float = 5.0) -> list[str]:
    name = cmd.split()[0] if cmd.split() else cmd

    async def run() -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(cmd.encode() + b"\n")
            buf = b""
            while not _complete(name, buf):
                chunk = await reader.read(65536)
                if not chunk:
                    break
                buf += chunk
            return buf
        finally:
            writer.close()

    return _lines(name, await asyncio.wait_for(run(), timeout))


def status(host: str, port: int, timeout: float = 5.0, ssl: "ssl_lib.SSLContext | None" = None
           ) -> list[FunctionStatus]:
    return parse_status(command(host, port, "status", timeout, ssl))


def workers(host: str, port: int, timeout: float = 5.0) -> list[WorkerInfo]:
    return parse_workers(command(host, port, "workers", timeout))


def version(host: str, port: int, timeout: float = 5.0) -> str:
    """The server version, e.g. ``1.1.20``."""
    lines = command(host, port, "version", timeout)
    return lines[0].removeprefix("OK ").strip() if lines else ""


async def async_status(host: str, port: int, timeout: float = 5.0) -> list[FunctionStatus]:
    return parse_status(await async_command(host, port, "status", timeout))


async def async_workers(host: str, port: int, timeout: float = 5.0) -> list[WorkerInfo]:
    return parse_workers(await async_command(host, port, "workers", timeout))


async def async_version(host: str, port: int, timeout: float = 5.0) -> str:
    lines = await async_command(host, port, "version", timeout)
    return lines[0].removeprefix("OK ").strip() if lines else ""

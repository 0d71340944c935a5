"""Gearman binary protocol: packet types, an encoder and an incremental decoder (no I/O).

A packet is a 4-byte magic (``\\0REQ`` or ``\\0RES``), the type (u32 BE), the size of the
argument block (u32 BE) and the arguments separated by NUL bytes; the last argument may
itself contain NULs. Each type has a fixed argument count (:data:`ARG_COUNTS`).
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import NamedTuple

__all__ = [
    "REQ", "RES", "HEADER_SIZE", "DEFAULT_MAX_PACKET", "PacketType", "ARG_COUNTS", "Packet",
    "ProtocolError", "encode", "Decoder",
]

REQ = b"\0REQ"
RES = b"\0RES"
HEADER_SIZE = 12
DEFAULT_MAX_PACKET = 64 * 1024 * 1024

_HEADER = struct.Struct(">4sII")
_pack_header = _HEADER.pack
_unpack_header = _HEADER.unpack_from


class ProtocolError(Exception):
    """The peer sent something that is not a valid Gearman packet."""


class PacketType(IntEnum):
    CAN_DO = 1
    CANT_DO = 2
    RESET_ABILITIES = 3
    PRE_SLEEP = 4
    NOOP = 6
    SUBMIT_JOB = 7
    JOB_CREATED = 8
    GRAB_JOB = 9
    NO_JOB = 10
    JOB_ASSIGN = 11
    WORK_STATUS = 12
    WORK_COMPLETE = 13
    WORK_FAIL = 14
    GET_STATUS = 15
    ECHO_REQ = 16
    ECHO_RES = 17
    SUBMIT_JOB_BG = 18
    ERROR = 19
    STATUS_RES = 20
    SUBMIT_JOB_HIGH = 21
    SET_CLIENT_ID = 22
    CAN_DO_TIMEOUT = 23
    ALL_YOURS = 24
    WORK_EXCEPTION = 25
    OPTION_REQ = 26
    OPTION_RES = 27
    WORK_DATA = 28
    WORK_WARNING = 29
    GRAB_JOB_UNIQ = 30
    JOB_ASSIGN_UNIQ = 31
    SUBMIT_JOB_HIGH_BG = 32
    SUBMIT_JOB_LOW = 33
    SUBMIT_JOB_LOW_BG = 34
    SUBMIT_JOB_SCHED = 35
    SUBMIT_JOB_EPOCH = 36
    SUBMIT_REDUCE_JOB = 37
    SUBMIT_REDUCE_JOB_BACKGROUND = 38
    GRAB_JOB_ALL = 39
    JOB_ASSIGN_ALL = 40
    GET_STATUS_UNIQUE = 41
    STATUS_RES_UNIQUE = 42


T = PacketType

#: Number of arguments each packet type carries.
ARG_COUNTS: dict[PacketType, int] = {
    T.CAN_DO: 1, T.CANT_DO: 1, T.RESET_ABILITIES: 0, T.PRE_SLEEP: 0, T.NOOP: 0,
    T.SUBMIT_JOB: 3, T.JOB_CREATED: 1, T.GRAB_JOB: 0, T.NO_JOB: 0, T.JOB_ASSIGN: 3,
    T.WORK_STATUS: 3, T.WORK_COMPLETE: 2, T.WORK_FAIL: 1, T.GET_STATUS: 1, T.ECHO_REQ: 1,
    T.ECHO_RES: 1, T.SUBMIT_JOB_BG: 3, T.ERROR: 2, T.STATUS_RES: 5, T.SUBMIT_JOB_HIGH: 3,
    T.SET_CLIENT_ID: 1, T.CAN_DO_TIMEOUT: 2, T.ALL_YOURS: 0, T.WORK_EXCEPTION: 2,
    T.OPTION_REQ: 1, T.OPTION_RES: 1, T.WORK_DATA: 2, T.WORK_WARNING: 2, T.GRAB_JOB_UNIQ: 0,
    T.JOB_ASSIGN_UNIQ: 4, T.SUBMIT_JOB_HIGH_BG: 3, T.SUBMIT_JOB_LOW: 3, T.SUBMIT_JOB_LOW_BG: 3,
    T.SUBMIT_JOB_SCHED: 8, T.SUBMIT_JOB_EPOCH: 4, T.SUBMIT_REDUCE_JOB: 4,
    T.SUBMIT_REDUCE_JOB_BACKGROUND: 4, T.GRAB_JOB_ALL: 0, T.JOB_ASSIGN_ALL: 5,
    T.GET_STATUS_UNIQUE: 1, T.STATUS_RES_UNIQUE: 6,
}
# Indexed by the raw type number for the decoder's hot path (-1: unknown type).
_COUNTS_BY_NUM = [-1] * (max(ARG_COUNTS) + 1)
for _t, _n in ARG_COUNTS.items():
    _COUNTS_BY_NUM[_t] = _n
_TYPES_BY_NUM: list[PacketType | None] = [None] * len(_COUNTS_BY_NUM)
for _t in PacketType:
    _TYPES_BY_NUM[_t] = _t


class Packet(NamedTuple):
    magic: bytes  # REQ or RES
    type: PacketType
    args: tuple[bytes, ...]


def encode(ptype: PacketType | int, *args: bytes, magic: bytes = REQ) -> bytes:
    """One packet as bytes; checks the argument count and NULs in non-final arguments."""
    try:
        expected = _COUNTS_BY_NUM[ptype]
    except IndexError:
        expected = -1
    if expected < 0:
        raise ValueError(f"unknown packet type {int(ptype)}")
    if len(args) != expected:
        raise ValueError(f"{PacketType(ptype).name} takes {expected} arguments, got {len(args)}")
    if magic is not REQ and magic is not RES and magic not in (REQ, RES):
        raise ValueError(f"bad magic {magic!r}")
    for a in args[:-1]:
        if b"\0" in a:
            raise ValueError(f"{PacketType(ptype).name}: only the last argument may contain NUL")
    body = b"\0".join(args)
    return _pack_header(magic, ptype, len(body)) + body


class Decoder:
    """Incremental decoder: :meth:`feed` bytes, get the complete packets they finish.

    Raises :class:`ProtocolError` on bad magic, an unknown type, a wrong argument count or
    a size above ``max_packet``; the decoder is then unusable (drop the connection).
    ``expect`` restricts the accepted magic (``RES`` for a client/worker, ``REQ`` for a server).
    """

    __slots__ = ("_buf", "max_packet", "expect", "_failed")

    def __init__(self, max_packet: int = DEFAULT_MAX_PACKET, expect: bytes | None = None) -> None:
        self._buf = bytearray()
        self.max_packet = max_packet
        self.expect = expect
        self._failed = False

    @property
    def pending(self) -> int:
        """Bytes of an unfinished packet held in the buffer."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Packet]:
        if self._failed:
            raise ProtocolError("decoder already failed")
        buf = self._buf
        buf += data
        out: list[Packet] = []
        n = len(buf)
        off = 0
        expect = self.expect
        counts = _COUNTS_BY_NUM
        types = _TYPES_BY_NUM
        mv = memoryview(buf)
        try:
            while n - off >= HEADER_SIZE:
                magic, num, size = _unpack_header(buf, off)
                if magic != RES and magic != REQ or (expect is not None and magic != expect):
                    self._fail(f"bad magic {bytes(mv[off:off + 4])!r}")
                if num >= len(counts) or counts[num] < 0:
                    self._fail(f"unknown packet type {num}")
                if size > self.max_packet:
                    self._fail(f"packet of {size} bytes exceeds the {self.max_packet}-byte limit")
                end = off + HEADER_SIZE + size
                if end > n:
                    break
                nargs = counts[num]
                if nargs == 0:
                    if size:
                        self._fail(f"{types[num].name} takes no arguments, got {size} bytes")  # type: ignore[union-attr]
                    args: tuple[bytes, ...] = ()
                elif nargs == 1:
                    args = (bytes(mv[off + HEADER_SIZE:end]),)
                else:
                    parts = bytes(mv[off + HEADER_SIZE:end]).split(b"\0", nargs - 1)
                    if len(parts) != nargs:
                        self._fail(
                            f"{types[num].name} takes {nargs} arguments, got {len(parts)}"  # type: ignore[union-attr]
                        )
                    args = tuple(parts)
                out.append(Packet(RES if magic == RES else REQ, types[num], args))  # type: ignore[arg-type]
                off = end
        finally:
            mv.release()
            if off:
                del buf[:off]
        return out

    def _fail(self, message: str) -> None:
        self._failed = True
        raise ProtocolError(message)

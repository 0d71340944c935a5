"""Gearman packet codec: round trips, incremental feeding, malformed input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gearsync.gearman.protocol import (
    ARG_COUNTS, REQ, RES, Decoder, Packet, PacketType, ProtocolError, encode,
)

arg = st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"x"))


@st.composite
def packets(draw: st.DrawFn) -> Packet:
    ptype = draw(st.sampled_from(sorted(ARG_COUNTS)))
    n = ARG_COUNTS[ptype]
    args = [draw(arg) for _ in range(max(0, n - 1))]
    if n:
        args.append(draw(st.binary(max_size=200)))  # the last may hold NULs
    return Packet(draw(st.sampled_from([REQ, RES])), ptype, tuple(args))


def test_packet_type_numbers() -> None:
    assert PacketType.CAN_DO == 1 and PacketType.NOOP == 6 and PacketType.SUBMIT_JOB_BG == 18
    assert PacketType.GRAB_JOB_UNIQ == 30 and PacketType.JOB_ASSIGN_UNIQ == 31
    assert PacketType.GRAB_JOB_ALL == 39 and PacketType.JOB_ASSIGN_ALL == 40
    assert 5 not in PacketType._value2member_map_


def test_encode_known_bytes() -> None:
    assert encode(PacketType.CAN_DO, b"fn") == b"\0REQ" + struct.pack(">II", 1, 2) + b"fn"
    assert encode(PacketType.GRAB_JOB_UNIQ) == b"\0REQ\x00\x00\x00\x1e\x00\x00\x00\x00"
    data = encode(PacketType.JOB_ASSIGN_UNIQ, b"H:1", b"f", b"u", b"a\0b", magic=RES)
    assert data == b"\0RES" + struct.pack(">II", 31, 11) + b"H:1\0f\0u\0a\0b"


def test_encode_checks() -> None:
    with pytest.raises(ValueError, match="takes 1"):
        encode(PacketType.CAN_DO)
    with pytest.raises(ValueError, match="last argument"):
        encode(PacketType.SUBMIT_JOB_BG, b"f\0n", b"", b"x")
    with pytest.raises(ValueError, match="unknown packet type"):
        encode(5)


@given(st.lists(packets(), max_size=20), st.data())
@settings(max_examples=200, deadline=None)
def test_round_trip_any_split(pkts: list[Packet], data: st.DataObject) -> None:
    stream = b"".join(encode(p.type, *p.args, magic=p.magic) for p in pkts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    dec = Decoder()
    out: list[Packet] = []
    prev = 0
    for cut in cuts + [len(stream)]:
        out += dec.feed(stream[prev:cut])
        prev = cut
    assert out == pkts
    assert dec.pending == 0


@given(packets())
def test_byte_at_a_time(p: Packet) -> None:
    raw = encode(p.type, *p.args, magic=p.magic)
    dec = Decoder()
    out = []
    for i in range(len(raw)):
        out += dec.feed(raw[i:i + 1])
    assert out == [p]


def _raw(magic: bytes, num: int, body: bytes, size: int | None = None) -> bytes:
    return magic + struct.pack(">II", num, len(body) if size is None else size) + body


@pytest.mark.parametrize("raw, message", [
    (_raw(b"HTTP", 6, b""), "bad magic"),
    (b"GET / HTTP/1.1\r\n\r\n", "bad magic"),
    (_raw(RES, 5, b""), "unknown packet type 5"),
    (_raw(RES, 999, b""), "unknown packet type 999"),
    (_raw(RES, 6, b"junk"), "takes no arguments"),
    (_raw(RES, 31, b"H:1\0fn"), "takes 4 arguments, got 2"),
    (_raw(RES, 13, b"nonul"), "takes 2 arguments, got 1"),
    (_raw(RES, 11, b"", size=2**31), "exceeds"),
])
def test_malformed(raw: bytes, message: str) -> None:
    dec = Decoder()
    with pytest.raises(ProtocolError, match=message):
        dec.feed(raw)
    with pytest.raises(ProtocolError):
        dec.feed(encode(PacketType.NOOP, magic=RES))  # a failed decoder stays failed


def test_absurd_length_detected_from_header_alone() -> None:
    dec = Decoder(max_packet=1024)
    with pytest.raises(ProtocolError, match="1025-byte|exceeds"):
        dec.feed(_raw(RES, 28, b"", size=1025))
    assert Decoder(max_packet=1024).feed(_raw(RES, 28, b"h\0" + b"x" * 1022)) != []


def test_expect_magic() -> None:
    with pytest.raises(ProtocolError, match="bad magic"):
        Decoder(expect=RES).feed(encode(PacketType.NOOP, magic=REQ))


def test_partial_packet_is_pending() -> None:
    dec = Decoder()
    raw = encode(PacketType.ECHO_RES, b"hello", magic=RES)
    assert dec.feed(raw[:7]) == []
    assert dec.pending == 7
    assert dec.feed(raw[7:]) == [Packet(RES, PacketType.ECHO_RES, (b"hello",))]

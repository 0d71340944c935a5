"""gearsync.envelope: the workload of gearsync_send's jobs. Round trips against the library's
own C encoder (udf/gs_envelope.c through the cffi test library), MAC checks with Python's
hmac/hashlib, and every way a workload can be refused."""
from __future__ import annotations

import hashlib
import hmac
import struct
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gearsync.envelope import (MAC_LEN, BadSignature, EnvelopeError, MalformedEnvelope, decode,
                               encode)
from helpers import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tests" / "udf"))
import harness  # noqa: E402

FN = b"syncToRedis"


@pytest.fixture(scope="module")
def clib() -> Any:
    subprocess.run(["make", "-s", "-f", "udf/udf.mk", "udf-testlib"], cwd=REPO_ROOT, check=True)
    return harness.load_testlib()


def c_encode(lib: Any, function: bytes, records: list[tuple[int, bytes]],
             secret: bytes | None) -> bytes:
    ffi = harness.test_ffi
    n = len(records)
    versions = ffi.new("uint64_t[]", [v for v, _ in records] or [0])
    bufs = [ffi.from_buffer(p) if p else ffi.new("unsigned char[1]") for _, p in records]
    payloads = ffi.new("const unsigned char *[]", bufs or [ffi.NULL])
    lens = ffi.new("uint32_t[]", [len(p) for _, p in records] or [0])
    cap = 4 + 12 * n + sum(len(p) for _, p in records) + MAC_LEN
    out = ffi.new("unsigned char[]", cap)
    size = lib.gs_test_envelope(function, len(function), secret or ffi.NULL,
                                len(secret or b""), n, versions, payloads, lens, out, cap)
    assert size > 0
    return bytes(ffi.buffer(out, size))


records_st = st.lists(st.tuples(st.integers(0, 2 ** 64 - 1), st.binary(max_size=300)),
                      min_size=1, max_size=40)
functions_st = st.binary(min_size=1, max_size=40).filter(lambda f: b"\x00" not in f)
secrets_st = st.one_of(st.none(), st.binary(min_size=1, max_size=100))


@settings(max_examples=300, deadline=None)
@given(function=functions_st, records=records_st, secret=secrets_st)
def test_c_encoder_and_python_agree_byte_for_byte(clib: Any, function: bytes,
                                                  records: list[tuple[int, bytes]],
                                                  secret: bytes | None) -> None:
    wire = c_encode(clib, function, records, secret)
    assert wire == encode(function, records, secret)
    assert decode(function, wire, secret) == records
    if secret:  # the MAC is the one Python's hmac computes over function NUL body
        assert wire[-MAC_LEN:] == hmac.new(secret, function + b"\x00" + wire[:-MAC_LEN],
                                           hashlib.sha256).digest()
        assert decode(function, wire, None) == records  # not required: not checked


def test_layout_is_the_documented_one() -> None:
    wire = encode(b"f", [(0x0102030405060708, b"ab"), (7, b"")])
    assert wire == b"GS1\x00" + bytes(range(1, 9)) + b"\x00\x00\x00\x02ab" + \
        b"\x00" * 7 + b"\x07" + b"\x00" * 4


@pytest.mark.parametrize("workload,secret", [(b'{"id":1,"name":"x"}', None), (b"", None), (b"GS", None)])
def test_a_raw_workload_is_one_record_of_version_0(workload: bytes, secret: bytes | None) -> None:
    assert decode(FN, workload, secret) == [(0, workload)]


def test_a_raw_workload_is_refused_when_a_secret_is_required() -> None:
    with pytest.raises(BadSignature):
        decode(FN, b'{"id":1,"name":"forged"}', b"k")


def test_signatures() -> None:
    recs = [(1, b"a"), (2, b"b")]
    signed = encode(FN, recs, b"key")
    assert decode(FN, signed, b"key") == recs
    with pytest.raises(BadSignature):
        decode(FN, signed, b"other key")
    with pytest.raises(BadSignature):  # the function name is signed too
        decode(b"otherFunction", signed, b"key")
    tampered = bytearray(signed)
    tampered[-MAC_LEN - 1] ^= 1
    with pytest.raises(BadSignature):
        decode(FN, bytes(tampered), b"key")
    with pytest.raises(BadSignature):  # unsigned envelope, secret required
        decode(FN, encode(FN, recs), b"key")


@pytest.mark.parametrize("wire,what", [
    (b"GS1", "shorter than its header"),
    (b"GS1\x00", "without records"),
    (b"GS1\x02" + struct.pack(">QI", 1, 0), "unknown envelope flags 0x02"),
    (b"GS1\x80" + struct.pack(">QI", 1, 0), "unknown envelope flags 0x80"),
    (b"GS1\x00" + struct.pack(">QI", 1, 5) + b"abcd", "overruns"),
    (b"GS1\x00" + struct.pack(">QI", 1, 0) + b"\x00" * 11, "truncated record header"),
    (b"GS1\x01" + b"\x00" * 31, "shorter than its MAC"),
])
def test_malformed(wire: bytes, what: str) -> None:
    with pytest.raises(MalformedEnvelope, match=what) as e:
        decode(FN, wire, None)
    assert isinstance(e.value, EnvelopeError) and isinstance(e.value, ValueError)


@settings(max_examples=500, deadline=None)
@given(function=functions_st, records=records_st, secret=secrets_st, cut=st.integers(1, 40))
def test_truncated_or_corrupted_never_decodes_to_something_else(
        function: bytes, records: list[tuple[int, bytes]], secret: bytes | None, cut: int) -> None:
    wire = encode(function, records, secret)
    short = wire[:max(4, len(wire) - cut)]
    try:
        got = decode(function, short, secret)
    except EnvelopeError:
        return
    # without a MAC a cut at a record boundary is undetectable: a prefix of the records
    assert secret is None and got == records[:len(got)] and len(got) < len(records)


def test_encode_needs_a_record() -> None:
    with pytest.raises(ValueError):
        encode(FN, [])

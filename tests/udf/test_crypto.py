"""Our SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104) in C, driven through cffi: the NIST
examples, the RFC 4231 test cases, and hypothesis against Python's hashlib/hmac."""
from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import harness

ffi = harness.test_ffi


def sha256(msg: bytes) -> bytes:
    """Through the test library, which conftest's udf_lib fixture builds before any test runs
    (so it is loaded on first use, not at import: collection comes before fixtures)."""
    out = ffi.new("unsigned char[32]")
    harness.load_testlib().gs_test_sha256(msg, len(msg), out)
    return bytes(out)


def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    out = ffi.new("unsigned char[32]")
    harness.load_testlib().gs_test_hmac_sha256(key, len(key), msg, len(msg), out)
    return bytes(out)


# FIPS 180-4 examples (NIST CSRC "Examples with intermediate values") and the long one of
# FIPS 180-2 appendix B.3.
NIST = [
    (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    (b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    (b"a" * 1_000_000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
]

# RFC 4231 section 4: test cases 1-7 (HMAC-SHA-256; case 5 is truncated to 128 bits).
RFC4231 = [
    (b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)), b"\xcd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (b"\x0c" * 20, b"Test With Truncation", "a3b6167473100ee06e0c796c2955552b"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131, b"This is a test using a larger than block-size key and a larger than "
     b"block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
]


@pytest.mark.parametrize("msg,digest", NIST, ids=["abc", "empty", "448-bit", "million-a"])
def test_sha256_nist_examples(msg: bytes, digest: str) -> None:
    assert sha256(msg).hex() == digest


@pytest.mark.parametrize("key,msg,mac", RFC4231, ids=[f"case{i}" for i in range(1, 8)])
def test_hmac_sha256_rfc4231(key: bytes, msg: bytes, mac: str) -> None:
    assert hmac_sha256(key, msg).hex().startswith(mac)
    assert len(mac) in (32, 64)


@pytest.mark.parametrize("n", [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000])
def test_sha256_padding_boundaries(n: int) -> None:
    msg = bytes((i * 7 + 3) & 0xFF for i in range(n))
    assert sha256(msg) == hashlib.sha256(msg).digest()


@settings(max_examples=300, deadline=None)
@given(key=st.binary(max_size=200), msg=st.binary(max_size=3000))
def test_hmac_matches_python(key: bytes, msg: bytes) -> None:
    assert hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest()
    assert sha256(msg) == hashlib.sha256(msg).digest()

"""json_object / udf_json_object through the mysqld-like harness."""
from __future__ import annotations

import decimal
import json
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import (DECIMAL_RESULT, INT_RESULT, REAL_RESULT, STRING_RESULT, Arg, Udf,
                     call_once, init_error)

NAMES = ["json_object", "udf_json_object"]
TYPES = [STRING_RESULT, INT_RESULT, REAL_RESULT, DECIMAL_RESULT]


def jo(*args: Arg, name: str = "udf_json_object") -> bytes:
    out = call_once(name, *args)
    assert out is not None
    return out


def obj(*args: Arg) -> dict:
    out = jo(*args)
    return json.loads(out.decode("utf-8"))


def strict_loads(out: bytes):
    """RFC 8259: UTF-8 text, no NaN/Infinity, no raw control characters."""
    def bad(c):
        raise ValueError(c)
    return json.loads(out.decode("utf-8"), parse_constant=bad, strict=True)


@pytest.mark.parametrize("name", NAMES)
def test_both_names(name: str) -> None:
    assert jo(Arg(1, name="id"), Arg(b"x", name="name"), name=name) == b'{"id":1,"name":"x"}'


def test_zero_args() -> None:
    assert jo() == b"{}"


@pytest.mark.parametrize("attr,key", [
    ("id", "id"), ("NEW.id", "id"), ("t.col", "col"), ("db.t.col", "col"),
    ("`col`", "col"), ("`t`.`col`", "col"), ("t.`my col`", "my col"),
    ("`a.b`.c", "c"), ("OLD.`name`", "name"),
    ("CONCAT(t.a, 'x')", "CONCAT(t.a, 'x')"),  # expression text: verbatim
    ("1 + 2", "1 + 2"), ("t.", "t."), (".x", ".x"), ("`unterminated", "`unterminated"),
    ("a\"b", "a\"b"), ("ключ", "ключ"), ("t.ключ", "ключ"),
])
def test_keys_from_attributes(attr: str, key: str) -> None:
    assert obj(Arg(1, name=attr)) == {key: 1}


def test_every_type() -> None:
    out = jo(Arg(b"s", name="s"), Arg(-42, name="i"), Arg(1.5, name="r"),
             Arg(decimal.Decimal("12.340"), name="d"))
    assert out == b'{"s":"s","i":-42,"r":1.5,"d":12.340}'


@pytest.mark.parametrize("typ", TYPES)
def test_null_for_every_type(typ: int) -> None:
    assert jo(Arg(None, type=typ, name="v")) == b'{"v":null}'


@pytest.mark.parametrize("typ", TYPES)
def test_null_constant_for_every_type(typ: int) -> None:
    assert jo(Arg(None, type=typ, name="v", const=True)) == b'{"v":null}'


def test_constant_args_at_init_and_rows() -> None:
    with Udf("udf_json_object", [Arg(b"c", const=True, name="c"), Arg(1, name="n")]) as f:
        for i in range(5):
            assert f([None, i]) == b'{"c":"c","n":%d}' % i


def test_all_control_chars_escaped() -> None:
    s = bytes(range(0x20)) + b"\x7f"
    out = jo(Arg(s, name="k"))
    assert all(b >= 0x20 for b in out)
    assert strict_loads(out) == {"k": s.decode()}
    for short, c in [(b"\\n", 10), (b"\\t", 9), (b"\\r", 13), (b"\\b", 8), (b"\\f", 12)]:
        assert short in out
    assert b"\\u0000" in out and b"\\u001f" in out and b"\\u000b" in out
    assert b"\x7f" in out  # 0x7f may stay raw


def test_quotes_and_backslash() -> None:
    out = jo(Arg(b'a"b\\c/', name="k"))
    assert out == b'{"k":"a\\"b\\\\c/"}'
    assert strict_loads(out) == {"k": 'a"b\\c/'}


def test_emoji_and_multibyte_byte_exact() -> None:
    s = "héllo wörld ✓ 😀 𝄞 中文".encode()
    out = jo(Arg(s, name="k"))
    assert out == b'{"k":"' + s + b'"}'


@pytest.mark.parametrize("raw", [
    b"\xff", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
    b"\xf0\x9f\x98", b"a\xe2\x82", b"\x80\x80", b"\xc3", b"\xf5\x80", b"ok\xfe\xffok",
    b"\xe2\x82\xac\xe2\x82", b"\xf0\x9f\x98\x80\xf0",
])
def test_invalid_utf8_replaced_like_python(raw: bytes) -> None:
    """Each maximal ill-formed subpart becomes one U+FFFD (Python's 'replace')."""
    out = jo(Arg(raw, name="k"))
    assert strict_loads(out) == {"k": raw.decode("utf-8", "replace")}


def test_long_string_64k_plus() -> None:
    s = (b"0123456789abcdef\t\"" * 5000)[:70000]
    out = jo(Arg(s, name="k"), Arg(b"x" * 300000, name="b"))
    assert strict_loads(out) == {"k": s.decode(), "b": "x" * 300000}


@pytest.mark.parametrize("v", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_double_is_null(v: float) -> None:
    assert obj(Arg(v, name="d")) == {"d": None}


@pytest.mark.parametrize("v", [0.0, -0.0, 0.1, 1e300, -1e-300, 5e-324, 1.7976931348623157e308,
                               123456789.125, 2.0 ** 63, 1 / 3])
def test_double_round_trip_examples(v: float) -> None:
    out = jo(Arg(v, name="d"))
    got = strict_loads(out)["d"]
    assert float(got) == v
    if v == 0:  # sign kept in the text ("-0"; Python reads it as int 0)
        assert out == (b'{"d":-0}' if math.copysign(1, v) < 0 else b'{"d":0}')


def test_double_is_shortest() -> None:
    assert jo(Arg(0.1, name="d")) == b'{"d":0.1}'
    assert jo(Arg(100.0, name="d")) == b'{"d":100}'
    assert jo(Arg(1e21, name="d")) == b'{"d":1e+21}'


@settings(max_examples=500, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_double_round_trip(v: float) -> None:
    assert float(strict_loads(jo(Arg(v, name="d")))["d"]) == v


@pytest.mark.parametrize("v", [0, 1, -1, 2 ** 63 - 1, -(2 ** 63), 2 ** 53 + 1])
def test_big_ints(v: int) -> None:
    assert jo(Arg(v, name="i")) == b'{"i":%d}' % v


def test_unsigned_bigint_prints_signed() -> None:
    """Documented: the UDF interface has no unsigned flag; 2^64-1 arrives as -1."""
    (as_signed,) = struct.unpack("<q", struct.pack("<Q", 2 ** 64 - 1))
    assert jo(Arg(as_signed, name="u")) == b'{"u":-1}'


@pytest.mark.parametrize("text,expected", [
    (b"0", b"0"), (b"-0.5", b"-0.5"), (b"12.340", b"12.340"), (b"1E+5", b"1E+5"),
    (b"18446744073709551615", b"18446744073709551615"),
    (b"-99999999999999999999999999999999999999.999", b"-99999999999999999999999999999999999999.999"),
    (b".5", b'".5"'), (b"012", b'"012"'), (b"1.", b'"1."'), (b"", b'""'), (b"abc", b'"abc"'),
    (b"1e", b'"1e"'), (b"--1", b'"--1"'), (b"1\x00", b'"1\\u0000"'),
])
def test_decimal(text: bytes, expected: bytes) -> None:
    assert jo(Arg(text, type=DECIMAL_RESULT, name="d")) == b'{"d":' + expected + b"}"


def test_many_rows_reuse_buffer() -> None:
    with Udf("udf_json_object", [Arg(b"", name="s"), Arg(0, name="i")]) as f:
        ptrs = set()
        for i in range(2000):
            s = b"y" * (i % 3000) if i % 7 else b"\x01" * 5000
            out = f([s, i])
            assert strict_loads(out) == {"s": s.decode(), "i": i}
            ptrs.add(int(__import__("harness").ffi.cast("uintptr_t", f.initid.ptr)))
        assert len(ptrs) == 1  # state object allocated once per init


def test_init_deinit_many_times() -> None:
    for i in range(5000):
        assert jo(Arg(i, name="n")) == b'{"n":%d}' % i


def test_init_metadata() -> None:
    with Udf("udf_json_object", [Arg(1, name="a")]) as f:
        assert f.initid.maybe_null == 0
        assert f.initid.max_length >= 0xFFFFFF
        assert f.initid.ptr != __import__("harness").ffi.NULL


def test_init_accepts_any_arity() -> None:
    assert init_error("udf_json_object") is None
    assert init_error("json_object", *[Arg(i, name=f"k{i}") for i in range(100)]) is None


values = st.one_of(
    st.tuples(st.just(STRING_RESULT), st.binary(max_size=64)),
    st.tuples(st.just(STRING_RESULT), st.text(max_size=32).map(str.encode)),
    st.tuples(st.just(INT_RESULT), st.integers(-(2 ** 63), 2 ** 63 - 1)),
    st.tuples(st.just(REAL_RESULT), st.floats()),
    st.tuples(st.just(DECIMAL_RESULT), st.binary(max_size=12)),
    st.tuples(st.just(DECIMAL_RESULT), st.decimals(allow_nan=False, allow_infinity=False)
              .map(lambda d: str(d).encode())),
    st.tuples(st.sampled_from(TYPES), st.none()),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=16), values), max_size=8))
def test_always_valid_json(members) -> None:
    args = [Arg(v, type=t, name=k or b"k") for k, (t, v) in members]
    out = jo(*args)
    parsed = json.loads(out.decode("utf-8"), strict=True,
                        object_pairs_hook=list,
                        parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert len(parsed) == len(members)
    for (k, (t, v)), (pk, pv) in zip(members, parsed):
        if v is None:
            assert pv is None
        elif t == STRING_RESULT:
            assert pv == v.decode("utf-8", "replace")
        elif t == INT_RESULT:
            assert pv == v
        elif t == REAL_RESULT:
            assert pv == (v if math.isfinite(v) else None)

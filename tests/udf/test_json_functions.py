"""json_array / json_members / json_values and the nesting rule (all four JSON functions)."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import (DECIMAL_RESULT, INT_RESULT, REAL_RESULT, STRING_RESULT, Arg, Udf,
                     call_once, init_error)


def strict_loads(out: bytes):
    """RFC 8259: UTF-8 text, no NaN/Infinity, no raw control characters."""
    def bad(c):
        raise ValueError(c)
    return json.loads(out.decode("utf-8"), parse_constant=bad, strict=True)


def is_json(raw: bytes) -> bool:
    try:
        strict_loads(raw)
        return True
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False


def call(name: str, *args) -> bytes:
    out = call_once(name, *args)
    assert out is not None
    return out


# ------------------------------------------------------------------ each function

@pytest.mark.parametrize("name", ["json_array", "udf_json_array"])
def test_array(name: str) -> None:
    assert call(name) == b"[]"
    out = call(name, Arg(1), Arg(b"MARY"), Arg(2.5), Arg(None, type=INT_RESULT),
               Arg(b"12.50", type=DECIMAL_RESULT), Arg(b"2006-02-15 04:57:20"))
    assert out == b'[1,"MARY",2.5,null,12.50,"2006-02-15 04:57:20"]'
    assert strict_loads(out)[4] == 12.5


@pytest.mark.parametrize("name", ["json_values", "udf_json_values"])
def test_values(name: str) -> None:
    assert call(name) == b""
    assert call(name, Arg(1), Arg(b"a\tb"), Arg(None)) == b'1,"a\\tb",null'


@pytest.mark.parametrize("name", ["json_members", "udf_json_members"])
def test_members(name: str) -> None:
    assert call(name) == b""
    assert call(name, Arg(b"a"), Arg(1), Arg(b'k"\n'), Arg(b"v")) == b'"a":1,"k\\"\\n":"v"'
    # names are values (non-constant too), numbers as text
    assert call(name, Arg(7), Arg(None)) == b'"7":null'
    # a NULL name leaves the pair out, the rest stays valid
    assert call(name, Arg(None), Arg(1), Arg(b"b"), Arg(2)) == b'"b":2'
    assert call(name, Arg(b"a"), Arg(1), Arg(None), Arg(2)) == b'"a":1'


@pytest.mark.parametrize("n", [1, 3, 5])
def test_members_odd_arity_is_init_error(n: int) -> None:
    msg = init_error("udf_json_members", *[Arg(b"x")] * n)
    assert msg is not None and msg.startswith("udf_json_members") and len(msg) < 80


# ------------------------------------------------------------------ nesting rule

def test_nested_calls_are_inserted_as_json() -> None:
    inner = call("udf_json_array", Arg(b"MARY"), Arg(b"SMITH"))
    out = call("udf_json_array", Arg(1), Arg(inner, name=b"udf_json_array(first_name,last_name)"),
               Arg(b"2006-02-15"))
    assert out == b'[1,["MARY","SMITH"],"2006-02-15"]'
    obj = call("udf_json_object", Arg(1, name=b"film_id"), Arg(b"ACADEMY", name=b"title"))
    out = call("udf_json_object", Arg(b"x", name=b"last_update"),
               Arg(obj, name=b"json_film"))
    assert strict_loads(out) == {"last_update": "x", "json_film": {"film_id": 1, "title": "ACADEMY"}}


def test_json_alias_inserts_raw_like_lib_mysqludf_json() -> None:
    # select json_array('\"\"' json_)  ->  [""]
    assert call("udf_json_array", Arg(b'""', name=b"json_")) == b'[""]'
    assert call("udf_json_array", Arg(b'""', name=b"plain")) == b'["\\"\\""]'
    assert call("udf_json_array", Arg(b' {"a" : [1, 2]} ', name=b"JSON_doc")) == b'[{"a" : [1, 2]}]'


def test_members_spliced_into_object() -> None:
    film = call("udf_json_object", Arg(1, name=b"film_id"))
    members = call("udf_json_members", Arg(b"film"), Arg(film, name=b"udf_json_object(f.film_id)"),
                   Arg(b"n"), Arg(3))
    assert members == b'"film":{"film_id":1},"n":3'
    out = call("udf_json_object", Arg(b"2006", name=b"f.last_update"),
               Arg(members, name=b"udf_json_members('film', ...)"))
    assert strict_loads(out) == {"last_update": "2006", "film": {"film_id": 1}, "n": 3}


def test_values_spliced_into_array() -> None:
    vals = call("udf_json_values", Arg(1), Arg(b"two"))
    out = call("udf_json_array", Arg(vals, name=b"udf_json_values(1, 'two')"), Arg(3))
    assert out == b'[1,"two",3]'


@pytest.mark.parametrize("value", [
    b"", b"   ", b"not json", b"{", b'{"a":1', b"[1,]", b"01", b"1.", b".5", b"NaN", b"Infinity",
    b"tru", b"nul", b"'single'", b'"raw \t tab"', b'"\\x"', b'"\\u12"', b'"\xff"', b"\xc3(",
    b'{"a":1}}', b"[1] [2]", b'"a":1', b"1,2", b"{'a':1}", b"[" * 600 + b"]" * 600,
    b'{"a":1} trailing', b"\x00", b"-", b"1e", b"+1",
])
def test_json_named_column_with_non_json_is_quoted(value: bytes) -> None:
    """A column merely called json_data must not break the object."""
    for name in ("udf_json_object", "udf_json_array", "udf_json_members", "udf_json_values"):
        args = [Arg(b"k"), Arg(value, name=b"json_data")] if name == "udf_json_members" else \
            [Arg(value, name=b"json_data")]
        out = call(name, *args)
        if name == "udf_json_members":
            out = b"{" + out + b"}"
        elif name == "udf_json_values":
            out = b"[" + out + b"]"
        parsed = strict_loads(out)
        if isinstance(parsed, dict) and ("json_data" in parsed or "k" in parsed):
            got = parsed.get("json_data", parsed.get("k"))
        elif isinstance(parsed, list) and parsed:
            got = parsed[0] if len(parsed) == 1 else parsed
        else:
            got = parsed
        if name == "udf_json_object" and value == b'"a":1':
            assert parsed == {"a": 1}  # a member list in an object: spliced
        elif name in ("udf_json_array", "udf_json_values") and value == b"1,2":
            assert parsed == [1, 2]  # a value list in an array: spliced
        else:
            assert got == value.decode("utf-8", "replace"), (name, value, out)


def test_valid_json_in_json_column_is_nested() -> None:
    out = call("udf_json_object", Arg(1, name=b"id"), Arg(b'{"tags":["a"]}', name=b"t.json_data"))
    assert strict_loads(out) == {"id": 1, "json_data": {"tags": ["a"]}}
    out = call("udf_json_object", Arg(b'{"tags":["a"]}', name=b"data"))  # no prefix: a string
    assert strict_loads(out) == {"data": '{"tags":["a"]}'}


def test_only_strings_nest() -> None:
    assert call("udf_json_array", Arg(12, name=b"json_n")) == b"[12]"
    assert call("udf_json_array", Arg(None, type=STRING_RESULT, name=b"json_n")) == b"[null]"


def test_depth_limit() -> None:
    ok = b"[" * 512 + b"]" * 512
    assert call("udf_json_array", Arg(ok, name=b"json_x")) == b"[" + ok + b"]"
    deep = b"[" * 513 + b"]" * 513
    assert strict_loads(call("udf_json_array", Arg(deep, name=b"json_x"))) == [deep.decode()]


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 30, 10 ** 30),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
json_docs = st.recursive(json_leaf, lambda c: st.one_of(
    st.lists(c, max_size=4), st.dictionaries(st.text(max_size=4), c, max_size=4)), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(json_docs, st.sampled_from(["", " ", "\n\t"]), st.booleans())
def test_valid_documents_nest(doc, ws: str, ascii_only: bool) -> None:
    raw = (ws + json.dumps(doc, ensure_ascii=ascii_only) + ws).encode()
    out = call("udf_json_array", Arg(raw, name=b"json_doc"))
    assert strict_loads(out) == [doc]


def _mutations(raw: bytes):
    return st.one_of(
        st.binary(max_size=24),
        st.tuples(st.integers(0, max(len(raw) - 1, 0)), st.binary(min_size=1, max_size=2)).map(
            lambda t: raw[:t[0]] + t[1] + raw[t[0] + 1:]),
        st.integers(0, len(raw)).map(lambda i: raw[:i]),
    )


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_validator_agrees_with_python(data) -> None:
    """Whatever the bytes: raw when Python's strict parser accepts them, else a string."""
    doc = data.draw(json_docs)
    raw = data.draw(_mutations(json.dumps(doc, ensure_ascii=False).encode()))
    out = call("udf_json_array", Arg(raw, name=b"json_x"))
    parsed = strict_loads(out)
    # Python accepts what RFC 8259 also allows; both reject the rest.
    try:
        text = raw.decode("utf-8")
        ok = is_json(raw) and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)
    except UnicodeDecodeError:
        ok = False
    if ok:
        assert parsed == [strict_loads(raw)], raw
    elif raw.strip(b" \t\n\r") and _is_value_list(raw):
        # a list of values (what udf_json_values returns) is spliced into the array by design
        assert parsed == strict_loads(b"[" + raw + b"]"), raw
    else:
        assert len(parsed) == 1 and isinstance(parsed[0], (str, int, float, list, dict, type(None)))
        if not is_json(raw):
            assert parsed == [raw.decode("utf-8", "replace")], raw


def _is_value_list(raw: bytes) -> bool:
    return is_json(b"[" + raw + b"]")


# ------------------------------------------------------------------ always valid

values = st.one_of(
    st.tuples(st.just(STRING_RESULT), st.binary(max_size=40)),
    st.tuples(st.just(INT_RESULT), st.integers(-(2 ** 63), 2 ** 63 - 1)),
    st.tuples(st.just(REAL_RESULT), st.floats()),
    st.tuples(st.just(DECIMAL_RESULT), st.binary(max_size=12)),
    st.tuples(st.sampled_from([STRING_RESULT, INT_RESULT, REAL_RESULT, DECIMAL_RESULT]), st.none()),
)
names = st.one_of(st.binary(max_size=8), st.sampled_from([b"json_x", b"udf_json_object(a)", b"JSON_"]))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["udf_json_array", "udf_json_object", "udf_json_members", "udf_json_values"]),
       st.lists(st.tuples(names, values), max_size=8))
def test_every_function_always_valid(name, items) -> None:
    if name == "udf_json_members" and len(items) % 2:
        items = items[:-1]
    args = [Arg(v, type=t, name=n) for n, (t, v) in items]
    out = call(name, *args)
    wrap = {"udf_json_members": (b"{", b"}"), "udf_json_values": (b"[", b"]")}.get(name, (b"", b""))
    strict_loads(wrap[0] + out + wrap[1])  # rejects bare NaN / Infinity too

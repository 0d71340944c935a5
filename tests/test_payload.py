"""Payload contract: op/id/name, numbers as their JSON text, NULL deletes, clear errors."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gearsync.payload import DELETE, SET, Change, PayloadError, decode


@pytest.mark.parametrize("raw, op, key, value", [
    (b'{"id": 5, "name": "alice"}', SET, "5", "alice"),
    (b'{"id": "k1", "name": "x", "op": "set"}', SET, "k1", "x"),
    (b'{"id": 5, "op": "delete"}', DELETE, "5", None),
    (b'{"id": 5, "name": null}', DELETE, "5", None),
    (b'{"id": 18446744073709551615, "name": ""}', SET, "18446744073709551615", ""),
    (b'{"id": -3, "name": 1.50}', SET, "-3", "1.50"),
    (b'{"id": 1, "name": true}', SET, "1", "true"),
    (b'{"id": 1, "name": "tab\\there \\u0001 \\u00e9"}', SET, "1", "tab\there \x01 \xe9"),
    ('{"id": 1, "name": "h\u00e9llo \U0001f600"}'.encode(), SET, "1", "h\u00e9llo \U0001f600"),
    (b'{"id": 7, "name": "a", "extra": [1, 2]}', SET, "7", "a"),
    (b' \n{"id": 8, "name": "b"}\t\r\n ', SET, "8", "b"),  # JSON allows whitespace around the value
])
def test_contract(raw: bytes, op: str, key: str, value: str | None) -> None:
    c = decode(raw)
    assert (c.op, c.key, c.value) == (op, key, value)
    assert type(c.key) is str and (c.value is None or type(c.value) is str)
    assert isinstance(c.row, dict)


@pytest.mark.parametrize("raw, message", [
    (b"not json", "not JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[1, 2]", "JSON object, got list"),
    (b'"str"', "JSON object, got str"),
    (b"{}", 'no "id"'),
    (b'{"id": null, "name": "x"}', "got null"),
    (b'{"id": [1], "name": "x"}', "got array"),
    (b'{"id": {"a": 1}, "name": "x"}', "got object"),
    (b'{"id": true, "name": "x"}', "got boolean"),
    (b'{"id": "", "name": "x"}', "empty"),
    (b'{"id": 1}', 'no "name"'),
    (b'{"id": 1, "name": {"a": 1}}', "scalar"),
    (b'{"id": 1, "name": NaN}', "NaN"),
    (b'{"id": 1, "op": "upsert", "name": "x"}', "unknown \"op\""),
    (b"", "not JSON"),
    (b"   ", "not JSON"),
    (b'{"id": 1, "name": "x"} {"id": 2, "name": "y"}', "Extra data"),
    (b'{"id": 1, "name": "x"}x', "Extra data"),
    (b'{"id": 1, "name": "x"', "not JSON"),
])
def test_bad_payloads(raw: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        decode(raw)


def test_payload_error_is_value_error() -> None:
    assert issubclass(PayloadError, ValueError)


@given(st.one_of(st.integers(), st.text(min_size=1)), st.one_of(st.none(), st.text()))
def test_round_trip(ident: int | str, name: str | None) -> None:
    c = decode(json.dumps({"id": ident, "name": name}).encode())
    assert c.key == str(ident)
    assert c == Change(DELETE if name is None else SET, str(ident), name, c.row)


def test_changed_primary_key_deletes_the_old_key_first() -> None:
    from gearsync.payload import DELETE, SET, changes

    assert [(c.op, c.key, c.value) for c in changes(b'{"id":70,"name":"x","old_id":7}')] == [
        (DELETE, "7", None), (SET, "70", "x")]
    assert [(c.op, c.key) for c in changes(b'{"id":7,"name":"x","old_id":7}')] == [(SET, "7")]
    assert [(c.op, c.key) for c in changes(b'{"id":7,"name":"x"}')] == [(SET, "7")]
    with pytest.raises(PayloadError):
        changes(b'{"id":7,"name":"x","old_id":[1]}')


def _refuse(constant: str) -> None:
    raise ValueError(constant)


@given(st.text(alphabet=' \t\n\r{}[]":,0123456789.eE+-abnlrstufid\\', max_size=40))
def test_fast_scan_agrees_with_the_json_module(text: str) -> None:
    """decode's shortcut (the C scanner alone) accepts exactly what json.loads accepts."""
    try:
        want: object = json.loads(text, parse_constant=_refuse)  # NaN, Infinity: not JSON
    except ValueError:
        want = ValueError
    try:
        got: object = decode(text.encode()).row
    except PayloadError as e:
        got = ValueError if "not JSON" in str(e) or "not valid JSON" in str(e) else "contract"
    if got != "contract":
        assert (got is ValueError) == (want is ValueError), (text, got, want)

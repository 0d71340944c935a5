"""Decode a job's workload (a JSON object) into a :class:`Change`.

Payload contract (direct mode, function ``syncToRedis``)::

    {"id": 5, "name": "alice"}             -> SET "5" "alice"
    {"id": "k1", "name": "x", "op": "set"}  -> SET "k1" "x"
    {"id": 5, "op": "delete"}               -> DEL "5"
    {"id": 5, "name": null}                 -> DEL "5"

* ``op``: optional, ``"set"`` (default) or ``"delete"``.
* ``id``: required, a string (non-empty) or a number. A number becomes its JSON text
  exactly as sent (``5`` -> ``"5"``, ``18446744073709551615`` stays exact, ``1.50`` -> ``"1.50"``).
* ``name``: required for ``set``; a string is stored as is (UTF-8), a number or boolean as
  its JSON text (``true``/``false``). JSON ``null`` deletes the key: Redis has no NULL, and an
  absent key (GET -> nil) is the one value no string can be confused with. Storing ``""``,
  as the seed did, makes NULL and the empty string indistinguishable.
* ``old_id``: optional (UPDATE triggers send ``OLD.id AS old_id``); when it differs from
  ``id`` the primary key changed, and :func:`changes` also deletes the old key, first.
* Other members are ignored by the default handler and kept in ``Change.row``.
* Anything else (not UTF-8 JSON, not an object, no/empty/non-scalar id, unknown op,
  object/array name, NaN/Infinity) raises :class:`PayloadError`.
"""

from __future__ import annotations

import json
from typing import Any

from .changes import DELETE, SET, Change, OutboxRow

__all__ = ["Change", "PayloadError", "decode", "changes", "SET", "DELETE", "Num", "decode_json", "direct_change"]


class PayloadError(ValueError):
    """The workload does not follow the payload contract."""


class Num(str):
    """A JSON number kept as its source text."""


def _bad_constant(name: str) -> Any:
    raise PayloadError(f"{name} is not valid JSON")


_decoder = json.JSONDecoder(parse_int=Num, parse_float=Num, parse_constant=_bad_constant)
decode_json = _decoder.decode
#: The decoder's C scanner: ``decode_json`` less its two whitespace regexes (a tenth of the
#: worker's time per job in a drain); text it does not consume whole goes to ``decode_json``.
_scan_once = _decoder.scan_once


def _text(value: Any, what: str) -> str:
    if isinstance(value, str):  # includes Num
        return str.__str__(value) if type(value) is not str else value
    if value is True:
        return "true"
    if value is False:
        return "false"
    raise PayloadError(f"{what} must be a string or a number, got {type(value).__name__}")


def decode(workload: bytes | bytearray | memoryview | str) -> Change:
    """Workload bytes -> Change, or PayloadError saying what is wrong."""
    try:
        text = workload if isinstance(workload, str) else bytes(workload).decode("utf-8")
        try:
            obj, end = _scan_once(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):  # whitespace around the value, extra data, or no JSON at all
            obj = decode_json(text)
    except UnicodeDecodeError as e:
        raise PayloadError(f"payload is not UTF-8: {e}") from None
    except ValueError as e:  # JSONDecodeError, or PayloadError from a constant
        if isinstance(e, PayloadError):
            raise
        raise PayloadError(f"payload is not JSON: {e}") from None
    if type(obj) is not dict:
        raise PayloadError(f"payload must be a JSON object, got {type(obj).__name__}")
    try:
        raw_id = obj["id"]
    except KeyError:
        raise PayloadError("payload has no \"id\"") from None
    if raw_id is None or raw_id is True or raw_id is False or not isinstance(raw_id, str):
        raise PayloadError(f"\"id\" must be a string or a number, got {_jtype(raw_id)}")
    key = str.__str__(raw_id) if type(raw_id) is Num else raw_id
    if not key:
        raise PayloadError("\"id\" is empty")
    op = obj.get("op", SET)
    if op == SET:
        try:
            name = obj["name"]
        except KeyError:
            raise PayloadError(f"payload for id {key!r} has no \"name\" (use null to delete)") from None
        if name is None:
            return Change(DELETE, key, None, obj)
        if type(name) is str:
            return Change(SET, key, name, obj)
        if isinstance(name, (dict, list)):
            raise PayloadError(f"\"name\" of id {key!r} must be a scalar, got {_jtype(name)}")
        return Change(SET, key, _text(name, "\"name\""), obj)
    if op == DELETE:
        return Change(DELETE, key, None, obj)
    raise PayloadError(f"unknown \"op\" {op!r} for id {key!r}: expected \"set\" or \"delete\"")


def changes(workload: bytes | bytearray | memoryview | str) -> list[Change]:
    """Like :func:`decode`, plus the deletion of the old key when ``old_id`` differs from ``id``."""
    change = decode(workload)
    row = change.row
    old = row.get("old_id") if row is not None else None
    if old is None:
        return [change]
    if not isinstance(old, str) or old is True or old is False:
        raise PayloadError(f"\"old_id\" must be a string or a number, got {_jtype(old)}")
    old_key = str.__str__(old)
    if not old_key or old_key == change.key:
        return [change]
    return [Change(DELETE, old_key, None, row), change]


def _jtype(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def direct_change(workload: bytes, version: int = 0) -> OutboxRow:
    """A ``gearsync_direct`` job (see :func:`gearsync.triggers.direct_triggers`) as a change:
    ``{"s", "o", "k" (hex), "ok" (hex or null), "pk"}``; the legacy form ``{"source", "op",
    "k", "old_k", "json_row"}`` (triggers of gearsync 0.1) carries its row instead."""
    # Numbers with a fraction or an exponent stay their text: a DECIMAL primary key must not
    # pass through a double (12345678901234567.89 would come back as 1.2345678901234568e+16 and
    # name no row). They travel on as JSON strings, which is how the safe path reads them.
    obj = json.loads(workload, parse_float=str)
    if type(obj) is not dict:
        raise ValueError("not a gearsync_direct payload (a JSON object)")
    if "s" in obj:
        if not isinstance(obj["s"], str) or obj.get("o") not in ("insert", "update", "delete") \
                or not isinstance(obj.get("k"), str) or not isinstance(obj.get("pk", []), (list, type(None))):
            raise ValueError("not a gearsync_direct payload (s, o, k, ok, pk)")
        ok = obj.get("ok")
        return OutboxRow(0, bytes.fromhex(obj["k"]), bytes.fromhex(ok) if isinstance(ok, str) else None, obj["o"],
                         None, obj["s"], None if obj.get("pk") is None else json.dumps(obj["pk"]), version)
    if not isinstance(obj.get("source"), str) or not isinstance(obj.get("k"), str):
        raise ValueError("not a gearsync_direct payload (s, o, k, ok, pk)")
    old = obj.get("old_k")
    row = json.loads(workload).get("json_row")  # the legacy row keeps its numbers as numbers
    return OutboxRow(0, obj["k"].encode("utf-8", "surrogatepass"),
                     old.encode("utf-8", "surrogatepass") if isinstance(old, str) else None,
                     obj.get("op") or "update", None if row is None else json.dumps(row), obj["source"], None, version)

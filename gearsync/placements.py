"""A row's placements in its table's extra targets (gearsync.targets), as versioned changes.

Each placement is a :class:`~gearsync.changes.VersionedChange` whose version lives in the
placement's record (:func:`gearsync.keys.record_key` of the target and the row's key):

* set / sorted set: the set's key and the member (and score) the read computed, or no
  arguments when the row places nothing — gone, outside the ``where``, or a key, member or
  score that is NULL; ``versioned.lua`` removes what the record says the row placed before;
* stream: one event, ``op`` "upsert" with the row as JSON (the value's columns and fields) or
  "delete" (gone or outside the ``where``), with the row's key and the change's version.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from .changes import VersionedChange
from .computed import target_name
from .config import TableConfig
from .keys import record_key

__all__ = ["placements", "OPS"]

#: Target type → the script's op.
OPS = {"set": b"S", "zset": b"Z", "stream": b"X"}


class _Row(Protocol):
    def present(self, values: Sequence[Any]) -> bool: ...

    def json_text(self, values: Sequence[Any]) -> bytes: ...


def _bytes(v: Any) -> bytes:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    return str(v).encode("utf-8", "surrogateescape")


def placements(cfg: TableConfig, names: Sequence[str], row: _Row | None, key: bytes, version: int,
               values: Sequence[Any] | None) -> list[VersionedChange]:
    """What the row whose key is ``key`` places in each extra target of ``cfg`` (``values``
    None: the row is gone; else ``row`` is its table's encoder and ``names`` its read's names)."""
    present = values is not None and row is not None and row.present(values)
    index = {n: i for i, n in enumerate(names)} if present else {}
    out: list[VersionedChange] = []
    for i, t in enumerate(cfg.targets):
        rec = record_key(t.id, key)
        op = OPS[t.type]
        if t.type == "stream":
            args: tuple[bytes, ...] = (b"%d" % t.maxlen, b"upsert" if present else b"delete", key)
            if present:
                assert values is not None and row is not None
                args += (row.json_text(values),)
            out.append(VersionedChange(t.key.encode("utf-8", "surrogateescape").replace(b"{{", b"{").replace(
                b"}}", b"}"), version, None, op=op, args=args, record=rec))
            continue
        parts: list[Any] = []
        if present:
            assert values is not None
            parts = [values[index[target_name(i, p)]] for p in ("k", "m", "s") if target_name(i, p) in index]
        if not parts or any(p is None for p in parts):
            out.append(VersionedChange(key, version, None, op=op, args=(), record=rec))
        else:
            out.append(VersionedChange(_bytes(parts[0]), version, None, op=op,
                                       args=tuple(_bytes(p) for p in parts[1:]), record=rec))
    return out

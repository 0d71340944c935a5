"""The types a change takes on its way to Redis.

* :class:`Change` — a plain write of the seed's direct mode (``SET key value`` / ``DEL key``),
  what a Gearman handler returns;
* :class:`TableChange` — a commit-confirmed change of a configured table, what a table
  handler receives; :class:`Value` — what a table handler returns;
* :class:`OutboxRow` — a row of the safe-mode outbox, as the worker claims it;
* :class:`VersionedChange` — a write through the versioned script (safe mode, configured
  direct mode, backfill, verify/repair).

No I/O here: every module that produces or consumes changes imports them from this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

__all__ = ["SET", "DELETE", "Change", "TableChange", "TableHandler", "Value", "VersionedChange", "OutboxRow", "as_versioned"]

SET = "set"
DELETE = "delete"


class Change(NamedTuple):
    """One Redis write: ``op`` is "set" (value is a str) or "delete" (value is None)."""

    op: str
    key: str
    value: str | None
    row: dict[str, Any] | None = None


class TableChange(NamedTuple):
    """One commit-confirmed change of a source table, as a table handler receives it.

    ``row`` is the value columns decoded from JSON (None for a delete); ``version`` is the
    change's version (for one key it grows in commit order)."""

    source: str
    op: str
    key: str
    old_key: str | None
    version: int
    row: dict[str, Any] | None


@dataclass(frozen=True)
class Value:
    """What a key should hold: ``kind`` is "string" (``data`` bytes), "hash" (``data`` a dict of
    bytes to bytes), "redisjson" (``data`` a JSON document) or "delete"; ``ttl`` seconds, None
    for no expiry."""

    kind: str
    data: bytes | dict[bytes, bytes] | None = None
    ttl: int | None = None


#: ``fn(change) -> value``: bytes/str (a string), a :class:`Value`, or None (delete).
TableHandler = Callable[[TableChange], Any]


class OutboxRow(NamedTuple):
    """One change of a source row: a row of ``gearsync.outbox`` as the worker claimed it, or a
    direct-mode job (``id`` 0).

    ``key`` is the row's Redis key after the change (before it, for a delete), ``old_key`` the
    key before an UPDATE that changed it. ``pk`` names the row by its primary key (a JSON
    array, binary parts as hex) for the worker to read it; legacy changes carry the value
    columns as JSON in ``row`` instead. ``ver`` is the change's version (``gearsync_seq()`` in
    the trigger; 0 for rows written before versions existed, which use ``id``)."""

    id: int
    key: bytes
    old_key: bytes | None
    op: str
    row: str | None
    source: str | None = None
    pk: str | None = None
    ver: int = 0
    age: float = 0.0        # seconds since the outbox row was written (0 for a job)


class VersionedChange(NamedTuple):
    """Write ``value`` to ``key`` (None: delete, leaving a tombstone) if stored version < version.

    ``hash``: write a Redis hash of these fields instead of ``value``; ``ttl``: expire the key.
    ``op`` b"j": ``value`` is a JSON document for RedisJSON (``JSON.SET key $ value``). A
    placement of an extra target (gearsync.targets) has ``op`` b"S" (set: ``args`` member),
    b"Z" (sorted set: member, score) or b"X" (stream: maxlen, event op, row key[, row JSON]),
    no ``args`` for a row that places nothing (S, Z), and its version in the hash ``record``."""

    key: bytes
    version: int | bytes    # repair ("cas"): the stored text as bytes, "!"-prefixed to reset it
    value: bytes | None
    hash: dict[bytes, bytes] | None = None
    ttl: int | None = None
    op: bytes | None = None
    args: tuple[bytes, ...] = ()
    record: bytes | None = None

    @classmethod
    def of(cls, key: bytes, version: int, value: Value) -> "VersionedChange":
        """The write that makes ``key`` hold ``value``."""
        if value.kind == "hash":
            return cls(key, version, None, value.data, value.ttl)  # type: ignore[arg-type]
        if value.kind == "string":
            return cls(key, version, value.data, None, value.ttl)  # type: ignore[arg-type]
        if value.kind == "redisjson":
            return cls(key, version, value.data, None, value.ttl, b"j")  # type: ignore[arg-type]
        return cls(key, version, None)


def as_versioned(c: Change, version: int) -> VersionedChange:
    """A plain change (the seed's payload) as a versioned write."""
    key = c.key.encode("utf-8", "surrogatepass")
    return VersionedChange(key, version, None if c.value is None else c.value.encode("utf-8", "surrogatepass"))

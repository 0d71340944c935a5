"""Verify and repair of a table's extra targets (gearsync.targets), beside :mod:`gearsync.verify`.

Per row and target the expected placement (from the same read as the worker's) is compared
with the placement's record and with the target itself:

* set / sorted set: the record must name the key and member the row maps to, the set must
  hold the member (a sorted set with the row's score, compared as numbers) — else **missing**
  (never placed) or **stale** (placed elsewhere, member gone, other score); a row that places
  nothing must have no placement recorded;
* stream: a row inside the ``where`` must have had an "upsert" entry (its record's last op),
  and that entry, while MAXLEN has not trimmed it, must carry the row as it is now; a row that
  is not must have had none or a "delete" last.

**Orphans**: records of rows that no longer exist (or no longer map to this key) that still hold
a placement, and members of the target's sets (keys matching its key template) that no row
expects and no record claims. Repair goes through ``versioned.lua`` in ``cas`` mode on the
record's version (a placement moved by a live change meanwhile is left alone); a stray member
that no record claims is removed with SREM / ZREM.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable

from .changes import VersionedChange
from .config import TableConfig
from .constants import RECORD_PREFIX
from .keys import key_pattern, record_pattern, reserved

__all__ = ["TargetCheck"]


def _same_score(got: Any, want: bytes) -> bool:
    try:
        return got is not None and float(got) == float(want)
    except ValueError:
        return False


def _json(text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return object()


class TargetCheck:
    """The placements of one table across its chunks; ``note(kind, key)`` counts drift,
    ``stored(version)`` turns a stored version into the one to repair against."""

    def __init__(self, cfg: TableConfig, client: Any, note: Callable[[str, bytes], None],
                 stored: Callable[[Any], tuple[Any, bool]]) -> None:
        self.cfg, self.client, self.note, self.stored = cfg, client, note, stored
        self.rows: dict[bytes, set[bytes]] = {t.id: set() for t in cfg.targets}     # target → row keys seen
        self.expected: dict[bytes, set[tuple[bytes, bytes]]] = {t.id: set() for t in cfg.targets}
        self.claimed: dict[bytes, set[tuple[bytes, bytes]]] = {t.id: set() for t in cfg.targets}

    def chunk(self, placements: list[VersionedChange]) -> list[VersionedChange]:
        """Check one chunk's placements; the fixes (cas writes) for those that drifted."""
        if not placements:
            return []
        pipe = self.client.pipeline(transaction=False)
        for c in placements:
            pipe.hmget(c.record, "v", "k", "m", "i")
            if c.op == b"S" and c.args:
                pipe.sismember(c.key, c.args[0])
            elif c.op == b"Z" and c.args:
                pipe.zscore(c.key, c.args[0])
            else:
                pipe.exists(c.key)
        replies = pipe.execute(raise_on_error=False)
        fixes: list[VersionedChange] = []
        entries: list[tuple[VersionedChange, bytes, Any]] = []
        for i, c in enumerate(placements):
            rec, there = replies[2 * i], replies[2 * i + 1]
            if isinstance(rec, Exception):
                rec = [None, None, None, None]
            v, k, m, entry = rec
            tid = c.record[len(RECORD_PREFIX):].split(b":", 1)[0] if c.record else b""
            row_key = c.record[len(RECORD_PREFIX) + len(tid) + 1:] if c.record else b""
            self.rows[tid].add(row_key)
            if k is not None and c.op != b"X":
                self.claimed[tid].add((k, m))
            version, corrupt = self.stored(v)
            fix = c._replace(version=version)
            if corrupt:
                self.note("corrupt", c.record or c.key)
                fixes.append(fix)
                continue
            if c.op == b"X":
                placed = c.args[1] == b"upsert"
                if placed and m != b"upsert":
                    self.note("missing" if m is None else "stale", c.record or c.key)
                    fixes.append(fix)
                elif not placed and m == b"upsert":
                    self.note("stale", c.record or c.key)
                    fixes.append(fix)
                elif placed and entry is not None:
                    entries.append((fix, entry, c.args[3]))
                continue
            if c.args:
                self.expected[tid].add((c.key, c.args[0]))
                ok = k == c.key and m == c.args[0] and (
                    there is True or there == 1 if c.op == b"S" else _same_score(there, c.args[1]))
            else:
                ok = k is None
            if not ok:
                # missing: the target lacks what the row places; stale: it holds something else
                lacks = bool(c.args) and (k is None or (k == c.key and m == c.args[0] and c.op == b"S"))
                self.note("missing" if lacks else "stale", c.record or c.key)
                fixes.append(fix)
        if entries:  # the entries a stream's records point at, unless MAXLEN trimmed them
            pipe = self.client.pipeline(transaction=False)
            for fix, entry, _row in entries:
                pipe.xrange(fix.key, entry, entry)
            for (fix, _entry, row), got in zip(entries, pipe.execute(raise_on_error=False)):
                if isinstance(got, list) and got and _json(got[0][1].get(b"row")) != _json(row):
                    self.note("stale", fix.record or fix.key)
                    fixes.append(fix)
        return fixes

    def orphans(self, scan_count: int = 1000) -> tuple[list[VersionedChange], list[tuple[bytes, bytes, bytes]]]:
        """(cas removals of placements recorded for rows not seen, stray (op, key, member))."""
        fixes: list[VersionedChange] = []
        for t in self.cfg.targets:
            op = {"set": b"S", "zset": b"Z", "stream": b"X"}[t.type]
            records = [r for r in self.client.scan_iter(match=record_pattern(t.id), count=scan_count)]
            prefix = RECORD_PREFIX + t.id + b":"
            unseen = [r for r in records if r[len(prefix):] not in self.rows[t.id]]
            for rec, (v, k, m) in zip(unseen, self._hmget(unseen)):
                row_key = rec[len(prefix):]
                if k is not None and op != b"X":
                    self.claimed[t.id].add((k, m))
                if (op == b"X" and m == b"upsert") or (op != b"X" and k is not None):
                    self.note("orphaned", rec)
                    version = self.stored(v)[0]
                    if op == b"X":
                        fixes.append(VersionedChange(t.key.encode().replace(b"{{", b"{").replace(b"}}", b"}"),
                                                     version, None, op=op,
                                                     args=(b"%d" % t.maxlen, b"delete", row_key), record=rec))
                    else:
                        fixes.append(VersionedChange(row_key, version, None, op=op, args=(), record=rec))
        return fixes, self._strays()

    def _hmget(self, keys: Iterable[bytes]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for k in keys:
            pipe.hmget(k, "v", "k", "m")
        return list(pipe.execute())

    def _strays(self, scan_count: int = 1000) -> list[tuple[bytes, bytes, bytes]]:
        """Members of a set / sorted set target that no row expects and no record claims."""
        out: list[tuple[bytes, bytes, bytes]] = []
        for t in self.cfg.targets:
            if t.type == "stream":
                continue
            want = {"set": b"set", "zset": b"zset"}[t.type]
            ok = self.expected[t.id] | self.claimed[t.id]
            for key in self.client.scan_iter(match=key_pattern(t.key), count=scan_count):
                if reserved(key) or self.client.type(key) != want:
                    continue
                members = self.client.smembers(key) if t.type == "set" else self.client.zrange(key, 0, -1)
                for mem in members:
                    if (key, mem) not in ok:
                        self.note("orphaned", key + b" " + mem)
                        out.append((b"S" if t.type == "set" else b"Z", key, mem))
        return out

    def remove(self, strays: list[tuple[bytes, bytes, bytes]]) -> int:
        """SREM / ZREM stray members; how many were removed."""
        if not strays:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for op, key, mem in strays:
            (pipe.srem if op == b"S" else pipe.zrem)(key, mem)
        return sum(int(x) for x in pipe.execute())

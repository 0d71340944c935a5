"""``gearsync verify [--repair]``: compare each configured table with Redis.

For every row (read in primary-key chunks exactly as :mod:`gearsync.backfill` reads them, so
the expected value is byte-identical to the worker's) one pipeline reads the key (``GET``, or
``HGETALL`` + ``TYPE`` for a hash table) and its version key. A row's key is

* **missing** when Redis has no such key but the row maps to a value;
* **stale** when Redis holds something else (another value, another type, or a value where the
  row maps to no key, e.g. a NULL ``column`` or a row outside the ``where``);
* **ttl** when the key's expiry is not the configured one: no TTL although ``ttl`` is set (a
  ``PERSIST``), a TTL longer than ``ttl``, or a TTL where none is configured.

A ``redisjson`` value is compared as JSON (RedisJSON prints numbers its own way). A table's
extra targets are checked by :mod:`gearsync.verify_targets`.

**Orphans** are keys matching the table's key template as a glob (``order:{shop_id}:{id}`` →
``order:*:*``, literal ``*?[]\\`` escaped) that no row maps to: a ``SCAN MATCH`` after the rows
were read (on every primary of a Redis Cluster), against the set of their keys (held in memory:
about 100 bytes per row). Keys under ``gearsync:`` are never orphans. Two tables whose
templates overlap (``user:{id}`` and ``user:{id}:x``) would see each other's keys as orphans:
give them disjoint prefixes.

``--repair`` writes the expected value (or deletes the orphan) with ``versioned.lua`` in mode
``cas``: only if the key's version is still the one read during the check, so a live change
that landed meanwhile is never overwritten. What a repair writes is decided *after* the
version was read: the rows to repair are read again, and a key no row mapped during the scan
is an orphan only if no row maps to it once its version was read (a row inserted after its
chunk was read has such a key). A change committed after that carries a higher version than
the one read, so it either makes the repair's ``cas`` fail or lands after it (tested: a
repair running beside three workers and a stream of writes).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

from .changes import VersionedChange
from .codec import PK_HEX_KINDS
from .config import Config
from .constants import DEFAULT_CHUNK, DEFAULT_REDIS_URL
from .keys import key_pattern, reserved, version_key
from .mapping import row_changes, target_changes
from .modules import require_modules
from .progress import Progress
from .quoting import MARK, params, qualified
from .redis_clients import endpoints, is_cluster
from .scan import Rows, TableReader, count_rows
from .schema import ResolvedTable, resolve
from .verify_targets import TargetCheck
from .versioned import APPLIED, ScriptRunner

__all__ = ["verify", "verify_table", "TableReport"]

log = logging.getLogger(__name__)

SAMPLE = 5


@dataclass
class TableReport:
    table: str
    rows: int = 0
    missing: int = 0
    stale: int = 0
    orphaned: int = 0
    corrupt: int = 0      # keys whose stored version is not a number or lies in the future
    ttl: int = 0          # keys whose expiry is not the configured one
    repaired: int = 0
    samples: dict[str, list[str]] = field(default_factory=lambda: {"missing": [], "stale": [], "orphaned": [],
                                                                   "corrupt": [], "ttl": []})

    @property
    def drift(self) -> int:
        return self.missing + self.stale + self.orphaned + self.corrupt + self.ttl

    def note(self, kind: str, key: bytes) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.samples[kind]) < SAMPLE:
            self.samples[kind].append(key.decode("utf-8", "backslashreplace"))

    def __str__(self) -> str:
        head = (f"{self.table}: {self.rows} rows, {self.missing} missing, {self.stale} stale, "
                f"{self.orphaned} orphaned" + (f", {self.corrupt} with a corrupt version" if self.corrupt else "")
                + (f", {self.ttl} with a wrong TTL" if self.ttl else "")
                + (f", {self.repaired} repaired" if self.repaired else ""))
        lines = [head] + [f"  {k} e.g. {', '.join(v)}" for k, v in self.samples.items() if v]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "rows": self.rows, "missing": self.missing, "stale": self.stale,
                "orphaned": self.orphaned, "corrupt": self.corrupt, "ttl": self.ttl, "repaired": self.repaired,
                "samples": self.samples}


def _matches(change: VersionedChange, kind: Any, got: Any) -> bool:
    if change.hash is not None:
        return kind == b"hash" and got == change.hash
    if change.value is None:
        return got is None
    if change.op == b"j":
        return kind == b"ReJSON-RL" and got is not None and json.loads(got) == json.loads(change.value)
    return kind == b"string" and got == change.value


def _ttl_ok(change: VersionedChange, ttl: Any) -> bool:
    """Whether a present key's TTL (seconds, -1 none) is what the change gives it."""
    if change.value is None and change.hash is None or not isinstance(ttl, int):
        return True
    return ttl == -1 if not change.ttl else 0 <= ttl <= change.ttl


def version_ceiling(conn: Any) -> int | None:
    """The highest version a key may legitimately hold: the database's version counter now
    (``gearsync_seq()``) plus a minute for other servers' clocks; None without the UDF."""
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT gearsync_seq()")
            return int(cur.fetchone()[0]) + 60_000_000
    except Exception:
        return None


def _stored(ver: Any, ceiling: int | None) -> tuple[int | bytes, bool]:
    """(the version to repair against, corrupt?): a stored version that is not a number or lies
    in the future (a forged or hand-made one, which would drop every later change of its key)
    is corrupt, and repair resets it ("!" + its text: see versioned.lua)."""
    if ver is None:
        return 0, False
    try:
        v = int(ver)
    except ValueError:
        return b"!" + ver, True
    if v < 0 or (ceiling is not None and v > ceiling):
        return b"!" + ver, True
    return v, False


def _mapped_now(conn: Any, rt: ResolvedTable, keys: Sequence[bytes]) -> set[bytes]:
    """Which of ``keys`` some row of the table maps to now (one scan of the table per 1,000
    keys; one read of every key when there are more)."""
    expr = rt.key_sql("t")
    table = f"{qualified(rt.cfg.schema, rt.cfg.table)} AS t"
    found: set[bytes] = set()
    with conn.cursor() as cur:
        if len(keys) > 1000:
            cur.execute(f"SELECT {expr} FROM {table}")
            found = {_key_bytes(r[0]) for r in cur.fetchall()}
            return found & set(keys)
        for i in range(0, len(keys), 1000):
            part = keys[i:i + 1000]
            cur.execute(params(f"SELECT {expr} FROM {table} WHERE {expr} IN ({', '.join([MARK] * len(part))})"),
                        list(part))
            found |= {_key_bytes(r[0]) for r in cur.fetchall()}
    return found


def _key_bytes(v: Any) -> bytes:
    return bytes(v) if isinstance(v, (bytes, bytearray)) else str(v).encode("utf-8", "surrogatepass")


def _reread(reader: TableReader, batch: Rows, fixes: list[VersionedChange]) -> list[VersionedChange]:
    """The repairs of ``fixes`` with their rows read again, now that their versions were read:
    a change that committed between the first read of a row and the read of its version is in
    the new read (so repair cannot write the older value over it), and one that lands later
    changes the version, which makes the repair's cas a no-op."""
    wanted = {c.key for c in fixes}
    pk = [batch.names.index(c) for c in reader.rt.primary_key]
    hexed = [reader.rt.kinds.get(c) in PK_HEX_KINDS for c in reader.rt.primary_key]
    pks = [[(bytes(values[i]).hex() if h and isinstance(values[i], (bytes, bytearray)) else values[i])
            for i, h in zip(pk, hexed)] for key, values in batch.rows if key in wanted]
    now = {c.key: c for c in row_changes(reader.cfg, reader.by_keys(pks))}
    return [now.get(c.key, VersionedChange(c.key, 0, None))._replace(version=c.version) for c in fixes]


def verify_table(rt: ResolvedTable, conn: Any, client: Any, *, repair: bool = False,
                 chunk: int = DEFAULT_CHUNK, progress: bool = True, runner: ScriptRunner | None = None,
                 scan_count: int = 1000) -> TableReport:
    """Compare one table with Redis (and repair it). Safe beside live changes: what a repair
    writes is decided after the versions were read — the rows it repairs are read again, and an
    orphan is a key no row maps to once its version was read — so a repair (``cas`` on the
    version read) never writes a value older than a live change that landed, nor deletes a key
    a new row just got."""
    rep = TableReport(rt.name)
    runner = runner or (ScriptRunner(client) if repair else None)
    ceiling = version_ceiling(conn)
    bar = Progress(f"verify {rt.name}", count_rows(conn, rt), enabled=progress)
    shape = rt.cfg.value
    tagged = is_cluster(client)
    seen: set[bytes] = set()
    targets = TargetCheck(rt.cfg, client, rep.note, lambda v: _stored(v, ceiling))
    reader = TableReader(rt.cfg, lambda: conn, rt)
    for _last, batch in reader.chunks(None, chunk):
        changes = row_changes(rt.cfg, batch)
        pipe = client.pipeline(transaction=False)
        for c in changes:
            seen.add(c.key)
            pipe.type(c.key)
            if shape == "hash":
                pipe.hgetall(c.key)
            elif shape == "redisjson":
                pipe.execute_command("JSON.GET", c.key)
            else:
                pipe.get(c.key)
            pipe.get(version_key(c.key, tagged))
            pipe.ttl(c.key)
        replies = pipe.execute(raise_on_error=False)
        fixes: list[VersionedChange] = []
        for i, c in enumerate(changes):
            kind, got, ver, ttl = replies[4 * i: 4 * i + 4]
            if isinstance(got, Exception) or kind == b"none":
                got = None
            version, corrupt = _stored(ver, ceiling)
            if corrupt:
                rep.note("corrupt", c.key)
            elif not _matches(c, kind, got):
                rep.note("missing" if kind == b"none" else "stale", c.key)
            elif not _ttl_ok(c, ttl):
                rep.note("ttl", c.key)
            else:
                continue
            fixes.append(c._replace(version=version))
        if repair and fixes:
            fixes = _reread(reader, batch, fixes)
        fixes += targets.chunk(target_changes(rt.cfg, batch))
        rep.rows += len(batch.rows)
        bar.add(len(batch.rows))
        if repair and fixes:
            assert runner is not None
            rep.repaired += runner.run(fixes, "cas").count(APPLIED)
    pattern = key_pattern(rt.cfg.key)
    candidates = [k for k in dict.fromkeys(client.scan_iter(match=pattern, count=scan_count))  # every primary
                  if k not in seen and not reserved(k)]
    orphans: list[VersionedChange] = []
    if candidates:
        pipe = client.pipeline(transaction=False)  # one GET each: a cluster's are in many slots
        for k in candidates:
            pipe.get(version_key(k, tagged))
        versions = pipe.execute()
        live = _mapped_now(conn, rt, candidates)  # rows that got such a key since their chunk was read
        for k, v in zip(candidates, versions):
            if k not in live:
                rep.note("orphaned", k)
                orphans.append(VersionedChange(k, _stored(v, ceiling)[0], None))
    if repair and orphans:
        assert runner is not None
        rep.repaired += runner.run(orphans, "cas").count(APPLIED)
    if rt.cfg.targets:
        placed, strays = targets.orphans(scan_count)
        if repair:
            assert runner is not None
            rep.repaired += (runner.run(placed, "cas").count(APPLIED) if placed else 0) + targets.remove(strays)
    bar.close()
    log.info("%s", rep)
    return rep


def verify(cfg: Config, tables: Sequence[str] | None = None, *, repair: bool = False,
           mysql_url: str | None = None, redis_url: str | None = None, chunk: int = DEFAULT_CHUNK,
           progress: bool = True) -> list[TableReport]:
    """``gearsync verify``: one report per configured table (or ``tables``)."""
    with endpoints(mysql_url or cfg.mysql_url, redis_url or cfg.redis_url or DEFAULT_REDIS_URL, "verify"
                   ) as (conn, client):
        resolved = resolve(cfg, conn, tables)
        require_modules(cfg.subset(rt.cfg for rt in resolved), client)
        runner = ScriptRunner(client) if repair else None
        return [verify_table(rt, conn, client, repair=repair, chunk=chunk, progress=progress, runner=runner)
                for rt in resolved]

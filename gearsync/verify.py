"""``gearsync verify [--repair]``: compare each configured table with Redis.

For every row (read in primary-key chunks exactly as :mod:`gearsync.backfill` reads them, so
the expected value is byte-identical to the worker's) one pipeline reads the key (``GET``, or
``HGETALL`` + ``TYPE`` for a hash table) and its version key. A row's key is

* **missing** when Redis has no such key but the row maps to a value;
* **stale** when Redis holds something else (another value, another type, or a value where the
  row maps to no key, e.g. a NULL ``column``).

**Orphans** are keys matching the table's key template as a glob (``order:{shop_id}:{id}`` →
``order:*:*``, literal ``*?[]\\`` escaped) that no row maps to: a ``SCAN MATCH`` after the rows
were read (on every primary of a Redis Cluster), against the set of their keys (held in memory: about 100 bytes per row). Keys
under ``gearsync:`` are never orphans. Two tables whose templates overlap (``user:{id}`` and
``user:{id}:x``) would see each other's keys as orphans: give them disjoint prefixes.

``--repair`` writes the expected value (or deletes the orphan) with ``versioned.lua`` in mode
``cas``: only if the key's version is still the one read during the check, so a live change
that landed meanwhile is never overwritten. What a key should hold is decided *after* Redis
was read: a key that looks wrong is compared with its row read again (a change in flight
since the first read is not drift), and a key no row mapped during the scan is an orphan only
if no row maps to it once its version was read. A change committed after that carries a
higher version than the one read, so it either makes the repair's ``cas`` fail or lands
after it (tested: a repair running beside three workers and a stream of writes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

from .changes import VersionedChange
from .config import Config
from .constants import DEFAULT_CHUNK, DEFAULT_REDIS_URL
from .keys import key_pattern, reserved, version_key
from .mapping import row_changes
from .progress import Progress
from .quoting import MARK, params, qualified
from .redis_clients import endpoints, is_cluster
from .scan import TableReader, count_rows
from .schema import ResolvedTable, resolve
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
    repaired: int = 0
    samples: dict[str, list[str]] = field(default_factory=lambda: {"missing": [], "stale": [], "orphaned": [],
                                                                   "corrupt": []})

    @property
    def drift(self) -> int:
        return self.missing + self.stale + self.orphaned + self.corrupt

    def note(self, kind: str, key: bytes) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.samples[kind]) < SAMPLE:
            self.samples[kind].append(key.decode("utf-8", "backslashreplace"))

    def __str__(self) -> str:
        head = (f"{self.table}: {self.rows} rows, {self.missing} missing, {self.stale} stale, "
                f"{self.orphaned} orphaned" + (f", {self.corrupt} with a corrupt version" if self.corrupt else "")
                + (f", {self.repaired} repaired" if self.repaired else ""))
        lines = [head] + [f"  {k} e.g. {', '.join(v)}" for k, v in self.samples.items() if v]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "rows": self.rows, "missing": self.missing, "stale": self.stale,
                "orphaned": self.orphaned, "corrupt": self.corrupt, "repaired": self.repaired,
                "samples": self.samples}


def _matches(change: VersionedChange, kind: Any, got: Any) -> bool:
    if change.hash is not None:
        return kind == b"hash" and got == change.hash
    if change.value is None:
        return got is None
    return got == change.value


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


def _redis_state(client: Any, changes: Sequence[VersionedChange], hashed: bool, tagged: bool
                 ) -> list[tuple[Any, Any, Any]]:
    """(TYPE, value, stored version) of each change's key, in one pipeline."""
    pipe = client.pipeline(transaction=False)
    for c in changes:
        pipe.type(c.key)
        if hashed:
            pipe.hgetall(c.key)
        else:
            pipe.get(c.key)
        pipe.get(version_key(c.key, tagged))
    replies = pipe.execute(raise_on_error=False)
    out = []
    for i in range(len(changes)):
        kind, got, ver = replies[3 * i], replies[3 * i + 1], replies[3 * i + 2]
        if isinstance(got, Exception) or (hashed and kind == b"none"):
            got = None
        out.append((kind, got, ver))
    return out


def _rows_now(reader: TableReader, cfg: Any, after: Any, upto: Any, chunk: int) -> dict[bytes, VersionedChange]:
    """The rows of the primary-key range (after, upto] as they are now: key → its write."""
    now: dict[bytes, VersionedChange] = {}
    for _last, batch in reader.chunks(after, chunk, upto):
        for c in row_changes(cfg, batch):
            now[c.key] = c
    return now


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


def verify_table(rt: ResolvedTable, conn: Any, client: Any, *, repair: bool = False,
                 chunk: int = DEFAULT_CHUNK, progress: bool = True, runner: ScriptRunner | None = None,
                 scan_count: int = 1000) -> TableReport:
    """Compare one table with Redis (and repair it). Safe beside live changes: Redis is read
    before the database says what a key should hold — a key that looks wrong is judged against
    its row read again *after* Redis was read, and an orphan is one that no row maps to after
    its version was read — so a repair (``cas`` on the version read) never writes a value older
    than a live change that landed, nor deletes a key a new row just got."""
    rep = TableReport(rt.name)
    runner = runner or (ScriptRunner(client) if repair else None)
    ceiling = version_ceiling(conn)
    bar = Progress(f"verify {rt.name}", count_rows(conn, rt), enabled=progress)
    hashed = rt.cfg.value == "hash"
    tagged = is_cluster(client)
    seen: set[bytes] = set()
    reader = TableReader(rt.cfg, lambda: conn, rt)
    after: Any = None
    for last, batch in reader.chunks(None, chunk):
        changes = row_changes(rt.cfg, batch)
        seen.update(c.key for c in changes)
        states = _redis_state(client, changes, hashed, tagged)
        suspects = [(c, st) for c, st in zip(changes, states)
                    if _stored(st[2], ceiling)[1] or not _matches(c, st[0], st[1])]
        fixes: list[VersionedChange] = []
        if suspects:  # the rows again, read after Redis: a change in flight since the first read is no drift
            now = _rows_now(reader, rt.cfg, after, last, chunk)
            seen.update(now)
            for c, (kind, got, ver) in suspects:
                version, corrupt = _stored(ver, ceiling)
                want = now.get(c.key)
                if corrupt:
                    rep.note("corrupt", c.key)
                    fixes.append((want or VersionedChange(c.key, 0, None))._replace(version=version))
                elif want is None or _matches(want, kind, got):
                    continue  # gone, moved, or caught up: the orphan scan judges a key no row maps to
                else:
                    rep.note("missing" if kind == b"none" else "stale", c.key)
                    fixes.append(want._replace(version=version))
        after = last
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
        runner = ScriptRunner(client) if repair else None
        return [verify_table(rt, conn, client, repair=repair, chunk=chunk, progress=progress, runner=runner)
                for rt in resolved]

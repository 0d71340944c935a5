"""How far behind is Redis, and is everything healthy? ``gearsync.status(...)`` and ``gearsync status``.

From the database: the outbox size and the age of its oldest row (the safe-mode lag: a row
leaves the outbox when it has been applied), per configured table too, and whether each
configured table's schema and installed triggers still fit its config. From Redis: when each
table's changes were last applied (``gearsync:applied``, written by the workers) and the
dead letters; for a Redis Cluster every node is asked (``PING``) and the cluster must say
``cluster_state:ok``, for a Sentinel URL the sentinels must name a primary that answers. From
every gearmand: queue depth and worker count per function (its admin protocol).
:attr:`Status.problems` says what is unhealthy; ``gearsync status`` exits 1 if anything is.
"""

from __future__ import annotations

import json
import ssl
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Optional, Sequence

from .config import TableConfig
from .connections import connect_mysql
from .constants import APPLIED_AT, DEAD_LETTERS, DIRECT_FUNCTION, SAFE_FUNCTION, SEED_FUNCTION
from .gearman import admin
from .outbox import Outbox, installed
from .redis_clients import is_cluster, sync_client
from .schema import drift
from .settings import Settings
from .triggers import TRIGGER_UDFS

__all__ = ["Status", "TableStatus", "status", "status_of", "DEFAULT_MAX_LAG"]

#: Outbox lag (s) above which status calls the system unhealthy.
DEFAULT_MAX_LAG = 60.0


@dataclass
class TableStatus:
    """One configured table."""

    outbox_rows: int = 0
    oldest_age: Optional[float] = None       # seconds, None: nothing waiting
    last_applied_age: Optional[float] = None  # seconds since a worker last applied its changes
    drift: list[str] = field(default_factory=list)


@dataclass
class Status:
    #: Rows in gearsync.outbox (committed changes not yet applied), None if not asked/unknown.
    outbox_size: Optional[int] = None
    #: Seconds since the oldest of them was written (None: outbox empty or unknown).
    oldest_age: Optional[float] = None
    #: component ("mysql", "redis", "gearman host:port") → None if it answered, else the error.
    errors: dict[str, Optional[str]] = field(default_factory=dict)
    #: "host:port" → function → {"queued": jobs queued or running, "running": …, "workers": …}
    gearman: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    #: configured table → its state
    tables: dict[str, TableStatus] = field(default_factory=dict)
    #: Entries in the dead-letter stream gearsync:dead (changes Redis refused for good), None if unknown.
    dead_letters: Optional[int] = None
    #: What the Redis URL reached: "host:port", "cluster of N primaries, M replicas, state ok", …
    redis_topology: Optional[str] = None
    #: The outbox lag above which the system is unhealthy.
    max_lag: float = DEFAULT_MAX_LAG
    #: Gearman functions gearsync's workers serve (jobs queued for them with no worker: unhealthy).
    functions: tuple[str, ...] = (SEED_FUNCTION, SAFE_FUNCTION, DIRECT_FUNCTION)
    #: UDF the installed triggers call → the error calling it gave (asked when tables are configured).
    udf_errors: dict[str, str] = field(default_factory=dict)

    @property
    def problems(self) -> list[str]:
        """What is unhealthy, one line each (empty: healthy)."""
        out = [f"{name}: unreachable: {err}" for name, err in self.errors.items() if err is not None]
        if self.oldest_age is not None and self.oldest_age > self.max_lag:
            out.append(f"outbox: the oldest change waits for {self.oldest_age:.1f} s (over {self.max_lag:g} s): "
                       "are the workers running and reaching MySQL and Redis?")
        for server, functions in self.gearman.items():
            for fn, q in functions.items():
                if fn in self.functions and q["queued"] and not q["workers"]:
                    out.append(f"gearman {server}: {q['queued']} jobs queued for {fn} and no worker")
        if self.dead_letters:
            out.append(f"dead letters: {self.dead_letters} changes Redis refused for good, in "
                       f"{DEAD_LETTERS.decode()} (XRANGE to read them, DEL it once handled)")
        out += [f"mysql: the UDF {name}, which the installed triggers call, does not answer ({err}): their "
                "changes do not arrive; register it (sql/install.sql as root; after a new library restart "
                "mysqld first), then `gearsync install` again" for name, err in self.udf_errors.items()]
        out += [p for t in self.tables.values() for p in t.drift]
        return out

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        d["problems"] = self.problems
        return d

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    def __str__(self) -> str:
        lines = []
        if self.outbox_size is not None:
            age = "-" if self.oldest_age is None else f"{self.oldest_age:.3f} s"
            lines.append(f"outbox: {self.outbox_size} rows, oldest {age}")
        for name, t in self.tables.items():
            last = "never" if t.last_applied_age is None else f"{t.last_applied_age:.1f} s ago"
            waiting = f"{t.outbox_rows} waiting" + (f" (oldest {t.oldest_age:.3f} s)" if t.oldest_age else "")
            lines.append(f"table {name}: {'ok' if not t.drift else 'DRIFT: ' + '; '.join(t.drift)}; {waiting}; "
                         f"last applied {last}")
        for name, err in self.errors.items():
            where = f" ({self.redis_topology})" if name == "redis" and self.redis_topology else ""
            lines.append(f"{name}: {'ok' + where if err is None else 'UNREACHABLE: ' + err}")
            for fn, q in sorted(self.gearman.get(name[len("gearman "):], {}).items()) if name.startswith("gearman ") else ():
                lines.append(f"  {fn}: {q['queued']} queued ({q['running']} running), {q['workers']} workers")
        problems = self.problems
        lines.append("healthy" if not problems else "UNHEALTHY:\n" + "\n".join(f"  - {p}" for p in problems))
        return "\n".join(lines)


def _tables(st: Status, mysql_url: str, tables: Mapping[str, TableConfig], timeout: float) -> None:
    conn = connect_mysql(mysql_url, connect_timeout=timeout, read_timeout=max(timeout, 5.0))
    try:
        try:
            how = installed(conn)
        except Exception:  # an outbox from before the record existed
            how = {}
        with conn.cursor() as cur:
            cur.execute("SELECT `source`, COUNT(*), TIMESTAMPDIFF(MICROSECOND, MIN(`created`), NOW(6)) "
                        "FROM `gearsync`.`outbox` GROUP BY `source`")
            waiting = {(s.decode() if isinstance(s, bytes) else s): (int(n), int(a) / 1e6) for s, n, a in cur.fetchall()}
        if how:
            _probe_udfs(st, conn)
        for name, t in tables.items():
            problems = drift(conn, t, how[name][1] if name in how else None)
            if name not in how:
                problems.append(f"{t.display}: no triggers installed by `gearsync install`")
            elif how[name][0] != t.mode:
                problems.append(f"{t.display}: installed in {how[name][0]} mode, configured {t.mode}: "
                                "run `gearsync install`")
            n, age = waiting.get(name, (0, None))
            st.tables[name] = TableStatus(n, age, None, problems)
    finally:
        conn.close()


def _probe_udfs(st: Status, conn: Any) -> None:
    """Call each function the generated triggers call (:data:`TRIGGER_UDFS`); a trigger whose
    function is gone swallows the error (the application's write goes on) and its change is lost,
    so this is where an operator learns of it."""
    for name, probe in TRIGGER_UDFS.items():
        try:
            with conn.cursor() as cur:
                cur.execute(probe)
                cur.fetchall()
        except Exception as e:
            st.udf_errors[name] = f"{type(e).__name__}: {e}"


def status(mysql_url: str | None = None, redis_url: str | None = None,
           gearman: Sequence[tuple[str, int]] = (), timeout: float = 2.0,
           tables: Mapping[str, TableConfig] | None = None, max_lag: float = DEFAULT_MAX_LAG,
           gearman_ssl: ssl.SSLContext | None = None) -> Status:
    """Ask each component given; never raises for an unreachable one (see ``Status.errors``).
    ``tables``: configured tables to report on and check against the live schema and their
    installed triggers."""
    st = Status(max_lag=max_lag)
    if mysql_url and tables:
        try:
            _tables(st, mysql_url, tables, timeout)
        except Exception as e:
            st.errors["mysql tables"] = f"{type(e).__name__}: {e}"
    if mysql_url:
        ob = Outbox(mysql_url, connect_timeout=timeout, read_timeout=max(timeout, 5.0))
        try:
            st.outbox_size, st.oldest_age = ob.stats()
            st.errors["mysql"] = None
        except Exception as e:
            st.errors["mysql"] = str(e)
        finally:
            ob.close()
    if redis_url:
        try:
            client = sync_client(redis_url, socket_timeout=timeout, connect_timeout=timeout, retries=False)
            try:
                st.redis_topology = _topology(client)
                st.dead_letters = int(client.xlen(DEAD_LETTERS))
                now = time.time()
                for table, at in client.hgetall(APPLIED_AT).items():
                    name = table.decode("utf-8", "replace") if isinstance(table, bytes) else str(table)
                    if name in st.tables:
                        st.tables[name].last_applied_age = max(0.0, now - float(at))
            finally:
                client.close()
            st.errors["redis"] = None
        except Exception as e:
            st.errors["redis"] = f"{type(e).__name__}: {e}"
    for host, port in gearman:
        try:
            st.gearman[f"{host}:{port}"] = {
                f.function: {"queued": f.total, "running": f.running, "workers": f.available_workers}
                for f in admin.status(host, port, timeout, gearman_ssl)
            }
            st.errors[f"gearman {host}:{port}"] = None
        except Exception as e:
            st.errors[f"gearman {host}:{port}"] = f"{type(e).__name__}: {e}"
    return st


def _topology(client: Any) -> str:
    """PING what ``client`` reaches and say what it is; raises when a part does not answer."""
    if not is_cluster(client):
        client.ping()
        pool = client.connection_pool
        host, port = pool.connection_kwargs.get("host"), pool.connection_kwargs.get("port")
        if host is None:  # a Sentinel's primary: ask where it is
            info = client.info("server")
            return f"primary on port {info.get('tcp_port')} (via Sentinel)"
        return f"{host}:{port}"
    nodes = client.get_nodes()
    client.ping(target_nodes=client.ALL_NODES)  # raises if one does not answer
    info = client.cluster_info(target_nodes=client.get_default_node())
    state = info.get("cluster_state") if isinstance(info, dict) else None
    if state not in ("ok", b"ok"):
        raise RuntimeError(f"cluster_state is {state!r}")
    primaries = len(client.get_primaries())
    return f"cluster of {primaries} primaries, {len(nodes) - primaries} replicas, state ok"


def status_of(settings: Settings, max_lag: float = DEFAULT_MAX_LAG) -> Status:
    """:func:`status` of everything ``settings`` name (its connections and configured tables)."""
    return status(settings.mysql_url, settings.redis_url, settings.gearman, tables=settings.tables,
                  max_lag=max_lag, gearman_ssl=settings.gearman_ssl())

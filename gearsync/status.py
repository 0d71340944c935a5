"""How far behind is Redis? ``gearsync.status(...)`` and ``gearsync status``.

The outbox size and the age of its oldest row (the safe-mode lag: a row leaves the outbox when
it has been applied), each gearmand's queue depth and worker count per function (its admin
protocol), and whether MariaDB, Redis and every gearmand answer. For a Redis Cluster every
node is asked (``PING``) and the cluster must say ``cluster_state:ok``; for a Sentinel URL the
sentinels must name a primary that answers.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Optional, Sequence

from .config import TableConfig
from .connections import connect_mysql
from .constants import DEAD_LETTERS
from .gearman import admin
from .outbox import Outbox, installed
from .redis_clients import is_cluster, sync_client
from .schema import drift

__all__ = ["Status", "status"]


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
    #: configured table → how its live schema or its installed triggers no longer fit (empty: fine)
    tables: dict[str, list[str]] = field(default_factory=dict)
    #: Entries in the dead-letter stream gearsync:dead (changes Redis refused for good), None if unknown.
    dead_letters: Optional[int] = None
    #: What the Redis URL reached: "redis host:port", "cluster of N primaries, M replicas", …
    redis_topology: Optional[str] = None

    @property
    def ok(self) -> bool:
        """Every component asked about answered, every configured table fits its config, and no
        change waits in the dead letters."""
        return (all(e is None for e in self.errors.values()) and not any(self.tables.values())
                and not self.dead_letters)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    def __str__(self) -> str:
        lines = []
        if self.outbox_size is not None:
            age = "-" if self.oldest_age is None else f"{self.oldest_age:.3f} s"
            lines.append(f"outbox: {self.outbox_size} rows, oldest {age}")
        if self.dead_letters:
            lines.append(f"dead letters: {self.dead_letters} changes Redis refused for good, in "
                         f"{DEAD_LETTERS.decode()} (XRANGE to read them, DEL it once handled)")
        for table, problems in self.tables.items():
            lines.append(f"table {table}: " + ("ok" if not problems else "DRIFT: " + "; ".join(problems)))
        for name, err in self.errors.items():
            where = f" ({self.redis_topology})" if name == "redis" and self.redis_topology else ""
            lines.append(f"{name}: {'ok' + where if err is None else 'UNREACHABLE: ' + err}")
            for fn, q in sorted(self.gearman.get(name[len("gearman "):], {}).items()) if name.startswith("gearman ") else ():
                lines.append(f"  {fn}: {q['queued']} queued ({q['running']} running), {q['workers']} workers")
        return "\n".join(lines)


def status(mysql_url: str | None = None, redis_url: str | None = None,
           gearman: Sequence[tuple[str, int]] = (), timeout: float = 2.0,
           tables: Mapping[str, TableConfig] | None = None) -> Status:
    """Ask each component given; never raises for an unreachable one (see ``Status.errors``).
    ``tables``: configured tables to check against the live schema and installed triggers."""
    st = Status()
    if mysql_url and tables:
        try:
            conn = connect_mysql(mysql_url, connect_timeout=timeout, read_timeout=max(timeout, 5.0))
            try:
                try:
                    how = installed(conn)
                except Exception:  # an outbox from before the record existed
                    how = {}
                for name, t in tables.items():
                    problems = drift(conn, t, how[name][1] if name in how else None)
                    if name not in how:
                        problems.append(f"{t.display}: no triggers installed by `gearsync install`")
                    elif how[name][0] != t.mode:
                        problems.append(f"{t.display}: installed in {how[name][0]} mode, configured {t.mode}: "
                                        "run `gearsync install`")
                    st.tables[name] = problems
            finally:
                conn.close()
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
            finally:
                client.close()
            st.errors["redis"] = None
        except Exception as e:
            st.errors["redis"] = f"{type(e).__name__}: {e}"
    for host, port in gearman:
        try:
            st.gearman[f"{host}:{port}"] = {
                f.function: {"queued": f.total, "running": f.running, "workers": f.available_workers}
                for f in admin.status(host, port, timeout)
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

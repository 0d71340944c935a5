"""What the throwaway database servers share: MariaDB (:mod:`.mariadb`, a local mariadbd) and
Oracle MySQL (:mod:`.mysql`, mysqld in a Podman container), and which one a stack runs.

``GEARSYNC_TEST_SERVER`` (``mariadb``, the default, or ``mysql``) picks the server of
:class:`gearsync.testing.stack.Stack` and of the test suite (``make test-mysql``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Mapping, Sequence

from gearsync.resources import checkout_root
from gearsync.udf_library import LIBRARY, default_build_dir

from .daemons import Daemon, StackError, _port_open

__all__ = ["SqlServer", "SERVER_ENV", "SERVERS", "server_name", "default_plugin_dir", "numbers"]

#: The environment variable naming the server a stack (and the test suite) runs.
SERVER_ENV = "GEARSYNC_TEST_SERVER"
#: The servers a stack can run.
SERVERS = ("mariadb", "mysql")


def server_name(name: str | None = None) -> str:
    """``name``, else ``$GEARSYNC_TEST_SERVER``, else ``mariadb``; an unknown one is an error."""
    chosen = (name or os.environ.get(SERVER_ENV) or "mariadb").strip().lower()
    if chosen not in SERVERS:
        raise StackError(f"{SERVER_ENV}={chosen!r}: expected one of {', '.join(SERVERS)}")
    return chosen


def numbers(n: int) -> str:
    """A derived table of the integers 1..n in its column ``seq`` (``SELECT seq FROM {numbers(5)}``),
    for both servers: MariaDB's Sequence tables (``seq_1_to_N``) do not exist in MySQL, and a
    recursive CTE stops at 1,000 rows there (``cte_max_recursion_depth``). Cross joins of ten
    digits, so a million rows take six."""
    if n < 1:
        raise ValueError("n must be at least 1")
    places = len(str(n - 1))
    digits = "(SELECT 0 AS d UNION ALL " + " UNION ALL ".join(f"SELECT {i}" for i in range(1, 10)) + ")"
    value = " + ".join(f"d{i}.d * {10 ** i}" for i in range(places))
    joins = " CROSS JOIN ".join(f"{digits} AS d{i}" for i in range(places))
    return f"(SELECT {value} + 1 AS seq FROM {joins} WHERE {value} < {n}) AS numbers"


def default_plugin_dir() -> Path:
    """Where gearsync_udf.so is when no plugin_dir is given: a checkout's build/ (``make udf``),
    else the directory ``gearsync udf build`` writes to by default (a per-user cache)."""
    root = checkout_root()
    where, how = (root / "build", "make udf") if root is not None else (default_build_dir(), "gearsync udf build")
    if not (where / LIBRARY).is_file():
        raise StackError(f"no {LIBRARY} in {where}: run `{how}` first, or pass plugin_dir")
    return where


class SqlServer(Daemon):
    """A throwaway database server: ``root`` without a password on 127.0.0.1:port, UDFs loaded
    from ``plugin_dir``, data under ``workdir/data``. Subclasses say how to make the data dir
    (:meth:`prepare`), how to run the server (:meth:`argv`) and its command-line tools."""

    #: "mariadb" or "mysql"
    flavor = "?"
    start_timeout = 60.0

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        plugin_dir: str | os.PathLike[str] | None = None,
        durable: bool = False,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        udf_config: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(workdir, port, env=env)
        self.plugin_dir = Path(plugin_dir or self.default_plugin_dir()).resolve()
        #: settings of the UDF library's gearsync_udf.cnf, written into workdir and handed to
        #: the server as GEARSYNC_UDF_CONFIG (None: the library looks next to itself)
        self.udf_config = dict(udf_config) if udf_config is not None else None
        self.datadir = self.workdir / "data"
        self.socket_path = self.workdir / "mysqld.sock"
        self.durable = durable
        self.extra_args = list(extra_args)
        self.user = "root"

    def default_plugin_dir(self) -> Path:
        return default_plugin_dir()

    def write_udf_config(self) -> None:
        """Write :attr:`udf_config` as ``workdir/gearsync_udf.cnf`` and point the server's
        environment at it (subclasses call this from :meth:`prepare`)."""
        if self.udf_config is None:
            return
        cnf = self.workdir / "gearsync_udf.cnf"
        cnf.write_text("".join(f"{k} = {v}\n" for k, v in self.udf_config.items()))
        self.env["GEARSYNC_UDF_CONFIG"] = str(cnf)

    def ready(self) -> bool:
        if not _port_open(self.port, self.host):
            return False
        try:
            self.execute("SELECT 1")
        except Exception:
            return False
        return True

    @property
    def url(self) -> str:
        return f"mysql://{self.user}@{self.host}:{self.port}/"

    def connect(self, database: str | None = None, **kwargs: Any) -> Any:
        """A PyMySQL connection (autocommit on unless told otherwise)."""
        import pymysql

        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("charset", "utf8mb4")
        kwargs.setdefault("user", self.user)
        kwargs.setdefault("password", "")
        return pymysql.connect(host=self.host, port=self.port, database=database, **kwargs)

    def execute(self, sql: str, args: Any = None, database: str | None = None) -> list[tuple[Any, ...]]:
        """Run one statement on a fresh connection; the rows it returned."""
        conn = self.connect(database=database, connect_timeout=5)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def version(self) -> str:
        """``SELECT VERSION()``, e.g. ``10.11.6-MariaDB-0+deb12u1`` or ``9.7.4-2``."""
        v = self.execute("SELECT VERSION()")[0][0]
        return v.decode() if isinstance(v, bytes) else str(v)

    # -- the server's command-line tools, as a user runs them -------------------------------------
    def tool_argv(self, tool: str) -> list[str]:
        """The argv prefix that runs the server's own client ``tool`` (``mysql`` or ``mysqldump``,
        named as MySQL names them) on this host."""
        raise NotImplementedError

    def _connection_args(self) -> list[str]:
        return ["--no-defaults", "-h", self.host, "-P", str(self.port), "-u", self.user,
                "--default-character-set=utf8mb4"]

    def client_argv(self, database: str | None = None) -> list[str]:
        """The command-line client connected as root (`mariadb` / `mysql`)."""
        return self.tool_argv("mysql") + self._connection_args() + ([database] if database else [])

    def dump_argv(self, *args: str) -> list[str]:
        """The dump tool (`mariadb-dump` / `mysqldump`) connected as root, then ``args``."""
        return self.tool_argv("mysqldump") + self._connection_args() + list(args)

    def source(self, path: str | os.PathLike[str]) -> str:
        """Feed an SQL file to the server's command-line client, as a user would."""
        with open(path, "rb") as f:
            res = subprocess.run(self.client_argv(), stdin=f, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if res.returncode != 0:
            raise StackError(f"{self.client_argv()[0]} < {path} failed: {res.stderr.decode(errors='replace')}")
        return res.stdout.decode(errors="replace")

"""Throwaway local daemons for tests, the demo and benches.

Each daemon runs in the foreground as a child process, listens on a free loopback port and
keeps its data under a directory of its own, so nothing here touches a system database.

    with Stack(plugin_dir="build") as stack:        # server="mysql": Oracle MySQL in a container
        stack.mysql.execute("SELECT 1")
        stack.redis_url, stack.gearman_servers, stack.mysql_url

`Daemon.pause()` / `resume()` (SIGSTOP / SIGCONT), `stop()`, `start()` and `restart()` let
tests inject faults.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from gearsync.resources import sql_path

from .daemons import Daemon, Gearmand, RedisServer, StackError, free_port
from .mariadb import MariaDB
from .mysql import MySQL
from .sqlserver import SqlServer, server_name

__all__ = ["Daemon", "RedisServer", "Gearmand", "MariaDB", "MySQL", "SqlServer", "Stack", "free_port",
           "StackError", "sql_server"]


def sql_server(workdir: str | os.PathLike[str], server: str | None = None, **kwargs: Any) -> SqlServer:
    """A throwaway database server of kind ``server`` (``mariadb`` / ``mysql``; default
    ``$GEARSYNC_TEST_SERVER``, else ``mariadb``) under ``workdir``; ``kwargs`` as for
    :class:`MariaDB`. Not started."""
    cls = MySQL if server_name(server) == "mysql" else MariaDB
    return cls(Path(workdir), **kwargs)


class Stack:
    """A database server (MariaDB, or MySQL: ``server``) + gearmand + Redis, started together
    under one directory."""

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None = None,
        plugin_dir: str | os.PathLike[str] | None = None,
        mysql: bool = True,
        durable: bool = False,
        server: str | None = None,
    ) -> None:
        self._tmp = None if base_dir else tempfile.mkdtemp(prefix="gearsync-stack-")
        self.base_dir = Path(base_dir or self._tmp)  # type: ignore[arg-type]
        self.redis = RedisServer(self.base_dir / "redis")
        self.gearmand = Gearmand(self.base_dir / "gearmand")
        self.server = server_name(server)
        # The UDFs send to this stack's gearmand from the start; tests may still move them
        # (lock = off).
        self.mysql: SqlServer | None = (
            sql_server(self.base_dir / self.server, self.server, plugin_dir=plugin_dir, durable=durable,
                       udf_config={"servers": self.gearmand.address, "lock": "off"})
            if mysql else None
        )

    @property
    def daemons(self) -> list[Daemon]:
        return [d for d in (self.redis, self.gearmand, self.mysql) if d is not None]

    @property
    def redis_url(self) -> str:
        return self.redis.url

    @property
    def gearman_servers(self) -> str:
        return self.gearmand.address

    @property
    def mysql_url(self) -> str:
        assert self.mysql is not None
        return self.mysql.url

    def env(self) -> dict[str, str]:
        """Environment for a `gearsync` child process pointed at this stack."""
        env = dict(os.environ, GEARSYNC_GEARMAN=self.gearman_servers, GEARSYNC_REDIS_URL=self.redis_url)
        if self.mysql is not None:
            env["GEARSYNC_MYSQL_URL"] = self.mysql_url
        return env

    def start(self) -> "Stack":
        try:
            for d in self.daemons:
                d.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for d in reversed(self.daemons):
            with contextlib.suppress(Exception):
                d.stop()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def install_sql(self, path: str | os.PathLike[str] | None = None) -> str:
        """Apply sql/install.sql, then point the UDFs at this stack's gearmand."""
        assert self.mysql is not None
        out = self.mysql.source(path or sql_path("install.sql"))
        self.mysql.execute("SELECT gman_servers_set(%s)", (self.gearman_servers,))
        return out

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __iter__(self) -> Iterator[Daemon]:
        return iter(self.daemons)

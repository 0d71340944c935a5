"""A throwaway mariadbd for tests, the demo and benches (see gearsync.testing.stack)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Mapping, Sequence

from gearsync.resources import checkout_root
from gearsync.udf_library import LIBRARY, default_build_dir

from .daemons import Daemon, StackError, _port_open, _which

__all__ = ["MariaDB", "default_plugin_dir"]


def default_plugin_dir() -> Path:
    """Where gearsync_udf.so is when no plugin_dir is given: a checkout's build/ (``make udf``),
    else the directory ``gearsync udf build`` writes to by default (a per-user cache)."""
    root = checkout_root()
    where, how = (root / "build", "make udf") if root is not None else (default_build_dir(), "gearsync udf build")
    if not (where / LIBRARY).is_file():
        raise StackError(f"no {LIBRARY} in {where}: run `{how}` first, or pass plugin_dir")
    return where


class MariaDB(Daemon):
    """A throwaway mariadbd; root@127.0.0.1 without password, UDFs loaded from plugin_dir."""

    name = "mariadb"
    start_timeout = 60.0

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        plugin_dir: str | os.PathLike[str] | None = None,
        durable: bool = False,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(workdir, port, env=env)
        self.plugin_dir = Path(plugin_dir or default_plugin_dir()).resolve()
        self.datadir = self.workdir / "data"
        #: its own temporary files (not /tmp, which other programs clean and share)
        self.tmpdir = self.workdir / "tmp"
        self.socket_path = self.workdir / "mysqld.sock"
        self.durable = durable
        self.extra_args = list(extra_args)
        self.user = "root"

    def prepare(self) -> None:
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        if (self.datadir / "mysql").is_dir():
            return
        install = _which("mariadb-install-db", "mysql_install_db")
        cmd = [install, "--no-defaults", f"--datadir={self.datadir}", f"--tmpdir={self.tmpdir}", "--user=root",
               "--auth-root-authentication-method=normal", "--skip-test-db"]
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.workdir)
        if res.returncode != 0:
            raise StackError(f"mariadb-install-db failed:\n{res.stdout.decode(errors='replace')[-2000:]}")

    def argv(self) -> list[str]:
        args = [
            _which("mariadbd", "mysqld"), "--no-defaults", f"--datadir={self.datadir}", f"--tmpdir={self.tmpdir}",
            f"--port={self.port}", f"--bind-address={self.host}", f"--socket={self.socket_path}",
            f"--pid-file={self.workdir / 'mysqld.pid'}", f"--log-error={self.log_path}",
            f"--plugin-dir={self.plugin_dir}", "--user=root", "--skip-log-bin",
            "--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci",
            "--innodb-buffer-pool-size=128M", "--innodb-log-file-size=48M",
            "--max-connections=300", "--skip-name-resolve",
        ]
        if not self.durable:
            args += ["--innodb-flush-log-at-trx-commit=2", "--innodb-doublewrite=0"]
        return args + self.extra_args

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
        return pymysql.connect(host=self.host, port=self.port, user=self.user, password="",
                               database=database, **kwargs)

    def execute(self, sql: str, args: Any = None, database: str | None = None) -> list[tuple[Any, ...]]:
        """Run one statement on a fresh connection; the rows it returned."""
        conn = self.connect(database=database, connect_timeout=5)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def client_argv(self, database: str | None = None) -> list[str]:
        argv = [_which("mariadb", "mysql"), "--no-defaults", "-h", self.host, "-P", str(self.port),
                "-u", self.user, "--default-character-set=utf8mb4"]
        return argv + ([database] if database else [])

    def source(self, path: str | os.PathLike[str]) -> str:
        """Feed an SQL file to the `mariadb` command-line client, as a user would."""
        with open(path, "rb") as f:
            res = subprocess.run(self.client_argv(), stdin=f, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if res.returncode != 0:
            raise StackError(f"mariadb < {path} failed: {res.stderr.decode(errors='replace')}")
        return res.stdout.decode(errors="replace")

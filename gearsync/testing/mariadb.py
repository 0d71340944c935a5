"""A throwaway mariadbd for tests, the demo and benches (see gearsync.testing.stack)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .daemons import StackError, _which
from .sqlserver import SqlServer, default_plugin_dir

__all__ = ["MariaDB", "default_plugin_dir"]


class MariaDB(SqlServer):
    """A throwaway mariadbd; root@127.0.0.1 without password, UDFs loaded from plugin_dir."""

    name = "mariadb"
    flavor = "mariadb"

    @property
    def tmpdir(self) -> Path:
        """Its own temporary files (not /tmp, which other programs clean and share)."""
        return self.workdir / "tmp"

    def prepare(self) -> None:
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        self.write_udf_config()
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

    def tool_argv(self, tool: str) -> list[str]:
        names = {"mysql": ("mariadb", "mysql"), "mysqldump": ("mariadb-dump", "mysqldump")}[tool]
        return [_which(*names)]

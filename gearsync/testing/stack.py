"""Throwaway local daemons for tests, the demo and benches.

Each daemon runs in the foreground as a child process, listens on a free loopback port and
keeps its data under a directory of its own, so nothing here touches a system database.

    with Stack(plugin_dir="build") as stack:
        stack.mysql.execute("SELECT 1")
        stack.redis_url, stack.gearman_servers, stack.mysql_url

`Daemon.pause()` / `resume()` (SIGSTOP / SIGCONT), `stop()`, `start()` and `restart()` let
tests inject faults.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

__all__ = ["Daemon", "RedisServer", "Gearmand", "MariaDB", "Stack", "free_port", "StackError"]

REPO_ROOT = Path(__file__).resolve().parents[2]


class StackError(RuntimeError):
    """A daemon did not start; the message names its log file."""


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def _which(*names: str) -> str:
    for name in names:
        for prefix in ("", "/usr/sbin/", "/usr/bin/"):
            path = shutil.which(prefix + name) if not prefix else (prefix + name)
            if path and os.access(path, os.X_OK):
                return path
    raise StackError(f"none of {', '.join(names)} is installed: run `make setup`")


class Daemon:
    """One server process on a loopback port with its own directory."""

    name = "daemon"
    start_timeout = 30.0

    def __init__(self, workdir: Path, port: int | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.workdir = Path(workdir)
        #: extra environment variables for the daemon process (e.g. LD_PRELOAD)
        self.env: dict[str, str] = dict(env or {})
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / f"{self.name}.log"

    # -- to override ------------------------------------------------------------------
    def argv(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """One-time setup of the data directory before the first start."""

    def ready(self) -> bool:
        return _port_open(self.port, self.host)

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "Daemon":
        if self.running:
            return self
        self.prepare()
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.workdir, start_new_session=True,
                env={**os.environ, **self.env} if self.env else None,
            )
        finally:
            log.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StackError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}:\n{self.tail()}")
            if self.ready():
                return self
            time.sleep(0.05)
        self.kill()
        raise StackError(f"{self.name} not ready on port {self.port} after {self.start_timeout:.0f} s; see {self.log_path}")

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, wait, then SIGKILL. Idempotent."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self._wait_port_closed()

    def kill(self) -> None:
        """SIGKILL: a crash, as far as clients can tell."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self._wait_port_closed()

    def restart(self) -> "Daemon":
        self.stop()
        return self.start()

    def pause(self) -> None:
        """SIGSTOP: the port stays open but nothing answers (a hung server). Returns once the
        kernel shows the process stopped (kill() is asynchronous)."""
        if self.running:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGSTOP)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                with open(f"/proc/{self.proc.pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "T":
                        return
                time.sleep(0.005)
            raise StackError(f"{self.name} did not stop after SIGSTOP")

    def resume(self) -> None:
        if self.running:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGCONT)

    def _wait_port_closed(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _port_open(self.port, self.host):
            time.sleep(0.05)

    def __enter__(self) -> "Daemon":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisServer(Daemon):
    name = "redis"

    def argv(self) -> list[str]:
        return [
            _which("redis-server"), "--port", str(self.port), "--bind", self.host,
            "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
            "--daemonize", "no", "--protected-mode", "no", "--loglevel", "warning",
        ]

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def client(self, **kwargs: Any) -> Any:
        import redis

        return redis.Redis(host=self.host, port=self.port, **kwargs)


class Gearmand(Daemon):
    name = "gearmand"

    def __init__(self, workdir: Path, port: int | None = None, threads: int = 2,
                 env: Mapping[str, str] | None = None, queue_db: Path | None = None,
                 store_queue_on_shutdown: bool = False) -> None:
        super().__init__(workdir, port, env=env)
        self.threads = threads
        #: persistent queue (libsqlite3) in this file. Every job is written as it is queued,
        #: so a SIGKILL loses none -- unless store_queue_on_shutdown, which writes the queue
        #: only at a graceful stop (measured: a SIGKILL then loses every queued job).
        self.queue_db = queue_db
        self.store_queue_on_shutdown = store_queue_on_shutdown

    def argv(self) -> list[str]:
        return [
            _which("gearmand"), "--listen", self.host, "--port", str(self.port),
            "--log-file", str(self.log_path), "--pid-file", str(self.workdir / "gearmand.pid"),
            "--threads", str(self.threads), "--verbose", "WARNING",
            # The default 991 hash buckets make every submit walk a chain of queue/991 jobs:
            # with 100,000 queued (a bench with no worker) that was 30% of the CPU.
            "--hashtable-buckets", "262139",
        ] + (["-q", "libsqlite3", "--libsqlite3-db", str(self.queue_db)] if self.queue_db else []) + (
            ["--store-queue-on-shutdown"] if self.queue_db and self.store_queue_on_shutdown else [])

    def admin(self, command: str, timeout: float = 5.0) -> list[str]:
        """One admin text-protocol command; the lines before the closing '.'."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as s:
            s.sendall(command.encode() + b"\n")
            buf = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if buf.endswith(b"\n.\n") or buf == b".\n" or (command in ("version", "getpid") and buf.endswith(b"\n")):
                    break
        lines = buf.decode(errors="replace").splitlines()
        return [line for line in lines if line != "."]

    def connections(self) -> int:
        """Client connections gearmand has (its admin `workers` lists each), minus the asker."""
        return len(self.admin("workers")) - 1

    def queued(self, function: str) -> int:
        """Jobs of ``function`` queued or running."""
        return self.status().get(function, (0, 0, 0))[0]

    def status(self) -> dict[str, tuple[int, int, int]]:
        """function -> (queued total, running, available workers)."""
        out: dict[str, tuple[int, int, int]] = {}
        for line in self.admin("status"):
            parts = line.split("\t")
            if len(parts) == 4:
                out[parts[0]] = (int(parts[1]), int(parts[2]), int(parts[3]))
        return out


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
        udf_config: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(workdir, port, env=env)
        self.plugin_dir = Path(plugin_dir or REPO_ROOT / "build").resolve()
        #: settings of the UDF library's gearsync_udf.cnf, written into workdir and handed to
        #: mariadbd as GEARSYNC_UDF_CONFIG (None: the library looks next to itself)
        self.udf_config = dict(udf_config) if udf_config is not None else None
        self.datadir = self.workdir / "data"
        self.socket_path = self.workdir / "mysqld.sock"
        self.durable = durable
        self.extra_args = list(extra_args)
        self.user = "root"

    def prepare(self) -> None:
        if self.udf_config is not None:
            cnf = self.workdir / "gearsync_udf.cnf"
            cnf.write_text("".join(f"{k} = {v}\n" for k, v in self.udf_config.items()))
            self.env["GEARSYNC_UDF_CONFIG"] = str(cnf)
        if (self.datadir / "mysql").is_dir():
            return
        install = _which("mariadb-install-db", "mysql_install_db")
        cmd = [install, "--no-defaults", f"--datadir={self.datadir}", "--user=root",
               "--auth-root-authentication-method=normal", "--skip-test-db"]
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.workdir)
        if res.returncode != 0:
            raise StackError(f"mariadb-install-db failed:\n{res.stdout.decode(errors='replace')[-2000:]}")

    def argv(self) -> list[str]:
        args = [
            _which("mariadbd", "mysqld"), "--no-defaults", f"--datadir={self.datadir}",
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


class Stack:
    """MariaDB + gearmand + Redis, started together under one directory."""

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None = None,
        plugin_dir: str | os.PathLike[str] | None = None,
        mysql: bool = True,
        durable: bool = False,
    ) -> None:
        self._tmp = None if base_dir else tempfile.mkdtemp(prefix="gearsync-stack-")
        self.base_dir = Path(base_dir or self._tmp)  # type: ignore[arg-type]
        self.redis = RedisServer(self.base_dir / "redis")
        self.gearmand = Gearmand(self.base_dir / "gearmand")
        # The UDFs send to this stack's gearmand from the start; tests may still move them
        # (lock = off).
        self.mysql: MariaDB | None = (
            MariaDB(self.base_dir / "mariadb", plugin_dir=plugin_dir, durable=durable,
                    udf_config={"servers": self.gearmand.address, "lock": "off"}) if mysql else None
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
        out = self.mysql.source(path or REPO_ROOT / "sql" / "install.sql")
        self.mysql.execute("SELECT gman_servers_set(%s)", (self.gearman_servers,))
        return out

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __iter__(self) -> Iterator[Daemon]:
        return iter(self.daemons)

"""Throwaway daemons on free loopback ports: the base class, Redis and gearmand.

Each daemon runs in the foreground as a child process, listens on a free loopback port and
keeps its data under a directory of its own, so nothing here touches a system database.
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
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["Daemon", "RedisServer", "Gearmand", "free_port", "StackError", "which"]


class StackError(RuntimeError):
    """A daemon did not start; the message names its log file."""


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago, and not one this process handed out
    before: the kernel hands the same free port out again often enough (1 in 2,000 calls in a
    row here) that two daemons of one stack, given ports before either listens, collided."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            break
    _HANDED_OUT.add(port)
    return port


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def which(*names: str) -> str:
    """The path of the first of ``names`` installed (also looked for in /usr/sbin, /usr/bin)."""
    return _which(*names)


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
        self.workdir = Path(workdir).absolute()  # daemons run with it as their cwd: no relative paths
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

    @property
    def pid(self) -> int | None:
        """The server process's pid on this host (what pause, resume and kill signal, and whose
        memory a test reads); None when it is not running. For a daemon in a container it is not
        the pid of the child process that runs the container."""
        return self.proc.pid if self.running else None  # type: ignore[union-attr]

    def _signal(self, sig: int) -> None:
        pid = self.pid
        if pid is not None:
            os.kill(pid, sig)

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
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self._wait_port_closed()

    def kill(self) -> None:
        """SIGKILL: a crash, as far as clients can tell."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None
        self._wait_port_closed()

    def restart(self) -> "Daemon":
        self.stop()
        return self.start()

    def pause(self) -> None:
        """SIGSTOP: the port stays open but nothing answers (a hung server). Returns once the
        kernel shows the process stopped (kill() is asynchronous)."""
        pid = self.pid
        if pid is not None:
            os.kill(pid, signal.SIGSTOP)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "T":
                        return
                time.sleep(0.005)
            raise StackError(f"{self.name} did not stop after SIGSTOP")

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _wait_port_closed(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _port_open(self.port, self.host):
            time.sleep(0.05)

    def __enter__(self) -> "Daemon":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisServer(Daemon):
    """``redis-server`` without persistence; ``args`` are more of its options (e.g.
    ``["--replicaof", "127.0.0.1", "6380"]`` or the cluster options of gearsync.testing.redis_cluster)."""

    name = "redis"

    def __init__(self, workdir: Path, port: int | None = None, env: Mapping[str, str] | None = None,
                 args: Sequence[str] = ()) -> None:
        super().__init__(workdir, port, env=env)
        self.args = list(args)

    def argv(self) -> list[str]:
        return [
            _which("redis-server"), "--port", str(self.port), "--bind", self.host,
            "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
            "--daemonize", "no", "--protected-mode", "no", "--loglevel", "warning", *self.args,
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
                 env: Mapping[str, str] | None = None, extra: Sequence[str] = (),
                 queue_db: Path | None = None, store_queue_on_shutdown: bool = False) -> None:
        super().__init__(workdir, port, env=env)
        self.threads = threads
        #: more gearmand options (e.g. --ssl …)
        self.extra = list(extra)
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
            "--hashtable-buckets", "262139", *self.extra,
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

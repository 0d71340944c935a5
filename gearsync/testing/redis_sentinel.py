"""A throwaway Sentinel setup on loopback: one primary, its replicas, three sentinels that
watch it under the service name ``gearsync`` (quorum 2) and promote a replica when it stops
answering for ``down_after_ms``.

    with SentinelSet(tmp / "sentinel") as s:
        s.url                       # redis+sentinel://127.0.0.1:s1,…/gearsync/0
        old = s.primary(); s.kill(old); s.wait_failover(old); old.start()   # rejoins as a replica
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import redis

from .daemons import Daemon, RedisServer, StackError, which

__all__ = ["SentinelSet", "Sentinel", "SERVICE"]

SERVICE = "gearsync"


class Sentinel(Daemon):
    """``redis-server sentinel.conf --sentinel`` (Sentinel rewrites its file: it lives in its workdir)."""

    name = "sentinel"

    def __init__(self, workdir: Path, monitor: RedisServer, quorum: int, down_after_ms: int) -> None:
        super().__init__(workdir)
        self.monitor, self.quorum, self.down_after_ms = monitor, quorum, down_after_ms
        self.conf = self.workdir / "sentinel.conf"

    def prepare(self) -> None:
        if not self.conf.exists():
            self.conf.write_text(
                f"port {self.port}\nbind {self.host}\ndir {self.workdir}\nprotected-mode no\n"
                f"sentinel monitor {SERVICE} {self.monitor.host} {self.monitor.port} {self.quorum}\n"
                f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}\n"
                f"sentinel failover-timeout {SERVICE} {max(3000, 3 * self.down_after_ms)}\n"
                f"sentinel parallel-syncs {SERVICE} 1\n")

    def argv(self) -> list[str]:
        return [which("redis-server"), str(self.conf), "--sentinel", "--daemonize", "no",
                "--logfile", str(self.log_path), "--loglevel", "notice"]

    def primary_address(self) -> tuple[str, int] | None:
        try:
            host, port = redis.Redis(host=self.host, port=self.port, socket_timeout=2).execute_command(
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        except Exception:
            return None
        return (host.decode() if isinstance(host, bytes) else str(host)), int(port)


class SentinelSet:
    """One primary with ``replicas`` replicas and ``sentinels`` sentinels (quorum: a majority)."""

    def __init__(self, workdir: Path, replicas: int = 1, sentinels: int = 3, down_after_ms: int = 1000) -> None:
        self.workdir = Path(workdir).absolute()
        quick = ["--repl-diskless-sync-delay", "0"]  # a replica's full sync starts at once
        first = RedisServer(self.workdir / "redis-0", args=quick)
        self.servers = [first] + [RedisServer(self.workdir / f"redis-{i + 1}",
                                              args=[*quick, "--replicaof", first.host, str(first.port)])
                                  for i in range(replicas)]
        self.sentinels = [Sentinel(self.workdir / f"sentinel-{i}", first, sentinels // 2 + 1, down_after_ms)
                          for i in range(sentinels)]

    def start(self) -> "SentinelSet":
        try:
            for d in [*self.servers, *self.sentinels]:
                d.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for d in [*self.sentinels, *self.servers]:
            with contextlib.suppress(Exception):
                d.stop()

    def __enter__(self) -> "SentinelSet":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(s.address for s in self.sentinels) + f"/{SERVICE}/0"

    def primary(self) -> RedisServer:
        """The server the sentinels name as the primary now."""
        addr = self.sentinels[0].primary_address()
        for s in self.servers:
            if addr == (s.host, s.port):
                return s
        raise StackError(f"the sentinels name {addr}, none of ours")

    def replicas_in_sync(self, primary: RedisServer) -> int:
        try:
            info = primary.client(socket_timeout=2).info("replication")
        except Exception:
            return 0
        return sum(1 for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
                   and v.get("state") == "online")

    def _sentinels_agree(self) -> bool:
        addrs = {s.primary_address() for s in self.sentinels if s.running}
        return len(addrs) == 1 and None not in addrs

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Every sentinel names the same primary, which has its running replicas online, and
        the sentinels know each other."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._sentinels_agree():
                p = self.primary()
                running = sum(1 for s in self.servers if s.running and s is not p)
                if p.running and self.replicas_in_sync(p) >= running and self._known_sentinels() >= len(
                        [s for s in self.sentinels if s.running]) - 1:
                    return
            time.sleep(0.1)
        raise StackError(f"sentinel setup not ready after {timeout:.0f} s (logs under {self.workdir})")

    def _known_sentinels(self) -> int:
        try:
            c = redis.Redis(host=self.sentinels[0].host, port=self.sentinels[0].port, socket_timeout=2)
            return len(c.execute_command("SENTINEL", "SENTINELS", SERVICE))
        except Exception:
            return 0

    def kill(self, server: RedisServer) -> None:
        server.kill()

    def wait_failover(self, old: RedisServer, timeout: float = 60.0) -> RedisServer:
        """After the primary ``old`` died: wait until the sentinels agree on another; it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._sentinels_agree():
                p = self.primary()
                if p is not old and self._role(p) == "master":
                    return p
            time.sleep(0.1)
        raise StackError(f"no failover from {old.address} within {timeout:.0f} s")

    @staticmethod
    def _role(server: RedisServer) -> str:
        try:
            r: Any = server.client(socket_timeout=2).execute_command("ROLE")
            return str(r[0].decode())
        except Exception:
            return "down"

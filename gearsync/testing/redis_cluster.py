"""A throwaway Redis Cluster on loopback: N primaries with R replicas each, made by
``redis-cli --cluster create`` from ``redis-server --cluster-enabled yes`` nodes.

Each node is a :class:`gearsync.testing.daemons.RedisServer` with its own directory (its
``nodes.conf`` survives a restart, so a killed node started again rejoins the cluster — as a
replica when its replica was promoted meanwhile). Node ports are at most 55535: a cluster node
also listens on port + 10000 (the cluster bus).

    with RedisCluster(tmp / "cluster", primaries=3, replicas=1) as c:
        c.url                       # redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...
        victim = c.primaries()[0]; victim.kill(); c.wait_failover(victim); victim.start()
        c.reshard(c.primaries()[0], c.primaries()[1], 100)
"""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

from .daemons import RedisServer, StackError, which

__all__ = ["RedisCluster", "cluster_port"]

#: Highest port a node may use: its cluster bus is port + 10000.
MAX_PORT = 55535


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port(taken: set[int] = frozenset()) -> int:  # type: ignore[assignment]
    """A port <= 55535 that is free on 127.0.0.1, and so is port + 10000."""
    rng = random.Random()
    for _ in range(1000):
        p = rng.randrange(20000, MAX_PORT + 1)
        if p not in taken and p + 10000 not in taken and _free(p) and _free(p + 10000):
            return p
    raise StackError("no free port pair (p, p + 10000) below 55536")


class RedisCluster:
    """``primaries`` × (1 + ``replicas``) nodes; ``node_timeout_ms`` is how long a primary may be
    silent before its replica takes over (``cluster-node-timeout``)."""

    def __init__(self, workdir: Path, primaries: int = 3, replicas: int = 1, node_timeout_ms: int = 1000) -> None:
        self.workdir = Path(workdir).absolute()
        self.primaries_wanted, self.replicas_wanted = primaries, replicas
        ports: set[int] = set()
        self._dead_slots: dict[int, list[int]] = {}
        self.created = False
        for old in self.workdir.glob("node-*/nodes.conf"):  # a cluster of an earlier run: not ours
            old.unlink()
        self.nodes: list[RedisServer] = []
        for i in range(primaries * (1 + replicas)):
            port = cluster_port(ports)
            ports |= {port, port + 10000}
            self.nodes.append(RedisServer(self.workdir / f"node-{i}", port, args=[
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(node_timeout_ms), "--cluster-replica-validity-factor", "0",
                "--cluster-allow-replica-migration", "no", "--repl-diskless-sync-delay", "0"]))

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> "RedisCluster":
        """Start the nodes; the first time, make them a cluster (a stopped cluster started again
        keeps its ports and rejoins)."""
        created = self.created
        try:
            for n in self.nodes:
                for attempt in range(5):
                    try:
                        self._start_node(n)
                        break
                    except StackError as e:  # another process took the port (or port + 10000) since we chose it
                        if created or "Address already in use" not in str(e) or attempt == 4:
                            raise
                        n.port = cluster_port({m.port for m in self.nodes} | {m.port + 10000 for m in self.nodes})
            if not created:
                self.cli("--cluster", "create", *(n.address for n in self.nodes),
                         "--cluster-replicas", str(self.replicas_wanted), "--cluster-yes")
                self.created = True
            self.wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def _start_node(n: RedisServer) -> None:
        """Start a node and see it answer: it opens its port before the cluster bus port, so a
        bus port taken meanwhile makes it exit after looking ready."""
        n.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not n.running:
                raise StackError(f"{n.name} on port {n.port} exited: {n.tail()}")
            try:
                if n.client(socket_timeout=1).ping():
                    return
            except Exception:
                pass
            time.sleep(0.05)
        raise StackError(f"{n.name} on port {n.port} does not answer PING: {n.tail()}")

    def stop(self) -> None:
        for n in self.nodes:
            with contextlib.suppress(Exception):
                n.stop()

    def __enter__(self) -> "RedisCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- looking at it ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``redis+cluster://`` with every node as a startup node."""
        return "redis+cluster://" + ",".join(n.address for n in self.nodes)

    def cli(self, *args: str, timeout: float = 120.0) -> str:
        """``redis-cli`` with ``args``; its output (raises StackError when it fails)."""
        res = subprocess.run([which("redis-cli"), *args], capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0 or "[ERR]" in res.stdout:
            raise StackError(f"redis-cli {' '.join(args[:3])} failed: {res.stdout[-2000:]}{res.stderr[-2000:]}")
        return res.stdout

    def client(self, node: RedisServer) -> Any:
        return node.client(socket_timeout=5)

    def role(self, node: RedisServer) -> str:
        """"master" or "slave" as the node itself says (ROLE), "down" when it does not answer."""
        try:
            return str(self.client(node).execute_command("ROLE")[0].decode())
        except Exception:
            return "down"

    def primaries(self) -> list[RedisServer]:
        """The nodes that are primaries now and own slots."""
        out = []
        for n in self.nodes:
            if n.running and self.role(n) == "master" and self.slots_of(n):
                out.append(n)
        return out

    def _slot_map(self, node: RedisServer) -> list[tuple[int, int, int]]:
        """(first slot, last slot, primary port) as ``node`` sees them (CLUSTER SLOTS)."""
        return sorted((int(r[0]), int(r[1]), int(r[2][1])) for r in
                      self.client(node).execute_command("CLUSTER SLOTS"))

    def slots_of(self, node: RedisServer) -> list[int]:
        """The slots ``node`` owns, as it says itself."""
        try:
            ranges = self._slot_map(node)
        except Exception:
            return []
        return [s for a, b, port in ranges if port == node.port for s in range(a, b + 1)]

    def node_id(self, node: RedisServer) -> str:
        return str(self.client(node).execute_command("CLUSTER MYID").decode())

    def replicas_of(self, primary: RedisServer) -> list[RedisServer]:
        """Running nodes that replicate ``primary``."""
        out = []
        for n in self.nodes:
            if n is primary or not n.running:
                continue
            try:
                info = self.client(n).info("replication")
            except Exception:
                continue
            if info.get("role") == "slave" and int(info.get("master_port", 0)) == primary.port:
                out.append(n)
        return out

    def state_ok(self) -> bool:
        """Every running node says cluster_state:ok and they agree on who owns each slot."""
        views = set()
        for n in self.nodes:
            if not n.running:
                continue
            try:
                c = self.client(n)
                info = c.execute_command("CLUSTER INFO")
                state = info.get("cluster_state") if isinstance(info, dict) else None
                if state not in ("ok", b"ok"):
                    return False
                views.add(tuple(self._slot_map(n)))
            except Exception:
                return False
        return len(views) == 1 and sum(b - a + 1 for a, b, _ in next(iter(views))) == 16384

    def replicas_online(self) -> bool:
        """Every running replica is online at its primary (its first full sync is done)."""
        for n in self.nodes:
            if not n.running:
                continue
            try:
                info = self.client(n).info("replication")
            except Exception:
                return False
            if info.get("role") == "slave" and info.get("master_link_status") != "up":
                return False
            if info.get("role") == "master" and any(
                    isinstance(v, dict) and v.get("state") != "online" for k, v in info.items() if k.startswith("slave")):
                return False
        return True

    def wait_ok(self, timeout: float = 60.0) -> None:
        """Until :meth:`state_ok` and :meth:`replicas_online`."""
        deadline = time.monotonic() + timeout
        while not (self.state_ok() and self.replicas_online()):
            if time.monotonic() > deadline:
                raise StackError(f"cluster not ok after {timeout:.0f} s (logs under {self.workdir})")
            time.sleep(0.1)

    # -- faults -----------------------------------------------------------------------------
    def wait_failover(self, dead: RedisServer, timeout: float = 60.0) -> RedisServer:
        """After ``dead`` (a primary) was killed with :meth:`kill`: wait until one of the other nodes owns its slots
        and the cluster is ok; that node."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n in self.nodes:
                if n is not dead and n.running and self.role(n) == "master" and self._owns_of(n, dead):
                    self.wait_ok(max(1.0, deadline - time.monotonic()))
                    return n
            time.sleep(0.1)
        raise StackError(f"no replica took over from {dead.address} in {timeout:.0f} s")

    def kill(self, node: RedisServer) -> list[int]:
        """SIGKILL ``node`` (a crash); the slots it owned, which :meth:`wait_failover` waits for."""
        self._dead_slots[node.port] = self.slots_of(node)
        node.kill()
        return self._dead_slots[node.port]

    def _owns_of(self, n: RedisServer, dead: RedisServer) -> bool:
        want = self._dead_slots.get(dead.port) or []
        return bool(want) and set(want) <= set(self.slots_of(n))

    def reshard(self, source: RedisServer, target: RedisServer, slots: int, pipeline: int = 10) -> str:
        """Move ``slots`` slots with their keys from ``source`` to ``target`` (``redis-cli --cluster
        reshard``: MIGRATE key by key while clients get ASK, then MOVED), once every node agrees on
        the slots (redis-cli refuses otherwise)."""
        self.wait_ok()
        return self.cli("--cluster", "reshard", self.nodes[0].address, "--cluster-from", self.node_id(source),
                        "--cluster-to", self.node_id(target), "--cluster-slots", str(slots),
                        "--cluster-pipeline", str(pipeline), "--cluster-yes", timeout=600)

    def __iter__(self) -> Iterator[RedisServer]:
        return iter(self.nodes)

"""Helpers of the deployment tests: polling, free ports, commands, and the composed stack."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("gearmand", "redis", "db", "worker")


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, pause: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(pause)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(argv: list[str], *, input: str | None = None, timeout: float = 120, check: bool = True) -> str:
    res = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return res.stdout


class ComposeStack:
    """The running project: its containers by service, SQL in the db container, Redis."""

    def __init__(self, project: str, env: dict[str, str]) -> None:
        self.project = project
        self.env = env
        self.db_port = int(env["GEARSYNC_DB_PORT"])
        self.gearmand_port = int(env["GEARSYNC_GEARMAND_PORT"])
        self.redis_port = int(env["GEARSYNC_REDIS_PORT"])
        self.metrics_port = int(env["GEARSYNC_METRICS_PORT"])
        import redis

        self.redis = redis.Redis(host="127.0.0.1", port=self.redis_port, socket_timeout=5)

    def container(self, service: str) -> str:
        out = run(["podman", "ps", "-a", "--filter", f"label=io.podman.compose.project={self.project}",
                   "--filter", f"label=com.docker.compose.service={service}", "--format", "{{.Names}}"])
        names = out.split()
        assert len(names) == 1, f"expected one {service} container in project {self.project}, got {names}"
        return names[0]

    def inspect(self, service: str) -> dict[str, Any]:
        return json.loads(run(["podman", "inspect", self.container(service)]))[0]

    def healthy(self, service: str) -> bool:
        """Runs the service's compose healthcheck now (podman has no systemd here to run it on
        its interval) and reports whether it passed."""
        res = subprocess.run(["podman", "healthcheck", "run", self.container(service)],
                             capture_output=True, text=True, timeout=60)
        return res.returncode == 0

    def all_healthy(self) -> bool:
        return all(self.healthy(s) for s in SERVICES)

    def sql(self, statements: str) -> list[list[str]]:
        """Run SQL as root inside the db container (mariadb client, unix socket); the rows."""
        out = run(["podman", "exec", "-i", self.container("db"), "mariadb", "-N", "-B"], input=statements)
        return [line.split("\t") for line in out.splitlines()]

    def logs(self, service: str) -> str:
        res = subprocess.run(["podman", "logs", self.container(service)], capture_output=True, text=True)
        return res.stdout + res.stderr

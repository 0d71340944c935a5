"""Fixtures for the UDF tests: the built library and throwaway gearmand servers."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

GEARMAND = shutil.which("gearmand") or "/usr/sbin/gearmand"


@pytest.fixture(scope="session", autouse=True)
def udf_lib() -> object:
    """Build build/gearsync_udf.so once (unless GEARSYNC_UDF_SO names one), load it."""
    if "GEARSYNC_UDF_SO" not in os.environ:
        subprocess.run(["make", "-s", "-f", "udf/udf.mk", "udf"], cwd=harness.ROOT, check=True)
    return harness.load()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gearmand:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        assert self.port != 4730
        self.proc = subprocess.Popen(
            [GEARMAND, "--listen=127.0.0.1", f"--port={self.port}", "--log-file=none",
             f"--pid-file={tmp / f'gearmand-{self.port}.pid'}", "--threads=1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("gearmand did not start")
                time.sleep(0.02)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def admin(self, command: str) -> List[str]:
        """Text admin protocol: lines up to the terminating '.'."""
        with socket.create_connection(("127.0.0.1", self.port), 2) as s:
            s.sendall(command.encode() + b"\n")
            data = b""
            while not data.endswith(b".\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        lines = data.decode().split("\n")
        return [l for l in lines if l and l != "."]

    def status(self) -> dict:
        """function -> (total, running, available_workers)."""
        out = {}
        for line in self.admin("status"):
            name, total, running, workers = line.split("\t")
            out[name] = (int(total), int(running), int(workers))
        return out

    def queued(self, function: str) -> int:
        return self.status().get(function, (0, 0, 0))[0]

    def connections(self) -> int:
        """Client connections (gearmand 'workers' lists each one; minus ours)."""
        return len(self.admin("workers")) - 1

    def pause(self) -> None:
        """SIGSTOP, and wait until the kernel shows it stopped (kill() is async)."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "T":
                    return
            time.sleep(0.005)
        raise RuntimeError("gearmand did not stop")

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGCONT)
            except ProcessLookupError:
                pass
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def gearmand_factory(tmp_path: Path) -> Iterator[Callable[[], Gearmand]]:
    started: List[Gearmand] = []

    def start() -> Gearmand:
        g = Gearmand(tmp_path)
        started.append(g)
        return g

    yield start
    for g in started:
        g.stop()


@pytest.fixture
def gearmand(gearmand_factory: Callable[[], Gearmand]) -> Gearmand:
    return gearmand_factory()

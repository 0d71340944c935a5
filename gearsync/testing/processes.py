"""Run `gearsync worker` as a child process against a Stack, and wait for conditions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence, TypeVar

from gearsync.testing.stack import Gearmand

__all__ = ["WorkerProcess", "wait_for", "WaitTimeout"]

T = TypeVar("T")


class WaitTimeout(AssertionError):
    pass


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = "") -> T:
    """Poll until predicate() is truthy; return its value or raise WaitTimeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.1f} s waiting for {what or predicate}")
        time.sleep(interval)


class WorkerProcess:
    """`python -m gearsync worker …` in its own process group, output to a log file."""

    def __init__(
        self,
        env: Mapping[str, str],
        args: Sequence[str] = (),
        log_path: str | os.PathLike[str] | None = None,
        gearmand: Gearmand | None = None,
        function: str = "syncToRedis",
    ) -> None:
        self.env = dict(env)
        self.args = list(args)
        self.log_path = Path(log_path) if log_path else None
        self.gearmand = gearmand
        self.function = function
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout: float = 15.0) -> "WorkerProcess":
        """Start the worker; with ``gearmand`` given, return once gearmand counts one more
        worker for ``function`` than before (other workers may already be registered)."""
        g = self.gearmand
        before = g.status().get(self.function, (0, 0, 0))[2] if g is not None else 0
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gearsync", "worker", *self.args],
                env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()  # type: ignore[union-attr]
        if g is not None:
            wait_for(lambda: self._dead() or g.status().get(self.function, (0, 0, 0))[2] > before,
                     ready_timeout, 0.05, f"worker registered for {self.function}")
            if self._dead():
                raise RuntimeError(f"gearsync worker exited with {self.returncode}:\n{self.output()}")
        return self

    def _dead(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def output(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")
        return ""

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait (then SIGKILL); returns the exit code. Idempotent."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "WorkerProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""A job taken from gearmand by :class:`gearsync.gearman.worker.GearmanWorker`."""

from __future__ import annotations

from typing import Any

__all__ = ["Job"]


class Job:
    """One job taken from gearmand; answer it through the GearmanWorker it came from (``link``:
    the worker's connection it came on)."""

    __slots__ = ("handle", "function", "unique", "workload", "_link")

    def __init__(self, handle: bytes, function: bytes, unique: bytes, workload: bytes, link: Any) -> None:
        self.handle = handle
        self.function = function
        self.unique = unique
        self.workload = workload
        self._link = link

    @property
    def server(self) -> str:
        return self._link.server.name

    def __repr__(self) -> str:
        return f"Job({self.handle!r}, {self.function!r}, {len(self.workload)} bytes from {self.server})"

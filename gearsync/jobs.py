"""What a Gearman job becomes for the direct-mode path: the records of a gearsync_send envelope
(or the one workload of any other job), the handlers that turn them into changes, and the
seed's own handler."""

from __future__ import annotations

from typing import Callable, Iterable, Union

from . import payload
from .changes import Change
from .gearman.worker import Job

__all__ = ["Record", "Handler", "HandlerResult", "KeyRefused", "default_handler"]


HandlerResult = Union[Change, Iterable[Change], None]
#: A handler turns one job's change (a :class:`Record`: ``handle``, ``function``, ``unique``,
#: ``workload``, ``version``) into the changes to apply (None: nothing to write).
Handler = Callable[["Record"], HandlerResult]


class Record:
    """One change of a job, what a handler receives: a job's ``handle``, ``function`` and
    ``unique``, the change's ``workload`` (one record of a gearsync_send envelope, or the whole
    workload of any other job) and its ``version`` (0: none)."""

    __slots__ = ("job", "workload", "version")

    def __init__(self, job: Job, workload: bytes, version: int) -> None:
        self.job, self.workload, self.version = job, workload, version

    @property
    def handle(self) -> bytes:
        return self.job.handle

    @property
    def function(self) -> bytes:
        return self.job.function

    @property
    def unique(self) -> bytes:
        return self.job.unique


class KeyRefused(ValueError):
    """A job asked to write one of gearsync's own keys (``gearsync:…``)."""


def default_handler(job: Record) -> list[Change]:
    """The seed contract: the workload is the JSON payload of :mod:`gearsync.payload`."""
    return payload.changes(job.workload)

"""``gearsync worker --concurrency N``: N worker processes under one supervisor.

Processes, not N consumers in one process: a worker is CPU-bound in Python (decode, map,
pack) and the GIL keeps one process on one core, while gearmand spreads jobs over any number
of connected workers and safe mode is built for several workers (``FOR UPDATE`` claims,
``SKIP LOCKED`` sweeps, versioned writes). The supervisor forks the children (before any
event loop exists), forwards SIGTERM/SIGINT to them (the first: graceful, the second:
forced), restarts a child that dies on its own (after 1 s), and exits with the worst exit
code once all have stopped. With ``--metrics-port P`` child *i* serves on port P + i.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time
from typing import Callable

from .settings import Settings
from .worker import Worker

__all__ = ["run_workers"]

log = logging.getLogger(__name__)


def _child(settings: Settings, index: int, setup: Callable[[], None]) -> int:
    setup()
    s = dataclasses.replace(settings)
    if s.metrics_port is not None:
        s.metrics_port += index
    return Worker(s).run_forever()


def _spawn(settings: Settings, index: int, setup: Callable[[], None]) -> int:
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = _child(settings, index, setup)
        except BaseException:
            logging.getLogger(__name__).exception("worker %d crashed", index)
        finally:
            os._exit(code)
    return pid


def run_workers(settings: Settings, n: int, setup: Callable[[], None] = lambda: None) -> int:
    """Run ``n`` workers until a stop signal; their worst exit code. ``setup`` runs first in
    each child (logging)."""
    children: dict[int, int] = {}  # pid -> index
    stopping = [0]

    def forward(signum: int, _frame: object) -> None:
        stopping[0] += 1
        log.info("supervisor: %s, passing it to %d workers", signal.Signals(signum).name, len(children))
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM if stopping[0] == 1 else signal.SIGINT)
            except ProcessLookupError:
                pass

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    worst = 0
    try:
        for i in range(n):
            children[_spawn(settings, i, setup)] = i
        log.info("supervisor: %d workers started (pids %s)", n, ", ".join(map(str, children)))
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            index = children.pop(pid, None)
            if index is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            worst = max(worst, code if code >= 0 else 1)
            if not stopping[0]:
                log.error("worker %d (pid %d) exited with %d; restarting it in 1 s", index, pid, code)
                time.sleep(1.0)
                if not stopping[0]:
                    children[_spawn(settings, index, setup)] = index
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return worst

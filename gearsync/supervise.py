"""``gearsync worker --concurrency N``: N worker processes under one supervisor.

Processes, not N consumers in one process: a worker is CPU-bound in Python (decode, map,
pack) and the GIL keeps one process on one core, while gearmand spreads jobs over any number
of connected workers and safe mode is built for several workers (``FOR UPDATE`` claims,
``SKIP LOCKED`` sweeps, versioned writes). The supervisor forks the children (before any
event loop exists), forwards SIGTERM/SIGINT to them (the first: graceful, the second:
forced), restarts a child that dies on its own (after 1 s), and exits with the worst exit
code once all have stopped. SIGHUP is passed on too (each child reloads its config). With
``--metrics-port P`` the supervisor serves the whole group on P — ``/metrics`` (the sum of the
children's metrics, prometheus_client's multiprocess mode) and the status page — so
Prometheus scrapes one target whatever N is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import tempfile
import time
from typing import Callable

from prometheus_client.multiprocess import mark_process_dead

from .metrics import group_registry, render
from .settings import Settings
from .status import status_of
from .web import Web
from .worker import Worker

__all__ = ["run_workers"]

log = logging.getLogger(__name__)


def _child(settings: Settings, index: int, setup: Callable[[int], None],
           reloader: Callable[[], Settings] | None) -> int:
    setup(index)
    return Worker(dataclasses.replace(settings), reloader=reloader).run_forever()


def _spawn(settings: Settings, index: int, setup: Callable[[int], None],
           reloader: Callable[[], Settings] | None) -> int:
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            code = _child(settings, index, setup, reloader)
        except BaseException:
            logging.getLogger(__name__).exception("worker %d crashed", index)
        finally:
            os._exit(code)
    return pid


def run_workers(settings: Settings, n: int, setup: Callable[[int], None] = lambda i: None,
                reloader: Callable[[], Settings] | None = None) -> int:
    """Run ``n`` workers until a stop signal; their worst exit code. ``setup(index)`` runs first
    in each child (logging); ``reloader`` reads the settings again on SIGHUP, in each child."""
    children: dict[int, int] = {}  # pid -> index
    stopping = [0]
    web: Web | None = None
    metrics_dir: str | None = None
    if settings.metrics_port is not None:
        metrics_dir = tempfile.mkdtemp(prefix="gearsync-metrics-")
        settings = dataclasses.replace(settings, metrics_dir=metrics_dir)
        registry = group_registry(metrics_dir)
        s = settings
        web = Web(s.metrics_host, s.metrics_port, lambda: render(registry),  # type: ignore[arg-type]
                  lambda: status_of(s),
                  title=f"gearsync ({n} workers)").start()
        log.info("supervisor: metrics of the %d workers on http://%s:%d/metrics, status page on /", n,
                 s.metrics_host, s.metrics_port)

    def forward(signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            log.info("supervisor: SIGHUP, passing it to %d workers", len(children))
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGHUP)
            return
        stopping[0] += 1
        log.info("supervisor: %s, passing it to %d workers", signal.Signals(signum).name, len(children))
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM if stopping[0] == 1 else signal.SIGINT)

    old = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    worst = 0
    try:
        for i in range(n):
            children[_spawn(settings, i, setup, reloader)] = i
        log.info("supervisor: %d workers started (pids %s)", n, ", ".join(map(str, children)))
        while children:
            try:
                pid, code_status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            index = children.pop(pid, None)
            if index is None:
                continue
            if metrics_dir is not None:
                mark_process_dead(pid, metrics_dir)
            code = os.waitstatus_to_exitcode(code_status)
            worst = max(worst, code if code >= 0 else 1)
            if not stopping[0]:
                log.error("worker %d (pid %d) exited with %d; restarting it in 1 s", index, pid, code)
                time.sleep(1.0)
                if not stopping[0]:
                    children[_spawn(settings, index, setup, reloader)] = index
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
        if web is not None:
            web.close()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return worst

"""What a Redis error means for a write: retried until it passes, or kept as a dead letter.

* :func:`retryable` — errors that pass by themselves (Redis away, a failover, a resharding,
  memory freed…) versus those that never will (a WRONGTYPE, a script error);
* :class:`SinkUnavailable` — a write that could not be applied now, to be retried whole;
* :func:`until_written` — the one retry loop, which logs what it holds;
* :func:`dead_letter_entry` — what the stream ``gearsync:dead`` keeps of a refused change.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any, Awaitable, Callable, TypeVar

from redis.exceptions import (AskError, AuthenticationError, BusyLoadingError, ClusterDownError, ClusterError,
                              MasterDownError, MovedError, NoPermissionError, OutOfMemoryError, ReadOnlyError,
                              SlotNotCoveredError, TryAgainError)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["SinkUnavailable", "until_written", "retryable", "dead_letter_entry", "WORKER_ID"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Who wrote a dead letter (workers on many hosts share the stream): ``host:pid``.
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


class SinkUnavailable(Exception):
    """Redis could not be reached, did not answer, or answered with an error that a later try
    can get past (see :func:`retryable`); the batch was not (fully) applied."""


#: Redis errors that go away by themselves: a replica promoted or a primary back
#: (READONLY, MASTERDOWN, NOREPLICAS), a restart (LOADING), memory freed (OOM), a
#: resharding or failover (TRYAGAIN, MOVED, ASK, CLUSTERDOWN, a slot not covered yet, a
#: redirection loop), a busy script (BUSY), and the ones an operator fixes without losing
#: data (NOAUTH, NOPERM, WRONGPASS).
_RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError, ReadOnlyError, BusyLoadingError, OutOfMemoryError,
              TryAgainError, ClusterDownError, ClusterError, MasterDownError, MovedError, AskError,
              SlotNotCoveredError, AuthenticationError, NoPermissionError)
_RETRYABLE_PREFIXES = ("READONLY", "LOADING", "OOM", "TRYAGAIN", "MOVED", "ASK", "CLUSTERDOWN", "MASTERDOWN",
                       "NOREPLICAS", "BUSY", "NOAUTH", "NOPERM", "WRONGPASS")


def retryable(e: BaseException) -> bool:
    """True for a Redis error that a later try can get past; False for one it never will (a
    WRONGTYPE, a script error, a value Redis refuses, CROSSSLOT), which goes to the dead
    letters."""
    if isinstance(e, _RETRYABLE):
        return True
    text = str(e)
    # a script's error carries the command's error after "Error running script … :"
    inner = text.rsplit(": ", 1)[-1] if "script" in text else text
    return inner.lstrip("-").startswith(_RETRYABLE_PREFIXES) or text.startswith(_RETRYABLE_PREFIXES)


def dead_letter_entry(function: bytes | str, what: bytes | str, payload: bytes, error: BaseException) -> dict[str, Any]:
    """One entry of ``gearsync:dead``: where the change came from (a Gearman function and job
    handle, or ``versioned`` and the key), its payload (cut at 64 KiB), the error, and which
    worker (``host:pid``) met it."""
    return {"function": function, "from": what, "payload": bytes(payload[:65536]),
            "error": f"{type(error).__name__}: {error}", "worker": WORKER_ID}


async def until_written(write: Callable[[], Awaitable[T]], *, held: str, backoff_max: float,
                        stopping: Callable[[], bool], on_retry: Callable[[], None] = lambda: None,
                        ) -> tuple[bool, T | None]:
    """Run ``write()`` until Redis answers: ``(True, result)``. While Redis is unreachable, retry
    with capped exponential backoff (0.1 s doubling to ``backoff_max``), logging each retry with
    what is ``held`` and calling ``on_retry`` (counters, pausing intake); ``(False, None)`` if
    ``stopping()`` says to give up. Other errors propagate."""
    attempt = 0
    while True:
        try:
            result = await write()
        except SinkUnavailable as e:
            if stopping():
                log.warning("stopping with %s unapplied (redis unreachable: %s)", held, e)
                return False, None
            attempt += 1
            on_retry()
            delay = min(backoff_max, 0.1 * 2 ** (attempt - 1))
            log.warning("redis unreachable (%s), retry %d in %.1f s (%s held)", e, attempt, delay, held)
            await asyncio.sleep(delay)
            continue
        if attempt:
            log.info("redis reachable again after %d retries", attempt)
        return True, result

"""Logging set-up for the CLI: human text (default) or one JSON object per line."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import IO

__all__ = ["configure", "JsonFormatter", "FORMATS"]

FORMATS = ("text", "json")
_STD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """{"ts": ..., "level": ..., "logger": ..., "msg": ..., plus any `extra=` fields}."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in vars(record).items():
            if k not in _STD and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class _Origin(logging.Filter):
    """Every record says which process, and which worker of a --concurrency group, wrote it."""

    def __init__(self, worker: int | None) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        record.pid = os.getpid()
        if self.worker is not None:
            record.worker = self.worker
        return True


def configure(level: str = "INFO", fmt: str = "text", stream: IO[str] | None = None,
              worker: int | None = None) -> None:
    """Route the root logger to ``stream`` (stderr) in the chosen format; replaces earlier set-up.
    JSON lines carry ``pid`` and, in a --concurrency group, ``worker`` (its index)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_Origin(worker))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"
                                               if worker is None else
                                               "%(asctime)s %(levelname)-7s [%(worker)s] %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())

"""Connections: MySQL URLs and drivers, Redis clients, and URLs fit to be logged.

* :func:`parse_mysql_url` — ``mysql://user:pass@host:port/db?unix_socket=/path`` → the
  driver's ``connect()`` keywords; :func:`driver_module` — mysqlclient (C, releases the GIL)
  when installed, else PyMySQL; :func:`connect_mysql` — an autocommit connection.
* :func:`redact` — any URL with its password masked (the worker logs URLs).

Redis clients are made by :mod:`gearsync.redis_clients` (one Redis, Cluster, Sentinel).
"""

from __future__ import annotations

import importlib
import os
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["parse_mysql_url", "driver_module", "connect_mysql", "redact", "MYSQL_SCHEMES"]

MYSQL_SCHEMES = ("mysql", "mariadb", "mysql+pymysql")


def parse_mysql_url(url: str) -> dict[str, Any]:
    """``mysql://user:pass@host:port/db?unix_socket=/path`` → connect() keyword arguments."""
    parts = urlsplit(url)
    if parts.scheme not in MYSQL_SCHEMES:
        raise ValueError(f"not a mysql:// URL: {redact(url)!r}")
    kw: dict[str, Any] = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username) if parts.username else "root",
        "password": unquote(parts.password) if parts.password else "",
    }
    db = parts.path.lstrip("/")
    if db:
        kw["database"] = unquote(db)
    q = parse_qs(parts.query)
    if "unix_socket" in q:
        kw["unix_socket"] = q["unix_socket"][0]
    return kw


def redact(url: str | None) -> str:
    """``url`` with its password replaced by ``***`` (for logs and errors)."""
    if not url or "://" not in url:
        return url or ""
    scheme, rest = url.split("://", 1)
    head, sep, tail = rest.partition("/")
    if "@" not in head:
        return url
    creds, host = head.rsplit("@", 1)
    user, colon, _password = creds.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}{sep}{tail}"


def driver_module(name: str | None = None) -> Any:
    """The DB-API module: ``"mysqlclient"``, ``"pymysql"``, or None for ``$GEARSYNC_MYSQL_DRIVER``,
    else mysqlclient if installed, else PyMySQL."""
    name = name or os.environ.get("GEARSYNC_MYSQL_DRIVER") or None
    if name in (None, "mysqlclient", "MySQLdb"):
        try:
            import MySQLdb

            return MySQLdb
        except ImportError:
            if name is not None:
                raise
    if name in (None, "pymysql", "PyMySQL"):
        import pymysql

        return pymysql
    raise ValueError(f"unknown MySQL driver {name!r}: expected mysqlclient or pymysql")


#: MySQL field types whose values gearsync reads as the server's own text (exact DECIMAL digits,
#: FLOAT/DOUBLE as the server prints them, temporal values including zero dates, BIT bytes):
#: see gearsync.codec.
RAW_TYPES = (0, 246, 4, 5, 10, 12, 7, 11, 13, 14)  # DECIMAL NEWDECIMAL FLOAT DOUBLE DATE DATETIME
#                                                   TIMESTAMP TIME YEAR NEWDATE


def _raw(value: Any) -> Any:
    return value


def raw_conversions(mod: Any) -> dict[Any, Any]:
    """The driver's conversions with :data:`RAW_TYPES` returned as they came."""
    conv = dict(importlib.import_module(mod.__name__ + ".converters").conversions)
    for t in RAW_TYPES:
        conv[t] = _raw
    return conv


def connect_mysql(url: str, *, driver: str | None = None, autocommit: bool = True, **kw: Any) -> Any:
    """A DB-API connection in utf8mb4 (autocommit unless told otherwise) that returns numbers and
    times as the server's text (:func:`raw_conversions`). Timeouts in ``kw`` (``connect_timeout``,
    ``read_timeout``, ``write_timeout``) are seconds; mysqlclient gets them rounded up to whole
    seconds, the only unit it takes."""
    args = parse_mysql_url(url)
    args.pop("database", None)
    mod = driver_module(driver)
    if mod.__name__ == "MySQLdb":
        kw = {k: (max(1, int(round(v))) if k.endswith("_timeout") else v) for k, v in kw.items()}
    return mod.connect(**args, charset="utf8mb4", autocommit=autocommit, conv=raw_conversions(mod), **kw)

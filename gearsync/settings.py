"""Worker settings: a dataclass with defaults, ``from_env()`` and a server-list parser."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["Settings", "SettingsError", "parse_servers", "DEFAULT_GEARMAN_PORT"]

DEFAULT_GEARMAN_PORT = 4730


class SettingsError(ValueError):
    """A setting could not be parsed; the message says which and why."""


def parse_servers(text: str, default_port: int = DEFAULT_GEARMAN_PORT) -> list[tuple[str, int]]:
    """``"host:port,host2,[::1]:4731"`` → ``[("host", port), ("host2", 4730), ("::1", 4731)]``."""
    servers: list[tuple[str, int]] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise SettingsError(f"empty server in {text!r}: expected host[:port][,host[:port]...]")
        port_text: str | None = None
        if item.startswith("["):
            host, sep, rest = item[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise SettingsError(f"bad server {item!r}: expected [ipv6]:port")
            port_text = rest[1:] if rest else None
        elif item.count(":") > 1:
            raise SettingsError(f"bad server {item!r}: write an IPv6 address as [addr]:port")
        else:
            host, sep, port_part = item.partition(":")
            port_text = port_part if sep else None
        if not host:
            raise SettingsError(f"bad server {item!r}: missing host")
        port = default_port
        if port_text is not None:
            if not port_text.isdigit():
                raise SettingsError(f"bad server {item!r}: port {port_text!r} is not a number")
            port = int(port_text)
            if not 0 < port < 65536:
                raise SettingsError(f"bad server {item!r}: port {port} is not in 1..65535")
        servers.append((host, port))
    return servers


def _float(name: str, value: str, minimum: float = 0.0) -> float:
    try:
        x = float(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not a number") from None
    if not x >= minimum:
        raise SettingsError(f"{name}={x} must be >= {minimum}")
    return x


def _int(name: str, value: str, minimum: int = 1) -> int:
    try:
        n = int(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not an integer") from None
    if n < minimum:
        raise SettingsError(f"{name}={n} must be >= {minimum}")
    return n


@dataclass
class Settings:
    """Everything a worker needs; defaults match the seed (gearmand and Redis on localhost)."""

    gearman: list[tuple[str, int]] = field(default_factory=lambda: [("127.0.0.1", DEFAULT_GEARMAN_PORT)])
    redis_url: str = "redis://127.0.0.1:6379/0"
    functions: list[str] = field(default_factory=lambda: ["syncToRedis"])
    window: int = 32
    batch_size: int = 512
    max_in_hand: int = 2048
    log_level: str = "INFO"
    redis_backoff_max: float = 5.0
    log_interval: float = 5.0
    #: Safe mode (outbox) is on when this is set: ``mysql://user:pass@host:port/``.
    mysql_url: str | None = None
    #: The Gearman function safe-mode triggers ring (workload: the outbox id).
    safe_function: str = "gearsync"
    #: Seconds between sweeps of the outbox for rows no job delivered.
    sweep_interval: float = 1.0
    #: A committed outbox row older than this (seconds) is the sweeper's.
    sweep_age: float = 5.0
    #: innodb_lock_wait_timeout (s) of the worker's locking read of the outbox.
    lock_wait_timeout: int = 1
    #: Seconds a delete's versioned tombstone stays in Redis.
    tombstone_ttl: int = 86400
    #: Seconds to wait for more doorbells before confirming a batch that is not full. Off by
    #: default: doorbells that arrive while a batch is being applied batch up by themselves,
    #: and a wait only adds latency (measured: p99 6.7 ms with 2 ms, 2.9 ms without, at 200/s).
    safe_linger: float = 0.0
    #: Configured tables (``gearsync.toml``): source "schema.table" → its TableConfig. Their
    #: outbox rows (safe mode) and ``gearsync_direct`` jobs (direct mode) are mapped by it.
    tables: dict[str, Any] = field(default_factory=dict)
    #: The Gearman function of configured direct-mode tables' triggers.
    direct_function: str = "gearsync_direct"
    #: Serve Prometheus metrics on this port (None: off).
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"

    @property
    def direct_tables(self) -> bool:
        """Serve ``direct_function``: with any configured table (``gearsync install --mode
        direct`` can override the config's mode, so the worker cannot tell which are direct)."""
        return bool(self.tables)

    @property
    def function(self) -> str:
        """The first function name (the seed had one: ``syncToRedis``)."""
        return self.functions[0]

    def validate(self) -> "Settings":
        if not self.gearman:
            raise SettingsError("no gearmand server given")
        if not self.functions or any(not f for f in self.functions):
            raise SettingsError("function names must be non-empty")
        if self.window < 1 or self.batch_size < 1:
            raise SettingsError("window and batch size must be >= 1")
        if self.max_in_hand < self.window:
            self.max_in_hand = self.window
        if self.mysql_url is not None:
            if not self.mysql_url.startswith(("mysql://", "mariadb://")):
                raise SettingsError(f"MySQL URL {self.mysql_url!r}: expected mysql://user[:password]@host[:port]/")
            if not self.safe_function or self.safe_function in self.functions:
                raise SettingsError(f"safe-mode function {self.safe_function!r} must be non-empty and "
                                    "differ from the direct-mode functions")
        if self.sweep_interval <= 0 or self.sweep_age < 0:
            raise SettingsError("sweep interval must be > 0 and sweep age >= 0")
        if self.lock_wait_timeout < 0 or self.tombstone_ttl < 1:
            raise SettingsError("lock wait timeout must be >= 0 and tombstone TTL >= 1")
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> "Settings":
        """Defaults, then GEARSYNC_* variables, then ``overrides`` (ignoring None values).

        GEARSYNC_GEARMAN (host[:port],...), GEARSYNC_REDIS_URL, GEARSYNC_FUNCTION (comma list),
        GEARSYNC_WINDOW, GEARSYNC_BATCH_SIZE, GEARSYNC_LOG_LEVEL; safe mode: GEARSYNC_MYSQL_URL,
        GEARSYNC_SWEEP_INTERVAL, GEARSYNC_SWEEP_AGE, GEARSYNC_LOCK_WAIT_TIMEOUT,
        GEARSYNC_TOMBSTONE_TTL, GEARSYNC_SAFE_LINGER.
        """
        env = os.environ if env is None else env
        s = cls()
        if env.get("GEARSYNC_GEARMAN"):
            s.gearman = parse_servers(env["GEARSYNC_GEARMAN"])
        if env.get("GEARSYNC_REDIS_URL"):
            s.redis_url = env["GEARSYNC_REDIS_URL"]
        if env.get("GEARSYNC_FUNCTION"):
            s.functions = [f.strip() for f in env["GEARSYNC_FUNCTION"].split(",") if f.strip()]
        if env.get("GEARSYNC_WINDOW"):
            s.window = _int("GEARSYNC_WINDOW", env["GEARSYNC_WINDOW"])
        if env.get("GEARSYNC_BATCH_SIZE"):
            s.batch_size = _int("GEARSYNC_BATCH_SIZE", env["GEARSYNC_BATCH_SIZE"])
        if env.get("GEARSYNC_LOG_LEVEL"):
            s.log_level = env["GEARSYNC_LOG_LEVEL"].upper()
        if env.get("GEARSYNC_MYSQL_URL"):
            s.mysql_url = env["GEARSYNC_MYSQL_URL"]
        if env.get("GEARSYNC_SWEEP_INTERVAL"):
            s.sweep_interval = _float("GEARSYNC_SWEEP_INTERVAL", env["GEARSYNC_SWEEP_INTERVAL"], 0.001)
        if env.get("GEARSYNC_SWEEP_AGE"):
            s.sweep_age = _float("GEARSYNC_SWEEP_AGE", env["GEARSYNC_SWEEP_AGE"])
        if env.get("GEARSYNC_LOCK_WAIT_TIMEOUT"):
            s.lock_wait_timeout = _int("GEARSYNC_LOCK_WAIT_TIMEOUT", env["GEARSYNC_LOCK_WAIT_TIMEOUT"], 0)
        if env.get("GEARSYNC_SAFE_LINGER"):
            s.safe_linger = _float("GEARSYNC_SAFE_LINGER", env["GEARSYNC_SAFE_LINGER"])
        if env.get("GEARSYNC_TOMBSTONE_TTL"):
            s.tombstone_ttl = _int("GEARSYNC_TOMBSTONE_TTL", env["GEARSYNC_TOMBSTONE_TTL"])
        for key, value in overrides.items():
            if not hasattr(s, key):
                raise TypeError(f"unknown setting {key!r}")
            if value is not None:
                setattr(s, key, value)
        return s.validate()
